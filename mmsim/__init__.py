"""mmsim: interactive evaluation of multimodal models as simulations of async agents."""

from mmsim._version import __version__
from mmsim.actors import Actor, ActorSystem, FeedbackProviderActor, JudgeActor, ModelActor
from mmsim.backends import Backend, Completion, GenerateRequest, backend
from mmsim.data import Sample, dataset
from mmsim.errors import DataError, InfrastructureError, ScenarioError, UserError
from mmsim.messages import (
    AnswerFormat,
    ChatTurn,
    Feedback,
    Grade,
    Image,
    Observation,
    Response,
    Text,
    Usage,
    Verdict,
    Video,
)
from mmsim.policies import FeedbackContext, policy
from mmsim.protocols.interfeedback import Scenario
from mmsim.scenario import load_scenario

__all__ = [
    "Actor", "ActorSystem", "AnswerFormat", "Backend", "ChatTurn", "Completion", "DataError",
    "Feedback", "FeedbackContext", "FeedbackProviderActor", "GenerateRequest", "Grade",
    "Image", "InfrastructureError", "JudgeActor", "ModelActor", "Observation", "Response",
    "Sample", "Scenario", "ScenarioError", "Text", "Usage", "UserError", "Verdict", "Video",
    "__version__", "backend", "dataset", "load_scenario", "policy",
]
