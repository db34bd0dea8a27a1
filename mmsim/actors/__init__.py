"""Actors: async agents with a bounded inbox, owned by an ActorSystem."""

from mmsim.actors.base import Actor, ActorSystem
from mmsim.actors.roles import (
    AskContext,
    FeedbackProviderActor,
    FeedbackRequest,
    JudgeActor,
    JudgeRequest,
    ModelActor,
)

__all__ = ["Actor", "ActorSystem", "AskContext", "FeedbackProviderActor", "FeedbackRequest",
           "JudgeActor", "JudgeRequest", "ModelActor"]
