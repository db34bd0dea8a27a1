"""Bounded reads of input files: what mmsim reads from a path a user gave it (a scenario, a
data file, an image) is a regular file of at most a documented size.

A path that is a device (``/dev/zero``: read until memory runs out), a named pipe (a
read that waits forever), a socket or a directory is refused, and so is a file larger than
its limit, each with a one-line :class:`~mmsim.errors.DataError` naming the path. The file
is opened without blocking (``O_NONBLOCK``: opening a pipe with no writer does not hang)
and checked with ``fstat`` on the opened descriptor, so a path swapped after the check
changes nothing. The limits (docs/guarantees.md):

========================  ==========  ======================================
what                      limit       constant
========================  ==========  ======================================
a scenario file           4 MiB       :data:`MAX_SCENARIO_BYTES`
an image                  64 MiB      :data:`MAX_IMAGE_BYTES`
a video                   4 GiB       :data:`MAX_VIDEO_BYTES`
a data file (JSON, CSV)   1 GiB       :data:`MAX_DATA_BYTES`
========================  ==========  ======================================
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mmsim.errors import DataError, UserError

MiB = 1 << 20
MAX_SCENARIO_BYTES = 4 * MiB
MAX_IMAGE_BYTES = 64 * MiB
MAX_DATA_BYTES = 1024 * MiB
MAX_VIDEO_BYTES = 4096 * MiB


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def _check_stat(st: os.stat_result, max_bytes: int, what: str, error: type[UserError],
                where: str) -> None:
    """Refuse what is not a regular file, or is over ``max_bytes``."""
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} not readable: {_kind(st.st_mode)}, not a regular file",
                    where=where)
    if st.st_size > max_bytes:
        raise error(f"{what} not read: {_size(st.st_size)}, more than the limit of "
                    f"{_size(max_bytes)}", where=where)


def read_bytes(path: str | Path, max_bytes: int, *, what: str = "file",
               error: type[UserError] = DataError, where: str | None = None) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; else an
    ``error`` (default :class:`DataError`) naming ``where`` (default the path). An
    ``OSError`` (missing, unreadable) is raised as it is, for the caller to word."""
    p = Path(path)
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_stat(os.fstat(fd), max_bytes, what, error, where or str(p))
        chunks = []
        left = max_bytes + 1  # a file that grows while it is read is still bounded
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise error(f"{what} not read: more than the limit of {_size(max_bytes)}",
                        where=where or str(p))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, max_bytes: int = MAX_DATA_BYTES, *, encoding: str = "utf-8",
              what: str = "data file") -> str:
    """:func:`read_bytes` decoded (``UnicodeDecodeError`` raised as it is)."""
    return read_bytes(path, max_bytes, what=what).decode(encoding)


def check_regular(path: str | Path, max_bytes: int, *, what: str = "file",
                  error: type[UserError] = DataError, where: str | None = None) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``max_bytes`` (for readers
    that open the file themselves, e.g. a parquet library). Follows symlinks."""
    p = Path(path)
    _check_stat(os.stat(p), max_bytes, what, error, where or str(p))


__all__ = ["MAX_DATA_BYTES", "MAX_IMAGE_BYTES", "MAX_SCENARIO_BYTES", "MAX_VIDEO_BYTES",
           "check_regular", "read_bytes", "read_text"]
