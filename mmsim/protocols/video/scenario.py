"""The ``kind: video`` scenario schema (docs/video.md).

Errors name the file, the line and the dotted field, as for the other scenario kinds.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmsim.data.video import FrameSpec
from mmsim.protocols.video.data import VIDEO_DATASETS
from mmsim.registry import Registry
from mmsim.spec import AgentSpec, DatasetSpec, RunSpec, ScenarioModel, ServerSpec, check_servers

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

# The published SEED-Bench-R1 instruction, appended to the problem text.
PROMPT = ("{problem} Output the thinking process in <think> </think> and final answer in "
          "<answer> </answer> tags, i.e., <think> reasoning process here </think><answer> "
          "answer here </answer>. ")


class VideoDatasetSpec(DatasetSpec):
    """``name`` picks the loader (of ``VIDEO_DATASETS``); every other key is the loader's option."""

    dataset_registry: ClassVar[Registry[Any]] = VIDEO_DATASETS
    dataset_label: ClassVar[str] = "video dataset"
    name: str = "synthetic-video"


class FramesSpec(FrameSpec):
    """How a clip reaches a model: ``send: images`` — mmsim samples frames (the
    :class:`~mmsim.data.video.FrameSpec` recipe) and sends them as images before the
    current observation; ``send: video`` — the clip itself, for backends and servers that
    take videos (the openai backend's ``params.video: video_url``)."""

    send: Literal["images", "video"] = "images"


class EvalSpec(BaseModel):
    """The evaluation pass: one reply per model and validation item, greedy by default
    (``temperature: null`` leaves each agent's own sampling parameters)."""

    model_config = _STRICT
    temperature: float | None = Field(0.0, ge=0)


class RolloutSpec(BaseModel):
    """Rollouts for post-training research: ``samples`` (G) replies per prompt at
    ``temperature``, for the items of ``split`` (``training``: the dataset's training rows;
    ``validation``: the levels' items; ``all``), ``k`` values of pass@k (each <= samples),
    ``ddof`` of the group standard deviation in the advantages, and ``export`` formats
    written to the run directory at the end."""

    model_config = _STRICT
    samples: int = Field(8, ge=1, le=1024)
    temperature: float = Field(1.0, gt=0)
    split: Literal["training", "validation", "all"] = "training"
    k: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    ddof: Literal[0, 1] = 1
    max_items: int | None = Field(None, ge=1)
    export: list[Literal["jsonl", "parquet"]] = Field(
        default_factory=lambda: ["jsonl"])  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _k(self) -> RolloutSpec:
        bad = [k for k in self.k if not 1 <= k <= self.samples]
        if bad:
            raise ValueError(f"pass@k needs 1 <= k <= samples ({self.samples}); got {bad}")
        self.k = sorted(set(self.k))
        return self


class VideoScenario(ScenarioModel):
    """A ``kind: video`` scenario file (see docs/video.md)."""

    model_config = _STRICT
    kind: Literal["video"] = "video"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    dataset: VideoDatasetSpec = VideoDatasetSpec()
    frames: FramesSpec = FramesSpec()
    prompt: str = PROMPT
    models: list[AgentSpec] = Field(min_length=1)
    eval: EvalSpec = EvalSpec()
    rollouts: RolloutSpec | None = RolloutSpec()
    rewards: list[Literal["accuracy", "format"]] = Field(
        default_factory=lambda: ["accuracy", "format"], min_length=1)  # type: ignore[arg-type]
    run: RunSpec = RunSpec()
    servers: list[ServerSpec] = Field(default_factory=list)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if "{problem}" not in v:
            raise ValueError("the prompt must contain {problem} (the question and options)")
        return v

    @model_validator(mode="after")
    def _check(self) -> VideoScenario:
        seen: set[str] = set()
        for a in self.models:
            if a.name in seen:
                raise ValueError(f"duplicate agent name {a.name!r}")
            seen.add(a.name)
            if a.kind == "human":
                raise ValueError(f"model {a.name!r} is a human proxy: video scenarios run "
                                 "models only")
            if (self.rollouts is not None and self.rollouts.samples > 1
                    and a.params.get("seed") is not None):
                raise ValueError(f"model {a.name!r} has a fixed params.seed: its "
                                 f"{self.rollouts.samples} rollout samples per prompt would "
                                 "all be the same reply; drop the seed for rollouts")
        check_servers(self.models, self.servers)
        return self




__all__ = ["PROMPT", "EvalSpec", "FramesSpec", "RolloutSpec",
           "VideoDatasetSpec", "VideoScenario"]
