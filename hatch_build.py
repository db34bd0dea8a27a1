"""Build hook: record the git commit a wheel or sdist is built from, so that an installed
mmsim (``pip install .``) can write it into every run's manifest. Writes
``mmsim/_build_info.py`` into the built archive only (never into the source tree); an
sdist carries the file, so a wheel built from it keeps the commit. Editable installs
skip it (they read the checkout's commit at run time)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _git(root: str, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class BuildInfoHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        existing = Path(self.root, "mmsim", "_build_info.py")
        if existing.is_file():  # building a wheel from an sdist: keep the sdist's record
            build_data.setdefault("force_include", {})[str(existing)] = "mmsim/_build_info.py"
            return
        commit = _git(self.root, "rev-parse", "HEAD")
        dirty = None
        if commit:
            dirty = bool(_git(self.root, "status", "--porcelain", "--untracked-files=no"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
            int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))))
        text = ('"""Written when this mmsim was built (hatch_build.py)."""\n\n'
                f"GIT_COMMIT = {commit!r}\nGIT_DIRTY = {dirty!r}\nBUILT_AT = {stamp!r}\n")
        fd, path = tempfile.mkstemp(prefix="mmsim_build_info_", suffix=".py")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        build_data.setdefault("force_include", {})[path] = "mmsim/_build_info.py"
