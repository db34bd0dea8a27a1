"""Dynamic evaluation by task perturbation (arXiv 2506.07202): one visual input, a family of
tasks (visual QA, captioning, question posing, answer verification, counting,
describe-then-answer, option elimination, or your own), a calibrated judge for open
outputs, an ability vector per model with sharpness and worst-task scores, and a
contamination study. A scenario with ``kind: dynamic`` runs it (docs/dynamic.md)."""

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
from mmsim.protocols.dynamic.report import print_table, render, text_radar
from mmsim.protocols.dynamic.runner import JudgeRefused, run_dynamic
from mmsim.protocols.dynamic.scenario import (
    DynamicScenario,
    LoadedDynamic,
    load_dynamic_scenario,
)

__all__ = ["DEFAULT_TASKS", "DYN_DATASETS", "TASK_FAMILIES", "CalibrationMap",
           "DynamicScenario", "JudgeRefused", "LoadedDynamic", "Scored", "TaskFamily",
           "TaskInstance", "agreement", "auroc", "compute", "dyn_dataset", "ece",
           "fit_isotonic", "fit_logistic", "load_dynamic_scenario", "print_table", "render",
           "run_dynamic", "task_family", "text_radar"]
