"""Feedback policies. Built-ins: ``binary``, ``detailed``, ``reveal``, ``retry``, ``human``; a
scenario can also give a per-round ``schedule`` of them. Add your own with :func:`policy`."""

from mmsim.policies import builtin as _builtin  # noqa: F401  (registers the built-ins)
from mmsim.policies import human as _human  # noqa: F401  (registers "human")
from mmsim.policies.base import POLICIES, FeedbackContext, PolicyFn, policy
from mmsim.policies.leak import detect_leak

__all__ = ["POLICIES", "FeedbackContext", "PolicyFn", "detect_leak", "policy"]
