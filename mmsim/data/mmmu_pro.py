"""MMMU-Pro (HF ``MMMU/MMMU_Pro``) from a local copy of the dataset's parquet files.

Layout: ``<root>/<config>/test-0000k-of-0000n.parquet`` with ``config`` one of
``standard (10 options)``, ``standard (4 options)`` or ``vision`` (folder names with
spaces and parentheses, as published).

Standard rows (``id``, ``question``, ``options``, ``explanation``, ``image_1`` ..
``image_7``, ``img_type``, ``answer``, ``topic_difficulty``, ``subject``): ``options`` is
a string holding a Python list repr (read with :func:`ast.literal_eval`); the question
shown is the question text (``<image N>`` placeholders kept as text) followed by one
``A. option`` line per option, as MMMU-Pro's own prompt does; the non-null images are
attached in order of N (``meta["image_slots"]`` lists each one's N).

Vision rows (``id``, ``image``, ``options``, ``answer``, ``subject``): the question is in
the screenshot; the text is a fixed instruction followed by the options (unless
``options_in_text`` is false).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mmsim.data import dataset
from mmsim.data.mathverse import (
    check_options,
    image_from_struct,
    normalise_letter,
    read_parquet,
    resolve_data_path,
    row_where,
)
from mmsim.data.sample import Sample
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Image
from mmsim.registry import did_you_mean

CONFIGS: tuple[str, ...] = ("standard (10 options)", "standard (4 options)", "vision")
"""The published MMMU-Pro configs (folder names)."""

MAX_IMAGES = 7
LETTERS = "ABCDEFGHIJ"
VISION_INSTRUCTION = ("Answer the question shown in the image by choosing one of the options "
                      "below.")
VISION_INSTRUCTION_NO_OPTIONS = ("Answer the question shown in the image with the letter of "
                                 "the correct option.")
_PLACEHOLDER = re.compile(r"<image (\d+)>")
_OPTION_KEYS = ("path", "config", "split", "options_in_text")
_WHERE = "dataset 'mmmu_pro'"


def _files(root: Path, config: str, split: str) -> list[Path]:
    if root.is_file():
        return [root]
    folder = root / config
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DataError(f"no folder {config!r} under the MMMU-Pro root (found: "
                        f"{', '.join(map(repr, present)) or 'none'})", where=str(root),
                        field="config")
    files = sorted(folder.glob(f"{split}-*.parquet"))
    if not files:
        raise DataError(f"no {split}-*.parquet files", where=str(folder), field="path")
    return files


def _literal_list(value: Any, *, where: str, field: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if not isinstance(value, str):
        raise DataError(f"expected a list repr string, got {type(value).__name__}",
                        where=where, field=field)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise DataError(f"not a Python list repr ({type(exc).__name__}): {value[:80]!r}",
                        where=where, field=field) from exc
    if not isinstance(parsed, list | tuple):
        raise DataError(f"expected a list, got {type(parsed).__name__}", where=where,
                        field=field)
    return list(parsed)


def _choice(row: dict[str, Any], *, where: str) -> tuple[list[str], tuple[str, ...], str]:
    options = [str(o) for o in _literal_list(row.get("options"), where=where, field="options")]
    if not options:
        raise DataError("options is empty", where=where, field="options")
    if len(options) > len(LETTERS):
        raise DataError(f"{len(options)} options: at most {len(LETTERS)} (A-J) are supported",
                        where=where, field="options")
    letters = tuple(LETTERS[: len(options)])
    answer = normalise_letter(row.get("answer"))
    if answer is None or answer not in letters:
        raise DataError(f"answer {row.get('answer')!r} is not among the options' letters "
                        f"{letters[0]}-{letters[-1]}", where=where, field="answer")
    return options, letters, answer


def _option_lines(letters: tuple[str, ...], options: list[str]) -> str:
    return "\n".join(f"{lt}. {opt}" for lt, opt in zip(letters, options, strict=True))


def _standard(row: dict[str, Any], file: Path, index: int, images: dict[str, Any],
              folder: Path, config: str) -> Sample:
    sid = str(row["id"])
    where = row_where(file, index, sid)
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError("question is empty", where=where, field="question")
    options, letters, answer = _choice(row, where=where)
    refs = {int(n) for n in _PLACEHOLDER.findall(question + "\n" + "\n".join(options))}
    attached: list[Image] = []
    slots: list[int] = []
    for n in range(1, MAX_IMAGES + 1):
        field = f"image_{n}"
        value = images[field][index].as_py() if field in images else None
        img = image_from_struct(value, folder, file.parent, where=where, field=field)
        if img is None:
            if n in refs:
                raise DataError(f"the question or options refer to <image {n}> but {field} "
                                "is empty", where=where, field=field)
            continue
        attached.append(img)
        slots.append(n)
    img_type: Any = row.get("img_type")
    if isinstance(img_type, str):
        try:
            img_type = ast.literal_eval(img_type)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return Sample(
        id=sid,
        question=f"{question}\n{_option_lines(letters, options)}",
        images=tuple(attached),
        answer=answer,
        answer_format=AnswerFormat(kind="choice", letters=letters, options=tuple(options)),
        category=str(row.get("subject") or ""),
        meta={
            "config": config,
            "subject": str(row.get("subject") or ""),
            "topic_difficulty": row.get("topic_difficulty"),
            "img_type": img_type,
            "explanation": row.get("explanation"),
            "image_slots": slots,
        },
    )


def _vision(row: dict[str, Any], file: Path, index: int, images: dict[str, Any],
            folder: Path, options_in_text: bool) -> Sample:
    sid = str(row["id"])
    where = row_where(file, index, sid)
    options, letters, answer = _choice(row, where=where)
    value = images["image"][index].as_py() if "image" in images else None
    img = image_from_struct(value, folder, file.parent, where=where, field="image")
    if img is None:
        raise DataError("a vision row needs its image (the question is in it)", where=where,
                        field="image")
    text = (f"{VISION_INSTRUCTION}\n{_option_lines(letters, options)}" if options_in_text
            else VISION_INSTRUCTION_NO_OPTIONS)
    return Sample(
        id=sid,
        question=text,
        images=(img,),
        answer=answer,
        answer_format=AnswerFormat(kind="choice", letters=letters, options=tuple(options)),
        category=str(row.get("subject") or ""),
        meta={"config": "vision", "subject": str(row.get("subject") or ""),
              "options_in_text": options_in_text},
    )


@dataset("mmmu_pro")
def load_mmmu_pro(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                  limit: int | None) -> list[Sample]:
    """MMMU-Pro from a local copy of its parquet files (HF MMMU/MMMU_Pro).

    Options:
        path: the dataset root holding ``standard (10 options)/``, ``standard (4
            options)/`` and ``vision/`` (or one parquet file of a config).
        config: ``standard (10 options)`` (default), ``standard (4 options)`` or ``vision``.
        split: the file prefix, ``test`` (default).
        options_in_text: vision only: list the options under the instruction (default
            true); when false the text only asks for the letter of the option in the image.
    """
    check_options(options, _OPTION_KEYS, _WHERE)
    root = resolve_data_path(options.get("path"), base_dir, where=_WHERE)
    config = options.get("config", "standard (10 options)")
    if config not in CONFIGS:
        raise DataError(f"unknown config {config!r}{did_you_mean(str(config), list(CONFIGS))}; "
                        "known: " + ", ".join(map(repr, CONFIGS)), where=_WHERE, field="config")
    split = options.get("split", "test")
    if not isinstance(split, str) or not split:
        raise DataError("split must be a non-empty string", where=_WHERE, field="split")
    options_in_text = options.get("options_in_text", True)
    if not isinstance(options_in_text, bool):
        raise DataError("options_in_text must be true or false", where=_WHERE,
                        field="options_in_text")
    if root.is_file() and root.parent.name in CONFIGS and "config" not in options:
        config = root.parent.name
    vision = config == "vision"
    image_cols = ("image",) if vision else tuple(f"image_{n}" for n in range(1, MAX_IMAGES + 1))
    required = ("id", "options", "answer") + (("question",) if not vision else ())

    folder = cache_dir / "mmmu_pro"
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    total_rows = 0
    for file in _files(root, config, split):
        table = read_parquet(file)
        names = set(table.column_names)
        for col in required:
            if col not in names:
                raise DataError(f"missing column {col!r}: not an MMMU-Pro {config!r} file "
                                "(read other tables with name: parquet and a preset or "
                                "fields; docs/datasets.md)",
                                where=str(file), field=col)
        present = [c for c in image_cols if c in names]
        rows = table.drop(present).to_pylist()
        images = {c: table.column(c) for c in present}
        total_rows += len(rows)
        for i, row in enumerate(rows):
            sid = row.get("id")
            if sid is None or str(sid) == "":
                raise DataError("id is empty", where=row_where(file, i), field="id")
            sid = str(sid)
            if sid in seen:
                raise DataError(f"duplicate id {sid!r} (first in {seen[sid]})",
                                where=row_where(file, i, sid), field="id")
            seen[sid] = f"{file.name} row {i}"
            if limit is not None and len(samples) >= limit:
                continue  # keep checking ids; build no more samples
            samples.append(_vision(row, file, i, images, folder, options_in_text) if vision
                           else _standard(row, file, i, images, folder, config))
    if total_rows == 0:
        raise DataError("the dataset is empty (no rows)", where=str(root))
    return samples


__all__ = ["CONFIGS", "load_mmmu_pro"]
