"""Video multiple choice with generalization levels and verifiable-reward rollouts
(SEED-Bench-R1, arXiv 2503.24376): clips sampled into frames by the published recipe and
cached by content hash, accuracy by level L1/L2/L3 with intervals and models side by side,
and G samples per prompt scored by the accuracy and format rewards — pass@k, group reward
statistics, GRPO advantages, exported for a trainer. A scenario with ``kind: video`` runs
it (docs/video.md)."""

from __future__ import annotations

from typing import Any, ClassVar

from mmsim.data.sample import Sample, dataset_fingerprint
from mmsim.protocols.video import sections as _sections  # noqa: F401  (its report sections)
from mmsim.protocols.video.data import VIDEO_DATASETS, video_dataset
from mmsim.protocols.video.export import export_rollouts, rollout_rows
from mmsim.protocols.video.metrics import compute
from mmsim.protocols.video.report import document, print_table
from mmsim.protocols.video.rewards import (
    accuracy_reward,
    advantages,
    answer_letter,
    format_reward,
    pass_at_k,
)
from mmsim.protocols.video.run import VideoRun
from mmsim.protocols.video.scenario import VideoScenario
from mmsim.protocols.video.sim import VideoSim, make_video_sim
from mmsim.registry import Registry
from mmsim.runtime.protocol import EvalProtocol, protocol
from mmsim.spec import LoadedScenario


@protocol
class VideoLevels(EvalProtocol[VideoScenario, list[Sample]]):
    """Video multiple choice by generalization level, with verifiable-reward rollouts."""

    name = "video"
    title = ("video multiple choice by generalization level (L1/L2/L3) with verifiable-"
             "reward rollouts")
    scenario = VideoScenario
    sim = make_video_sim
    sim_class = VideoSim
    registries: ClassVar[tuple[tuple[str, Registry[Any]], ...]] = (
        ("video datasets", VIDEO_DATASETS),)
    compute = compute
    table = print_table
    document = document
    run = VideoRun

    def loader_options(self, scn: VideoScenario) -> dict[str, Any]:
        return {"seed": scn.seed}  # the synthetic clips and split draws are seeded

    def dataset_manifest(self, loaded: LoadedScenario, data: list[Sample]) -> dict[str, Any]:
        return {"name": loaded.scenario.dataset.name, "n_samples": len(data),
                "levels": sorted({it.category for it in data}),
                "n_clips": len({v.sha256 for it in data for v in it.videos}),
                "fingerprint": dataset_fingerprint(data)}

    def summary(self, loaded: LoadedScenario) -> str:
        v = loaded.scenario
        ro = v.rollouts
        return (f"video: {len(v.models)} models on dataset {v.dataset.name!r}, frames "
                f"{v.frames.send}"
                + (f", rollouts G={ro.samples} at T={ro.temperature}" if ro else ""))


__all__ = [
    "VIDEO_DATASETS",
    "VideoLevels",
    "VideoScenario",
    "accuracy_reward",
    "advantages",
    "answer_letter",
    "compute",
    "document",
    "export_rollouts",
    "format_reward",
    "pass_at_k",
    "print_table",
    "rollout_rows",
    "video_dataset",
]
