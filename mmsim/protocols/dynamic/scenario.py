"""The ``kind: dynamic`` scenario schema (see docs/dynamic.md).

Errors name the file, the line and the dotted field, as for the other scenario kinds.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmsim.data.sample import Sample
from mmsim.messages import Part
from mmsim.protocols.dynamic.data import DYN_DATASETS
from mmsim.protocols.dynamic.families import DEFAULT_TASKS, TASK_FAMILIES
from mmsim.registry import Registry, did_you_mean
from mmsim.spec import AgentSpec, DatasetSpec, RunSpec, ScenarioModel, ServerSpec, check_servers

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class DynDatasetSpec(DatasetSpec):
    """``name`` picks the loader (of ``DYN_DATASETS``); every other key is the loader's option."""

    dataset_registry: ClassVar[Registry[Any]] = DYN_DATASETS
    dataset_label: ClassVar[str] = "dynamic-evaluation dataset"
    name: str = "synthetic-scenes"


class CalibrationSpec(BaseModel):
    """How each judge is calibrated: on the references of the first ``items`` items (one per
    judged family), ``paraphrases`` paraphrases and ``corruptions`` corruptions each, all
    scored ``runs`` times (agreement between runs 1 and 2 is reported)."""

    model_config = _STRICT
    items: int = Field(30, ge=2)
    paraphrases: int = Field(2, ge=1, le=10)
    corruptions: int = Field(2, ge=1, le=10)
    runs: int = Field(2, ge=1, le=5)


class JudgeSettings(BaseModel):
    """``use``: the judge that scores open outputs (default the first of ``judges``); it is
    refused when its paraphrase-vs-corruption AUROC is below ``min_auroc``. ``method``: the
    calibration map (``isotonic`` or ``logistic``). ``retries``: re-asks on a verdict without
    a score. ``scale``: verdicts are "Score: N" with N in 0..scale."""

    model_config = _STRICT
    use: str | None = None
    min_auroc: float = Field(0.75, ge=0, le=1)
    method: Literal["isotonic", "logistic"] = "isotonic"
    calibration: CalibrationSpec = CalibrationSpec()
    retries: int = Field(2, ge=0, le=10)
    scale: int = Field(5, ge=1, le=100)
    #: the judge's prompt template (``{rubric}``, ``{question}``, ``{reference}``,
    #: ``{output}``, ``{scale}``); None: the built-in one (docs/dynamic.md)
    prompt: str | None = None
    #: whether the judge sees the item's image(s)/video with the prompt: ``auto`` for the
    #: families whose correctness depends on the image (captioning, question posing; also
    #: in their calibration), ``always``, or ``never`` (text only)
    sees_image: Literal["auto", "always", "never"] = "auto"

    @model_validator(mode="after")
    def _prompt_fields(self) -> JudgeSettings:
        if self.prompt is not None:
            try:
                self.prompt.format(rubric="", question="", reference="", output="", scale=5)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"judge.prompt: {type(exc).__name__} {exc} — the template may "
                                 "use only {rubric}, {question}, {reference}, {output}, "
                                 "{scale} (write {{ and }} for literal braces)") from None
        return self


class DynamicScenario(ScenarioModel):
    """A ``kind: dynamic`` scenario file (see docs/dynamic.md)."""

    model_config = _STRICT
    kind: Literal["dynamic"] = "dynamic"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    dataset: DynDatasetSpec = DynDatasetSpec()
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS), min_length=1)
    models: list[AgentSpec] = Field(min_length=1)
    judges: list[AgentSpec] = Field(min_length=1)
    judge: JudgeSettings = JudgeSettings()
    run: RunSpec = RunSpec()
    servers: list[ServerSpec] = Field(default_factory=list)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        names = TASK_FAMILIES.names()
        for t in v:
            if t not in TASK_FAMILIES:
                raise ValueError(f"unknown task family {t!r}{did_you_mean(t, names)}; "
                                 f"known: {', '.join(names)}")
        if len(set(v)) != len(v):
            raise ValueError("duplicate task family")
        return v

    @model_validator(mode="after")
    def _check(self) -> DynamicScenario:
        seen: set[str] = set()
        for a in [*self.models, *self.judges]:
            if a.name in seen:
                raise ValueError(f"duplicate agent name {a.name!r}")
            seen.add(a.name)
        judges = [j.name for j in self.judges]
        if self.judge.use is not None and self.judge.use not in judges:
            raise ValueError(f"@judge.use {self.judge.use!r} is not one of the judges"
                             f"{did_you_mean(self.judge.use, judges)} ({', '.join(judges)})")
        check_servers([*self.models, *self.judges], self.servers)
        return self

    @property
    def scoring_judge(self) -> str:
        return self.judge.use or self.judges[0].name

    def canonical(self) -> dict[str, Any]:
        out = super().canonical()
        for key, default in (("prompt", None), ("sees_image", "auto")):
            if out["judge"].get(key) == default:  # defaults keep the fingerprint
                out["judge"].pop(key, None)
        return out

    def judge_visuals(self, family: str, item: Sample) -> tuple[Part, ...]:
        """What the judge sees of ``item`` when judging ``family`` (``judge.sees_image``)."""
        mode = self.judge.sees_image
        if mode == "never" or (mode == "auto"
                               and not TASK_FAMILIES.get(family).judge_needs_visual):
            return ()
        return (*item.images, *item.videos)




__all__ = ["CalibrationSpec", "DynDatasetSpec", "DynamicScenario", "JudgeSettings"]
