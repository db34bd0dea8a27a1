"""Video multiple choice with generalization levels and verifiable-reward rollouts
(SEED-Bench-R1, arXiv 2503.24376): clips sampled into frames by the published recipe and
cached by content hash, accuracy by level L1/L2/L3 with intervals and models side by side,
and G samples per prompt scored by the accuracy and format rewards — pass@k, group reward
statistics, GRPO advantages, exported for a trainer. A scenario with ``kind: video`` runs
it (docs/video.md)."""

from mmsim.protocols.video.data import VIDEO_DATASETS, video_dataset
from mmsim.protocols.video.export import export_rollouts, rollout_rows
from mmsim.protocols.video.metrics import compute
from mmsim.protocols.video.report import print_table, render
from mmsim.protocols.video.rewards import (
    accuracy_reward,
    advantages,
    answer_letter,
    format_reward,
    pass_at_k,
)
from mmsim.protocols.video.runner import run_video
from mmsim.protocols.video.scenario import LoadedVideo, VideoScenario, load_video_scenario

__all__ = ["VIDEO_DATASETS", "LoadedVideo", "VideoScenario", "accuracy_reward", "advantages",
           "answer_letter", "compute", "export_rollouts", "format_reward",
           "load_video_scenario", "pass_at_k", "print_table", "render", "rollout_rows",
           "run_video", "video_dataset"]
