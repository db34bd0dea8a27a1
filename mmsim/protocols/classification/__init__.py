"""Classification protocols (arXiv 2603.06578): closed world with output mapping, multiple
choice with random vs hard distractors, open world mapped by a text encoder, batch size and
image order, multilabel (ReaL / ReGT) ground truth. A scenario with ``kind:
classification`` runs them (docs/classification.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mmsim.data.sample import Sample, dataset_fingerprint
from mmsim.protocols.classification import html as _html  # noqa: F401  (its report section)
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
from mmsim.protocols.classification.report import document, print_table
from mmsim.protocols.classification.run import ClassificationRun, check_labels
from mmsim.protocols.classification.scenario import ClassificationScenario
from mmsim.protocols.classification.sim import ClassifierSim, make_classifier_sim
from mmsim.registry import Registry
from mmsim.runtime.protocol import EvalProtocol, protocol
from mmsim.spec import LoadedScenario


@protocol
class Classification(EvalProtocol[ClassificationScenario, ClassificationData]):
    """Classification protocols: closed, multiple choice (random/hard), open, batches."""

    name = "classification"
    title = ("classification: closed world, multiple choice with random vs hard "
             "distractors, open world, batch size and order, multilabel ground truth")
    scenario = ClassificationScenario
    sim = make_classifier_sim
    sim_class = ClassifierSim
    registries: ClassVar[tuple[tuple[str, Registry[Any]], ...]] = (
        ("classification datasets", CLS_DATASETS), ("encoders", ENCODERS))
    compute = compute
    table = print_table
    document = document
    run = ClassificationRun

    def load_data(self, loaded: LoadedScenario, cache_dir: Path) -> ClassificationData:
        data = super().load_data(loaded, cache_dir)
        check_labels(loaded, data)
        return data

    def samples(self, data: ClassificationData) -> list[Sample]:
        return list(data.items)

    def dataset_manifest(self, loaded: LoadedScenario, data: ClassificationData
                         ) -> dict[str, Any]:
        return {"name": data.name, "n_samples": len(data.items),
                "n_classes": len(data.classes),
                "fingerprint": dataset_fingerprint(list(data.items))}

    def summary(self, loaded: LoadedScenario) -> str:
        c = loaded.scenario
        return (f"classification: {len(c.models)} models x {len(c.encoders)} encoders on "
                f"dataset {c.dataset.name!r}")


__all__ = [
    "CLS_DATASETS",
    "ENCODERS",
    "ClassIndex",
    "Classification",
    "ClassificationData",
    "ClassificationScenario",
    "EncoderUnavailable",
    "TextEncoder",
    "classification_dataset",
    "compute",
    "document",
    "encoder",
    "get_encoder",
    "print_table",
    "read_class_list",
    "read_real_json",
    "read_relabel_csv",
]
