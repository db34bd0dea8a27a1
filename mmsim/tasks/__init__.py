"""Task families: how an item is asked and how its answer is checked."""

from mmsim.registry import Registry

TASKS: Registry[str] = Registry("task")
TASKS.register("interfeedback", "interfeedback",
               doc="Answer, get feedback under a policy, answer again (InterFeedback).")

__all__ = ["TASKS"]
