"""Metrics computed from a run's store."""

from mmsim.metrics.interfeedback import compute

__all__ = ["compute"]
