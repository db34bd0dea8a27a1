"""Backends: how an agent produces text. Built in: ``sim``."""

from mmsim.backends import hf as _hf  # noqa: F401  (registers "hf"; torch imported lazily)
from mmsim.backends import litellm as _litellm  # noqa: F401  (registers "litellm"; lazy)
from mmsim.backends import openai as _openai  # noqa: F401  (registers "openai")
from mmsim.backends import sim as _sim  # noqa: F401  (registers "sim")
from mmsim.backends import vllm as _vllm  # noqa: F401  (registers "vllm"; imported lazily)
from mmsim.backends.base import (
    BACKENDS,
    Backend,
    Completion,
    GenerateRequest,
    Oracle,
    backend,
)

__all__ = ["BACKENDS", "Backend", "Completion", "GenerateRequest", "Oracle", "backend"]
