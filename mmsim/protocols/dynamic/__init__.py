"""Dynamic evaluation by task perturbation (arXiv 2506.07202): one visual input, a family of
tasks (visual QA, captioning, question posing, answer verification, counting,
describe-then-answer, option elimination, or your own), a calibrated judge for open
outputs, an ability vector per model with sharpness and worst-task scores, and a
contamination study. A scenario with ``kind: dynamic`` runs it (docs/dynamic.md)."""

from __future__ import annotations

from typing import Any, ClassVar

from mmsim.data.sample import Sample
from mmsim.protocols.dynamic import sections as _sections  # noqa: F401  (its report sections)
from mmsim.protocols.dynamic.calibration import (
    CalibrationMap,
    agreement,
    auroc,
    ece,
    fit_isotonic,
    fit_logistic,
)
from mmsim.protocols.dynamic.data import DYN_DATASETS, dyn_dataset
from mmsim.protocols.dynamic.families import (
    DEFAULT_TASKS,
    TASK_FAMILIES,
    Scored,
    TaskFamily,
    TaskInstance,
    task_family,
)
from mmsim.protocols.dynamic.metrics import compute
from mmsim.protocols.dynamic.report import document, print_table, text_radar
from mmsim.protocols.dynamic.run import DynamicRun, JudgeRefused
from mmsim.protocols.dynamic.scenario import DynamicScenario
from mmsim.protocols.dynamic.sim import DynamicSim, make_dynamic_sim
from mmsim.registry import Registry
from mmsim.runtime.protocol import EvalProtocol, Role, protocol
from mmsim.spec import LoadedScenario


@protocol
class Dynamic(EvalProtocol[DynamicScenario, list[Sample]]):
    """Dynamic evaluation by task perturbation, with a calibrated judge."""

    name = "dynamic"
    title = ("dynamic evaluation: one visual input, a family of tasks, a calibrated judge, "
             "an ability vector per model")
    scenario = DynamicScenario
    agents: ClassVar[dict[str, tuple[Role, ...]]] = {"models": ("model",),
                                                     "judges": ("judge",)}
    sim = make_dynamic_sim
    sim_class = DynamicSim
    registries: ClassVar[tuple[tuple[str, Registry[Any]], ...]] = (
        ("dynamic-evaluation task families", TASK_FAMILIES),
        ("dynamic-evaluation datasets", DYN_DATASETS))
    compute = compute
    table = print_table
    document = document
    run = DynamicRun

    def actor_options(self, scn: DynamicScenario, role: Role) -> dict[str, Any]:
        return {"retries": scn.judge.retries} if role == "judge" else {}

    def summary(self, loaded: LoadedScenario) -> str:
        d = loaded.scenario
        return (f"dynamic: {len(d.models)} models x {len(d.tasks)} task families, "
                f"{len(d.judges)} judges on dataset {d.dataset.name!r}")


__all__ = [
    "DEFAULT_TASKS",
    "DYN_DATASETS",
    "TASK_FAMILIES",
    "CalibrationMap",
    "Dynamic",
    "DynamicScenario",
    "JudgeRefused",
    "Scored",
    "TaskFamily",
    "TaskInstance",
    "agreement",
    "auroc",
    "compute",
    "document",
    "dyn_dataset",
    "ece",
    "fit_isotonic",
    "fit_logistic",
    "print_table",
    "task_family",
    "text_radar",
]
