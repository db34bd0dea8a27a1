"""structlog set-up: log lines on stderr, human-readable unless JSON is asked for
(``mmsim run --log-format json``), never both in one run."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from mmsim.redaction import looks_secret, scrub


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


def _scrub(logger: object, method: str, event: MutableMapping[str, Any]
           ) -> MutableMapping[str, Any]:
    """No secret in a log line (mmsim.redaction)."""
    for k, v in event.items():
        if isinstance(v, str):
            event[k] = scrub(v)
        elif v is not None and not isinstance(v, int | float | bool):
            event[k] = scrub(str(v)) if looks_secret(str(v)) else v
    return event


def configure(level: str = "info", *, json: bool = False) -> None:
    """Log at ``level`` and above to stderr: ``key=value`` lines for people, or one JSON
    object a line with ``json=True``."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json
        else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.format_exc_info, _scrub, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
