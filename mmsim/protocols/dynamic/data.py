"""Data of dynamic evaluation: one visual input per item, with what the task families need.

Items are :class:`~mmsim.data.sample.Sample` objects whose ``question``/``answer``/
``answer_format`` are the T0 (visual QA) task; ``meta`` may add:

* ``caption`` — a reference caption (T1 captioning is judged against it);
* ``pose`` — a reference "question? answer" about the input (T2 question posing);
* ``count`` / ``count_question`` — a total count with its question (T4 counting);
* ``open_answer`` — the T0 answer is open text (scored by the judge, e.g. CVRR-ES).

Loaders (``dataset: {name: ...}`` of a ``kind: dynamic`` scenario):

* ``synthetic-scenes`` (default): the built-in counting drawings (coloured shapes, exact
  answers) with a generated reference caption, posed question and total count;
* ``mme``: MME in its release layout — per-category folders with ``images/`` and
  ``questions_answers_YN/<image stem>.txt`` (one ``question<TAB>Yes|No`` line per
  question; some categories keep the image and its ``.txt`` side by side), or the
  ``lmms-lab/MME`` parquet (``question_id``, ``image``, ``question``, ``answer``,
  ``category``);
* ``realworldqa``: the ``xai-org/RealworldQA`` parquet or a JSON list of rows with
  ``image`` (struct or relative path), ``question`` (options inline as ``A. ...`` lines),
  ``answer`` (a letter or a short word);
* ``cvrr-es``: ``CVRR-ES/<dimension>/annotations_<dimension>.json`` lists of
  ``{"VideoID", "Q", "A"}`` with the videos in ``<dimension>/<VideoID>`` (open answers,
  judged). Videos are referenced, not decoded: a backend that needs pixels decodes
  frames with PyAV when it is installed, else fails with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mmsim.data import safeio
from mmsim.data.mathverse import (
    check_options,
    image_from_file,
    image_from_struct,
    read_parquet,
    resolve_data_path,
    row_where,
)
from mmsim.data.sample import Sample
from mmsim.data.synthetic import load_synthetic
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Video
from mmsim.registry import Registry


class DynDatasetLoader(Protocol):
    def __call__(self, options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                 limit: int | None) -> list[Sample]: ...


DYN_DATASETS: Registry[DynDatasetLoader] = Registry("dynamic-evaluation dataset")


def dyn_dataset(name: str) -> Callable[[DynDatasetLoader], DynDatasetLoader]:
    """Register a dynamic-evaluation dataset loader under ``name``."""
    return DYN_DATASETS.decorator(name)


# --------------------------------------------------------------------------- synthetic
def _plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def scene_caption(objects: list[dict[str, Any]], occlusion: bool) -> str:
    """The reference caption of a synthetic scene: the total and its three largest groups."""
    groups = Counter((o["colour"], o["shape"]) for o in objects)
    top = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    parts = [f"{n} {c} {_plural(s, n)}" for (c, s), n in top]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    action = "stacked" if occlusion else "scattered"
    return (f"The image shows {len(objects)} shapes {action} on a white background, "
            f"including {listed}.")


def scene_pose(objects: list[dict[str, Any]], target: tuple[str, str]) -> str:
    """A reference posed question about a group other than the T0 target, with its answer."""
    groups = Counter((o["colour"], o["shape"]) for o in objects)
    others = sorted(((k, n) for k, n in groups.items() if k != target),
                    key=lambda kv: (-kv[1], kv[0]))
    (colour, shape), n = others[0] if others else (target, groups[target])
    return f"How many {colour} {shape}s are there in the image? {n}"


@dyn_dataset("synthetic-scenes")
def load_scenes(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                limit: int | None) -> list[Sample]:
    """Built-in drawings of coloured shapes with exact answers, reference captions, posed
    questions and counts (options: ``seed``, ``size``)."""
    check_options(options, ("seed", "size"), "dataset 'synthetic-scenes'")
    base = load_synthetic({**options, "families": ["counting"]}, base_dir=base_dir,
                          cache_dir=cache_dir, limit=limit)
    out = []
    for s in base:
        params = s.meta["params"]
        objects = params["objects"]
        target = (params["target_colour"], params["target_shape"])
        meta = {**s.meta, "caption": scene_caption(objects, bool(params["occlusion"])),
                "pose": scene_pose(objects, target), "count": len(objects),
                "count_question": "How many shapes are there in the image in total? "
                                  "Answer with a single number."}
        out.append(s.model_copy(update={"id": s.id.replace("syn-", "scene-"), "meta": meta,
                                        "category": "scene"}))
    return out


# --------------------------------------------------------------------------- MME
_YES_NO = AnswerFormat(kind="exact")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _yn(value: Any, where: str) -> str:
    v = str(value).strip().rstrip(".").capitalize()
    if v not in ("Yes", "No"):
        raise DataError(f"answer must be Yes or No, got {value!r}", where=where,
                        field="answer")
    return v


def _mme_folder(root: Path, limit: int | None) -> list[Sample]:
    out: list[Sample] = []
    for cat in sorted(p for p in root.iterdir() if p.is_dir()):
        qa_dir = cat / "questions_answers_YN"
        img_dir = cat / "images"
        txts = sorted(qa_dir.glob("*.txt")) if qa_dir.is_dir() else sorted(cat.glob("*.txt"))
        for txt in txts:
            folder = img_dir if qa_dir.is_dir() else cat
            image = next((folder / (txt.stem + e) for e in _IMAGE_EXT
                          if (folder / (txt.stem + e)).is_file()), None)
            if image is None:
                raise DataError(f"no image for {txt.name} in {folder}", where=str(txt))
            img = image_from_file(image, where=str(txt), field="image")
            lines = [ln for ln in safeio.read_text(txt, encoding="utf-8").splitlines()
                     if ln.strip()]
            for j, line in enumerate(lines):
                q, tab, a = line.rpartition("\t")
                if not tab:
                    raise DataError("expected 'question<TAB>Yes|No'", where=f"{txt}:{j + 1}")
                out.append(Sample(
                    id=f"mme/{cat.name}/{image.name}#{j}", question=q.strip(), images=(img,),
                    answer=_yn(a, f"{txt}:{j + 1}"), answer_format=_YES_NO,
                    category=cat.name, meta={"source": "mme", "question_id":
                                             f"{cat.name}/{image.name}"}))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def _parquet_files(path: Path, where: str) -> list[Path]:
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise DataError("no parquet file found", where=str(path), field="path")
    del where
    return files


@dyn_dataset("mme")
def load_mme(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
             limit: int | None) -> list[Sample]:
    """MME (yes/no per image, 14 categories): the release folders or the HF parquet
    (option ``path``)."""
    check_options(options, ("path",), "dataset 'mme'")
    path = resolve_data_path(options.get("path"), base_dir, where="dataset 'mme'")
    if path.is_dir() and not any(path.rglob("*.parquet")):
        return _mme_folder(path, limit)
    out: list[Sample] = []
    seen: Counter[str] = Counter()
    for f in _parquet_files(path, "dataset 'mme'"):
        table = read_parquet(f)
        images = table.column("image") if "image" in table.column_names else None
        rows = table.drop(["image"]).to_pylist() if images is not None else table.to_pylist()
        for i, row in enumerate(rows):
            where = row_where(f, i, row.get("question_id"))
            for key in ("question_id", "question", "answer"):
                if row.get(key) in (None, ""):
                    raise DataError(f"missing {key!r}", where=where, field=key)
            img = image_from_struct(images[i].as_py() if images is not None else None,
                                    cache_dir / "mme", f.parent, where=where, field="image")
            qid = str(row["question_id"])
            sid = f"mme/{qid}#{seen[qid]}"
            seen[qid] += 1
            out.append(Sample(id=sid, question=str(row["question"]),
                              images=(img,) if img else (), answer=_yn(row["answer"], where),
                              answer_format=_YES_NO, category=str(row.get("category") or ""),
                              meta={"source": "mme", "question_id": qid}))
            if limit is not None and len(out) >= limit:
                return out
    return out


# --------------------------------------------------------------------------- RealWorldQA
_OPTION_LINE = re.compile(r"^\s*([A-F])[.)]\s+(.+?)\s*$")


def _inline_options(question: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    letters, texts = [], []
    for line in question.splitlines():
        m = _OPTION_LINE.match(line)
        if m:
            letters.append(m.group(1))
            texts.append(m.group(2))
    return tuple(letters), tuple(texts)


@dyn_dataset("realworldqa")
def load_realworldqa(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                     limit: int | None) -> list[Sample]:
    """RealWorldQA (real-world photos; multiple choice or short answers): the HF parquet or
    a JSON list of rows (option ``path``)."""
    check_options(options, ("path",), "dataset 'realworldqa'")
    path = resolve_data_path(options.get("path"), base_dir, where="dataset 'realworldqa'")
    rows: list[tuple[Path, int, dict[str, Any], Any]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(safeio.read_text(path, encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"not a readable JSON list ({exc})", where=str(path)) from None
        if not isinstance(data, list):
            raise DataError("expected a JSON list of rows", where=str(path))
        rows = [(path, i, r, r.get("image")) for i, r in enumerate(data) if isinstance(r, dict)]
    else:
        for f in _parquet_files(path, "dataset 'realworldqa'"):
            table = read_parquet(f)
            images = table.column("image") if "image" in table.column_names else None
            plain = table.drop(["image"]).to_pylist() if images is not None \
                else table.to_pylist()
            rows += [(f, i, r, images[i].as_py() if images is not None else None)
                     for i, r in enumerate(plain)]
    out: list[Sample] = []
    for f, i, row, image in rows:
        where = row_where(f, i)
        for key in ("question", "answer"):
            if row.get(key) in (None, ""):
                raise DataError(f"missing {key!r}", where=where, field=key)
        if isinstance(image, str):
            image = {"path": image}
        img = image_from_struct(image, cache_dir / "realworldqa", f.parent, where=where,
                                field="image")
        question, answer = str(row["question"]), str(row["answer"]).strip()
        letters, texts = _inline_options(question)
        if letters and answer.rstrip(".").upper() in letters:
            fmt = AnswerFormat(kind="choice", letters=letters, options=texts)
            answer = answer.rstrip(".").upper()
        elif re.fullmatch(r"-?\d+(?:\.\d+)?", answer):
            fmt = AnswerFormat(kind="numeric")
        else:
            fmt = AnswerFormat(kind="exact")
        out.append(Sample(id=f"rwqa-{i:04d}", question=question, images=(img,) if img else (),
                          answer=answer, answer_format=fmt, category="realworldqa",
                          meta={"source": "realworldqa"}))
        if limit is not None and len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------- CVRR-ES
def _video(path: Path) -> Video:
    """A video by reference; its sha256 is of the file when present (else of its path:
    the annotations load without the videos, a backend needing pixels then fails)."""
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
    else:
        digest = hashlib.sha256(str(path).encode()).hexdigest()
    return Video(uri=str(path), sha256=digest)


@dyn_dataset("cvrr-es")
def load_cvrr(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
              limit: int | None) -> list[Sample]:
    """CVRR-ES (video reasoning, 11 dimensions, open answers scored by the judge): the
    ``CVRR-ES`` folder (option ``path``; ``dimensions`` to keep some)."""
    del cache_dir
    check_options(options, ("path", "dimensions"), "dataset 'cvrr-es'")
    root = resolve_data_path(options.get("path"), base_dir, where="dataset 'cvrr-es'")
    wanted = options.get("dimensions")
    files = sorted(root.glob("*/annotations_*.json"))
    if not files:
        raise DataError("no <dimension>/annotations_<dimension>.json file found",
                        where=str(root), field="path")
    out: list[Sample] = []
    for f in files:
        dim = f.parent.name
        if wanted and dim not in wanted:
            continue
        try:
            rows = json.loads(safeio.read_text(f, encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"not a readable JSON list ({exc})", where=str(f)) from None
        if not isinstance(rows, list):
            raise DataError("expected a JSON list of {VideoID, Q, A}", where=str(f))
        for i, row in enumerate(rows):
            where = row_where(f, i, row.get("VideoID") if isinstance(row, dict) else None)
            if not isinstance(row, dict):
                raise DataError("expected an object", where=where)
            for key in ("VideoID", "Q", "A"):
                if row.get(key) in (None, ""):
                    raise DataError(f"missing {key!r}", where=where, field=key)
            video = _video(f.parent / str(row["VideoID"]))
            out.append(Sample(
                id=f"cvrr/{dim}/{row['VideoID']}#{i}", question=str(row["Q"]), videos=(video,),
                answer=str(row["A"]), answer_format=AnswerFormat(kind="exact"), category=dim,
                meta={"source": "cvrr-es", "open_answer": True, "caption": None}))
            if limit is not None and len(out) >= limit:
                return out
    return out


__all__ = ["DYN_DATASETS", "dyn_dataset", "load_cvrr", "load_mme", "load_realworldqa",
           "load_scenes", "scene_caption", "scene_pose"]


def _register_readers() -> None:
    """The field-map readers (tsv, parquet, jsonl, ...): each row an image + QA item,
    the seed of the task families (``caption``, ``pose``, ``count`` columns are kept in
    ``meta``, where the families look for them)."""
    from mmsim.data.readers import READERS, reader_loader

    for name, doc in READERS.items():
        DYN_DATASETS.register(name, reader_loader(None if name == "table" else name),
                              doc=doc)


_register_readers()
