#!/bin/bash
# mutmut neither mutates decorated functions nor sees through warm lru caches in the
# process it forks from: run it on a copy whose memo decorators are removed.
# usage: strip-memo.sh COPY_DIR   (a copy of the repository, never the checkout itself)
set -eu
sed -i -E '/^@(_memo_short|lru_cache\(.*\))$/d' "$1/mmsim/tasks/answers.py"
