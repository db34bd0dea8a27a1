"""Environments (POMDPs). Built in: the interactive-feedback protocol."""

from mmsim.env.interfeedback import (
    EpisodeFailed,
    EpisodeState,
    InterFeedbackEnv,
    PolicyPlan,
    RoundPolicy,
    Step,
)

__all__ = ["EpisodeFailed", "EpisodeState", "InterFeedbackEnv", "PolicyPlan", "RoundPolicy",
           "Step"]
