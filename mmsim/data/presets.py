"""Presets: the field map of a well-known benchmark as its publisher ships it.

Column names follow the publishers' loaders and dataset cards: VLMEvalKit's TSV
(``vlmeval/dataset/image_mcq.py``: ``index, image, question, hint, A..Z, answer,
category, l2-category``), the Hugging Face dataset cards of ``Lin-Chen/MMStar``,
``derek-thomas/ScienceQA``, ``AI4Math/MathVista``, ``lmms-lab/ai2d``, ``lmms-lab/POPE``,
``lmms-lab/HallusionBench``, ``MMMU/MMMU`` and ``xai-org/RealworldQA`` (and the lmms-eval
task utilities that read them). A scenario's own ``fields`` override a preset's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """``fields``: the field map; ``prompt``: the prompt style; ``source``: where the
    layout comes from; ``options``: the split/config preferred when the scenario names
    none and the folder has them (MathVista's ``testmini``, MMMU's every subject and
    ``validation``)."""

    title: str
    fields: dict[str, Any]
    prompt: str = "vlmeval"
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "mmbench": Preset(
        "MMBench (VLMEvalKit TSV): index, image (base64 or the index of a row to reuse), "
        "hint, question, A..Z, answer letter, category, l2-category",
        {"id": "index", "question": "question", "hint": "hint", "choices": "A..Z",
         "answer": "answer", "answer_kind": "choice", "image": "image",
         "category": "category"},
        source="VLMEvalKit vlmeval/dataset/image_mcq.py (ImageMCQDataset.build_prompt)"),
    "mmstar": Preset(
        "MMStar (HF Lin-Chen/MMStar parquet): index, question (options inline), image, "
        "answer letter A-D, category, l2_category",
        {"id": "index", "question": "question", "answer": "answer", "answer_kind": "choice",
         "letters": "ABCD", "image": "image", "category": "category"},
        prompt="plain", source="huggingface.co/datasets/Lin-Chen/MMStar"),
    "scienceqa": Preset(
        "ScienceQA (HF derek-thomas/ScienceQA): image struct (may be empty), question, "
        "hint, choices list, answer index, subject/topic/grade",
        {"question": "question", "hint": "hint", "choices": "choices", "answer": "answer",
         "answer_kind": "index", "image": "image", "category": "subject"},
        source="huggingface.co/datasets/derek-thomas/ScienceQA"),
    "mathvista": Preset(
        "MathVista (HF AI4Math/MathVista): pid, question, decoded_image, choices (null "
        "when free-form), answer (option text or value), precision, question_type, "
        "answer_type, metadata struct",
        {"id": "pid", "question": "question", "choices": "choices", "answer": "answer",
         "answer_kind": "auto", "image": "decoded_image", "precision": "precision",
         "category": "metadata.task"},
        prompt="plain", source="huggingface.co/datasets/AI4Math/MathVista",
        options={"split": "testmini"}),
    "ai2d": Preset(
        "AI2D (HF lmms-lab/ai2d): question, options list, answer (index as a string), "
        "image",
        {"question": "question", "choices": "options", "answer": "answer",
         "answer_kind": "index", "image": "image"},
        prompt="plain", source="huggingface.co/datasets/lmms-lab/ai2d (lmms-eval ai2d)"),
    "pope": Preset(
        "POPE (HF lmms-lab/POPE): category (adversarial/popular/random) and question_id "
        "(together the id), question, answer yes/no, image",
        {"id": ["category", "question_id"], "question": "question", "answer": "answer",
         "answer_kind": "yesno", "image": "image", "category": "category"},
        prompt="plain", source="huggingface.co/datasets/lmms-lab/POPE"),
    "hallusionbench": Preset(
        "HallusionBench (HF lmms-lab/HallusionBench): category, subcategory, set_id, "
        "figure_id, question_id (together the id), question, gt_answer (1 yes / 0 no), "
        "image (empty for visual_input 0)",
        {"id": ["category", "subcategory", "set_id", "figure_id", "question_id"],
         "question": "question", "answer": "gt_answer",
         "answer_kind": "yesno", "image": "image", "category": "category"},
        prompt="plain", source="huggingface.co/datasets/lmms-lab/HallusionBench",
        options={"split": "image"}),
    "mmmu": Preset(
        "MMMU (HF MMMU/MMMU, one folder per subject): id, question, options (a list "
        "repr), image_1..image_7, answer letter (or free text for open questions), "
        "subfield, question_type",
        {"id": "id", "question": "question", "choices": "options", "answer": "answer",
         "answer_kind": "auto", "image": [f"image_{n}" for n in range(1, 8)],
         "category": "subfield"},
        prompt="plain", source="huggingface.co/datasets/MMMU/MMMU",
        options={"config": "*", "split": "validation"}),
    "realworldqa": Preset(
        "RealWorldQA (HF xai-org/RealworldQA): image, question (options inline as A. "
        "lines), answer (a letter or a short word)",
        {"question": "question", "answer": "answer", "answer_kind": "auto",
         "image": "image", "inline_choices": True},
        prompt="plain", source="huggingface.co/datasets/xai-org/RealworldQA"),
}


__all__ = ["PRESETS", "Preset"]
