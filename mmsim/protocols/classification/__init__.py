"""Classification protocols (arXiv 2603.06578): closed world with output mapping, multiple
choice with random vs hard distractors, open world mapped by a text encoder, batch size and
image order, multilabel (ReaL / ReGT) ground truth. A scenario with ``kind:
classification`` runs them (docs/classification.md)."""

from mmsim.protocols.classification.data import (
    CLS_DATASETS,
    ClassificationData,
    classification_dataset,
    read_class_list,
    read_real_json,
    read_relabel_csv,
)
from mmsim.protocols.classification.encoders import (
    ENCODERS,
    ClassIndex,
    EncoderUnavailable,
    TextEncoder,
    encoder,
    get_encoder,
)
from mmsim.protocols.classification.metrics import compute
from mmsim.protocols.classification.report import print_table, render
from mmsim.protocols.classification.runner import run_classification
from mmsim.protocols.classification.scenario import (
    ClassificationScenario,
    LoadedClassification,
    load_classification_scenario,
)

__all__ = ["CLS_DATASETS", "ENCODERS", "ClassIndex", "ClassificationData",
           "ClassificationScenario", "EncoderUnavailable", "LoadedClassification",
           "TextEncoder", "classification_dataset", "compute", "encoder", "get_encoder",
           "load_classification_scenario", "print_table", "read_class_list", "read_real_json",
           "read_relabel_csv", "render", "run_classification"]
