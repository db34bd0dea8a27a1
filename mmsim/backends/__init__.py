"""Backends: how an agent produces text. Built in: ``sim``."""

from mmsim.backends import sim as _sim  # noqa: F401  (registers "sim")
from mmsim.backends.base import (
    BACKENDS,
    Backend,
    Completion,
    GenerateRequest,
    Oracle,
    backend,
)

__all__ = ["BACKENDS", "Backend", "Completion", "GenerateRequest", "Oracle", "backend"]
