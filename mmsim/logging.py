"""structlog set-up: log lines on stderr, human-readable unless JSON is asked for
(``mmsim run --log-format json``), never both in one run."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is *now* (a stream bound at configure time may
    have been replaced and closed since: test runners, embedding applications)."""

    def write(self, s: str) -> int:
        stream: TextIO | None = sys.stderr
        if stream is None or stream.closed:
            return 0
        return stream.write(s)

    def flush(self) -> None:
        stream = sys.stderr
        if stream is not None and not stream.closed:
            stream.flush()


def configure(level: str = "info", *, json: bool = False) -> None:
    """Log at ``level`` and above to stderr: ``key=value`` lines for people, or one JSON
    object a line with ``json=True``."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json
        else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
