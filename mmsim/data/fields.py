"""Field-map readers: a user's table (VLMEvalKit TSV, Hugging Face parquet/arrow, JSONL,
JSON, CSV) read as :class:`~mmsim.data.sample.Sample` items through a field map that says
which column is the id, the question, the options, the answer, the image(s)...

Scenario syntax (every protocol; docs/datasets.md)::

    dataset:
      name: tsv            # or parquet, jsonl, json, csv, arrow, hf, table (any format)
      path: MMBench_DEV_EN.tsv
      preset: mmbench      # optional: a published benchmark's field map (presets.py)
      fields: {answer: label, image: [img1, img2]}   # optional: overrides

The rows stream from :mod:`mmsim.data.tables`; images are decoded when their row is
mapped, verified by PIL and written once, by content hash, to the run's assets
(``assets/tables/<sha256>.<ext>``). A VLMEvalKit ``image`` cell of 64 characters or
fewer is the ``index`` of the row whose image it reuses (VLMEvalKit's own rule).

:func:`scan` maps every row and collects the problems (``mmsim data inspect``);
:func:`load_samples` stops at the first one, with ``file:row: column: reason``.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsim.data.mathverse import (
    format_number,
    image_from_bytes,
    image_from_file,
    normalise_letter,
    parse_number,
)
from mmsim.data.presets import PRESETS
from mmsim.data.sample import Sample
from mmsim.data.tables import DEFAULT_MAX_FILE_MB, FORMATS, ROW_ERROR, Source, open_source
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Image, Video
from mmsim.registry import did_you_mean

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ANSWER_KINDS: tuple[str, ...] = ("auto", "choice", "index", "text", "numeric", "exact",
                                 "yesno")
PROMPTS: tuple[str, ...] = ("vlmeval", "plain")
FIELD_KEYS: tuple[str, ...] = (
    "id", "question", "hint", "choices", "answer", "answer_kind", "image", "video",
    "category", "meta", "precision", "abs_tol", "rel_tol", "letters", "index_base",
    "inline_choices", "label", "labels")
OPTION_KEYS: tuple[str, ...] = ("path", "format", "preset", "fields", "prompt", "config",
                                "split", "max_file_mb", "classes", "image_refs")
TSV_REF_MAX = 64
_DEFAULTS: dict[str, tuple[str, ...]] = {
    "id": ("index", "id", "question_id", "pid", "sample_id", "uid"),
    "question": ("question", "query", "prompt", "text"),
    "hint": ("hint",),
    "choices": ("choices", "options"),
    "answer": ("answer", "gt_answer", "label", "target"),
    "image": ("image", "images", "decoded_image", "image_path"),
    "video": ("video", "video_path"),
    "category": ("category",),
    "label": ("label",),
}
_INLINE = re.compile(r"^\s*\(?([A-Z])\)?[.:)]\s*(.+?)\s*$")
_B64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_YES = {"yes", "y", "true", "1", "是"}
_NO = {"no", "n", "false", "0", "否"}


@dataclass
class FieldMap:
    """Which column holds what (resolved against the columns of the first row)."""

    id: list[str] = field(default_factory=list)
    question: str | None = None
    hint: str | None = None
    choices: str | None = None  # a list column, or "A..Z" for letter columns
    answer: str | None = None
    answer_kind: str = "auto"
    image: list[str] = field(default_factory=list)
    video: str | None = None
    category: str | None = None
    meta: list[str] | None = None  # None: every other scalar column
    precision: str | None = None
    abs_tol: float | None = None
    rel_tol: float | None = None
    letters: str | None = None
    index_base: int = 0
    inline_choices: bool = False
    label: str | None = None
    labels: str | None = None
    absent: set[str] = field(default_factory=set)  # defaults not in the first row

    def mapped(self) -> dict[str, Any]:
        """The resolved map, as ``mmsim data inspect`` prints it."""
        out: dict[str, Any] = {}
        for k in FIELD_KEYS:
            v = getattr(self, k)
            if k in self.absent or v in (None, [], False) or (k == "index_base" and v == 0):
                continue
            out[k] = v[0] if isinstance(v, list) and len(v) == 1 else v
        if not self.id:
            out["id"] = "(row number)"
        return out


@dataclass
class Reader:
    """A configured reader: the source, the field map, the prompt style."""

    source: Source
    given: dict[str, Any]
    prompt: str
    preset: str | None
    image_refs: bool
    classes: list[str] | None = None
    fmap: FieldMap | None = None

    @property
    def where(self) -> str:
        return self.source.label


def _str_list(v: Any, key: str) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return list(v)
    raise DataError(f"{key} must be a column name or a list of them", field=f"fields.{key}")


def make_reader(options: dict[str, Any], base_dir: Path, *, fmt: str | None = None,
                classify: bool = False) -> Reader:
    """A reader for a scenario's ``dataset`` options (``fmt``: the format the loader's name
    fixes, None for ``table``)."""
    where = "dataset"
    unknown = [k for k in options if k not in OPTION_KEYS]
    if unknown:
        raise DataError(f"unknown option {unknown[0]!r}"
                        f"{did_you_mean(unknown[0], list(OPTION_KEYS))}; known: "
                        + ", ".join(OPTION_KEYS), where=f"{where} '{fmt or 'table'}'",
                        field=unknown[0])
    preset_name = options.get("preset")
    given: dict[str, Any] = {}
    prompt = "vlmeval"
    if preset_name is not None:
        if preset_name not in PRESETS:
            raise DataError(f"unknown preset {preset_name!r}"
                            f"{did_you_mean(str(preset_name), list(PRESETS))}; known: "
                            + ", ".join(PRESETS), field="preset")
        preset = PRESETS[preset_name]
        given.update(preset.fields)
        prompt = preset.prompt
    user = options.get("fields") or {}
    if not isinstance(user, dict):
        raise DataError("fields must be a mapping (field: column)", field="fields")
    for k in user:
        if k not in FIELD_KEYS:
            raise DataError(f"unknown field {k!r}{did_you_mean(str(k), list(FIELD_KEYS))}; "
                            "known: " + ", ".join(FIELD_KEYS), field=f"fields.{k}")
    given.update(user)
    if classify:
        given["_classify"] = True
    prompt = options.get("prompt", prompt)
    if prompt not in PROMPTS:
        raise DataError(f"prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}",
                        field="prompt")
    kind = given.get("answer_kind", "auto")
    if kind not in ANSWER_KINDS:
        raise DataError(f"answer_kind must be one of {', '.join(ANSWER_KINDS)}, got "
                        f"{kind!r}", field="fields.answer_kind")
    fmt = options.get("format", fmt)
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}{did_you_mean(str(fmt), list(FORMATS))}; "
                        "known: " + ", ".join(FORMATS), field="format")
    max_mb = options.get("max_file_mb", DEFAULT_MAX_FILE_MB)
    if not isinstance(max_mb, int | float) or isinstance(max_mb, bool) or max_mb <= 0:
        raise DataError("max_file_mb must be a positive number", field="max_file_mb")
    config = options.get("config")
    split = options.get("split")
    prefer = PRESETS[preset_name].options if preset_name is not None else {}
    classes = options.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) < 2):
        raise DataError("classes must be a list of at least 2 class names", field="classes")
    src = open_source(options.get("path"), base_dir, fmt=fmt, config=config,
                      split=None if split is None else str(split), max_mb=float(max_mb),
                      prefer_config=prefer.get("config"), prefer_split=prefer.get("split"))
    refs = options.get("image_refs", src.fmt == "tsv")
    return Reader(src, given, str(prompt), preset_name, bool(refs),
                  classes=[str(c) for c in classes] if classes else None)


def get_path(row: dict[str, Any], col: str) -> Any:
    """``row[col]``, following ``a.b`` into nested structs (``metadata.task``)."""
    if col in row:
        return row[col]
    cur: Any = row
    for part in col.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _has(row: dict[str, Any], col: str) -> bool:
    if col in row:
        return True
    head = col.split(".", 1)[0]
    return "." in col and isinstance(row.get(head), dict)


def resolve_fields(given: dict[str, Any], first: dict[str, Any], where: str) -> FieldMap:
    """The field map for rows shaped like ``first``: what ``given`` names (checked to
    exist), else the usual column names."""
    fm = FieldMap()
    cols = list(first)

    def pick(key: str) -> str | None:
        if key in given:
            v = given[key]
            if v is None:
                return None
            if not isinstance(v, str):
                raise DataError(f"{key} must be a column name", field=f"fields.{key}")
            if v == "A..Z" and key == "choices":
                return v
            if not _has(first, v):
                raise DataError(f"no column {v!r} for {key}{did_you_mean(v, cols)}; columns: "
                                + ", ".join(cols), where=where, field=f"fields.{key}")
            return v
        found = next((c for c in _DEFAULTS.get(key, ()) if c in first), None)
        if found is None and key in ("hint", "video", "category"):
            fm.absent.add(key)
            return _DEFAULTS[key][0]  # rows of JSONL may differ: a later row may have it
        return found

    if "id" in given:
        fm.id = _str_list(given["id"], "id")
        for c in fm.id:
            if not _has(first, c):
                raise DataError(f"no column {c!r} for id{did_you_mean(c, cols)}",
                                where=where, field="fields.id")
    else:
        fm.id = [c for c in _DEFAULTS["id"][:1] if c in first] or \
            [next((c for c in _DEFAULTS["id"] if c in first), "")]
        fm.id = [c for c in fm.id if c]
    fm.question = pick("question")
    fm.hint = pick("hint")
    fm.choices = pick("choices")
    if fm.choices is None and "choices" not in given and "A" in first and "B" in first:
        fm.choices = "A..Z"
    fm.answer = pick("answer")
    fm.answer_kind = str(given.get("answer_kind", "auto"))
    if "image" in given:
        fm.image = [] if given["image"] is None else _str_list(given["image"], "image")
        for c in fm.image:
            if not _has(first, c):
                raise DataError(f"no column {c!r} for image{did_you_mean(c, cols)}",
                                where=where, field="fields.image")
    else:
        img = next((c for c in _DEFAULTS["image"] if c in first), None)
        fm.image = [img] if img else [c for c in (f"image_{n}" for n in range(1, 8))
                                      if c in first]
        if not fm.image:
            fm.image = ["image"]
            fm.absent.add("image")
    fm.video = pick("video")
    fm.category = pick("category")
    fm.precision = pick("precision")
    fm.label = pick("label") if "label" in given else None
    fm.labels = pick("labels") if "labels" in given else None
    if given.get("_classify") and fm.label is None and fm.labels is None:
        fm.label = next((c for c in ("label", "answer", "class", "labels") if c in first),
                        None)
        if fm.label == "labels" or (fm.label and isinstance(first.get(fm.label), list)):
            fm.label, fm.labels = None, fm.label
        if fm.label is None and fm.labels is None:
            raise DataError("no label column: name it with fields.label (or fields.labels "
                            "for multilabel lists); columns: " + ", ".join(cols),
                            where=where, field="fields.label")
    meta = given.get("meta")
    if meta is not None:
        fm.meta = [] if meta == [] else _str_list(meta, "meta")
    for key in ("abs_tol", "rel_tol"):
        v = given.get(key)
        if v is not None:
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise DataError(f"{key} must be a number >= 0", field=f"fields.{key}")
            setattr(fm, key, float(v))
    letters = given.get("letters")
    if letters is not None:
        if not isinstance(letters, str) or not letters.isalpha() or not letters.isupper():
            raise DataError("letters must be capital letters, e.g. ABCD",
                            field="fields.letters")
        fm.letters = letters
    base = given.get("index_base", 0)
    if base not in (0, 1):
        raise DataError("index_base must be 0 or 1", field="fields.index_base")
    fm.index_base = int(base)
    fm.inline_choices = bool(given.get("inline_choices", False))
    if fm.answer is None and fm.label is None and fm.labels is None:
        raise DataError("no answer column: name it with fields.answer (columns: "
                        + ", ".join(cols) + ")", where=where, field="fields.answer")
    if fm.question is None and fm.label is None and fm.labels is None:
        raise DataError("no question column: name it with fields.question (columns: "
                        + ", ".join(cols) + ")", where=where, field="fields.question")
    return fm


# --------------------------------------------------------------------------- values


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or \
        (isinstance(v, str) and not v.strip())


def _text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def literal_list(v: Any) -> list[Any] | None:
    """A list value, or a string holding a Python/JSON list repr (VLMEvalKit and MMMU store
    lists that way), else None."""
    if isinstance(v, list | tuple):
        return list(v)
    if isinstance(v, str) and v.lstrip().startswith("["):
        try:
            parsed = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            try:
                parsed = json.loads(v)
            except ValueError:
                return None
        if isinstance(parsed, list | tuple):
            return list(parsed)
    return None


@dataclass
class ImageCtx:
    """Where images go and what was seen (the TSV ``index`` -> its images)."""

    folder: Path
    base: Path
    refs: bool
    by_index: dict[str, tuple[Image, ...]] = field(default_factory=dict)
    hashes: Counter[str] = field(default_factory=Counter)
    source: Source | None = None
    prescanned: bool = False

    def forward(self, ref: str, fm: FieldMap) -> tuple[Image, ...] | None:
        """The images of the row whose index is ``ref`` when it comes later in the file
        (VLMEvalKit allows it): once, a second pass stores every later row's image (one
        at a time, by content hash) so each reference resolves."""
        if not self.prescanned and self.source is not None and fm.id:
            self.prescanned = True
            for where, row in self.source.rows():
                if ROW_ERROR in row:
                    continue
                key = get_path(row, fm.id[0])
                if _missing(key) or _text(key) in self.by_index:
                    continue
                images: list[Image] = []
                try:
                    for col in fm.image:
                        value = get_path(row, col)
                        if isinstance(value, str) and len(value.strip()) > TSV_REF_MAX:
                            images += image_of(value, self, where=where, col=col)
                except DataError:
                    continue  # reported at its own row
                if images:
                    self.by_index[_text(key)] = tuple(images)
        return self.by_index.get(ref)


def _b64(s: str) -> bytes | None:
    if s.startswith("data:") and "," in s:
        s = s.split(",", 1)[1]
    if len(s) < 16 or not _B64.match(s[:256]):
        return None
    try:
        return base64.b64decode(s, validate=False)
    except (binascii.Error, ValueError):
        return None


def image_of(value: Any, ctx: ImageCtx, *, where: str, col: str) -> list[Image]:
    """The image(s) a cell holds: ``{bytes, path}`` structs, raw bytes, base64 text, a
    path (relative to the data file or absolute), or a list (or list repr) of these."""
    if _missing(value):
        return []
    if isinstance(value, bytes | bytearray):
        return [image_from_bytes(bytes(value), ctx.folder, where=where, field=col)]
    if isinstance(value, dict):
        data, rel = value.get("bytes"), value.get("path")
        if data:
            return [image_from_bytes(bytes(data), ctx.folder, where=where, field=col)]
        if rel:
            return [_image_path(str(rel), ctx, where, col)]
        return []
    items = literal_list(value)
    if items is not None:
        out: list[Image] = []
        for item in items:
            out += image_of(item, ctx, where=where, col=col)
        return out
    if not isinstance(value, str):
        raise DataError(f"expected an image (bytes, base64, path or {{bytes, path}}), got "
                        f"{type(value).__name__}", where=where, field=col)
    s = value.strip()
    if len(s) > TSV_REF_MAX or s.startswith("data:"):
        data = _b64(s)
        if data is not None:
            return [image_from_bytes(data, ctx.folder, where=where, field=col)]
    return [_image_path(s, ctx, where, col)]


def _image_path(s: str, ctx: ImageCtx, where: str, col: str) -> Image:
    p = Path(s).expanduser()
    if not p.is_absolute():
        p = ctx.base / p
    if not p.is_file():
        raise DataError(f"image file not found: {p}", where=where, field=col)
    return image_from_file(p, where=where, field=col)


def _video_of(value: Any, base: Path, where: str, col: str) -> list[Video]:
    from mmsim.data.video import video_ref

    if _missing(value):
        return []
    items = literal_list(value) or [value]
    out = []
    for v in items:
        p = Path(str(v)).expanduser()
        if not p.is_absolute():
            p = base / p
        if not p.is_file() or p.stat().st_size == 0:
            raise DataError(f"video file not found or empty: {p}", where=where, field=col)
        out.append(video_ref(p))
    return out


def _inline_options(question: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    letters: list[str] = []
    opts: list[str] = []
    for line in question.splitlines():
        m = _INLINE.match(line)
        if m and m.group(1) == LETTERS[len(letters)]:
            letters.append(m.group(1))
            opts.append(m.group(2))
        elif letters and line.strip():
            break
    return (tuple(letters), tuple(opts)) if len(letters) >= 2 else ((), ())


def render_question(question: str, hint: str | None, letters: tuple[str, ...],
                    options: tuple[str, ...], prompt: str) -> str:
    """The text the model sees. ``vlmeval``: as VLMEvalKit's ImageMCQDataset builds it
    (``Hint: ...``, ``Question: ...``, ``Options:`` with ``A. ...`` lines, then "Please
    select the correct answer from the options above."; a question without options is
    the hint and the question). ``plain``: the hint, the question, the ``A. ...`` lines."""
    lines = "\n".join(f"{lt}. {o}" for lt, o in zip(letters, options, strict=False))
    if prompt == "vlmeval" and options:
        head = f"Hint: {hint}\n" if hint else ""
        return (f"{head}Question: {question}\nOptions:\n{lines}\n"
                "Please select the correct answer from the options above.")
    text = f"{hint}\n{question}" if hint else question
    return f"{text}\n{lines}" if options else text


def _yesno(raw: Any) -> str | None:
    s = _text(raw).lower().rstrip(".")
    return "Yes" if s in _YES else "No" if s in _NO else None


@dataclass
class Mapped:
    """One row mapped: the sample, how its answer was read, how many options it has."""

    sample: Sample
    kind: str
    n_options: int
    label: str | None = None
    labels: tuple[str, ...] = ()
    where: str = ""


def _answer(raw: Any, kind: str, letters: tuple[str, ...], options: tuple[str, ...],
            fm: FieldMap, row: dict[str, Any], where: str, inline: bool
            ) -> tuple[str, AnswerFormat, str]:
    col = fm.answer or "answer"
    if _missing(raw):
        raise DataError("answer is empty", where=where, field=col)
    if isinstance(raw, list | dict):
        raise DataError(f"answer must be a single value, got {type(raw).__name__}",
                        where=where, field=col)
    text = _text(raw)
    if letters:
        fmt = AnswerFormat(kind="choice", letters=letters, options=options)
        is_int = isinstance(raw, int) and not isinstance(raw, bool)
        if kind in ("auto", "choice"):
            letter = normalise_letter(text)
            if letter is not None and letter in letters:
                return letter, fmt, "choice"
        if kind in ("auto", "text") and options and text in options:
            return letters[options.index(text)], fmt, "text"
        if kind == "index" or (kind == "auto" and (is_int or text.isdigit())):
            try:
                i = int(text) - fm.index_base
            except ValueError:
                raise DataError(f"answer {raw!r} is not an index into the options",
                                where=where, field=col) from None
            if 0 <= i < len(letters):
                return letters[i], fmt, "index"
            raise DataError(f"answer index {raw!r} is out of range for {len(letters)} "
                            f"options", where=where, field=col)
        if not (kind == "auto" and inline):
            span = f"{letters[0]}-{letters[-1]}"
            raise DataError(f"answer {raw!r} is not among the options ({span}"
                            + (", nor an option's text" if options else "") + ")",
                            where=where, field=col)
    elif kind in ("choice", "index", "text"):
        raise DataError(f"answer_kind {kind} needs options, and this row has none",
                        where=where, field=fm.choices or "choices")
    if kind == "yesno" or (kind == "auto" and _yesno(raw) in ("Yes", "No")
                           and not text.isdigit()):
        yn = _yesno(raw)
        if yn is None:
            raise DataError(f"answer {raw!r} is not yes/no", where=where, field=col)
        return yn, AnswerFormat(kind="exact"), "yesno"
    if kind in ("auto", "numeric"):
        number = parse_number(text)
        if number is not None:
            abs_tol = fm.abs_tol
            if fm.precision is not None and not _missing(get_path(row, fm.precision)):
                try:
                    digits = int(float(get_path(row, fm.precision)))
                    abs_tol = 0.5 * 10.0 ** -digits
                except (TypeError, ValueError):
                    pass
            fmt = AnswerFormat(kind="numeric",
                               **({"abs_tol": abs_tol} if abs_tol is not None else {}),
                               **({"rel_tol": fm.rel_tol} if fm.rel_tol is not None else {}))
            return format_number(number), fmt, "numeric"
        if kind == "numeric":
            raise DataError(f"answer {raw!r} is not a number", where=where, field=col)
    return text, AnswerFormat(kind="exact"), "exact"


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, str | int | bool):
        return v
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, bytes | bytearray):
        return None
    if isinstance(v, dict):
        if "bytes" in v and "path" in v:
            return None
        return {str(k): _scalar(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_scalar(x) for x in v]
    return str(v)


def map_row(row: dict[str, Any], where: str, rowno: int, fm: FieldMap, reader: Reader,
            ctx: ImageCtx) -> Mapped:
    """One row as a Sample (raises DataError naming the row and column)."""
    class_names = reader.source.class_names
    if fm.id:
        parts = [get_path(row, c) for c in fm.id]
        if any(_missing(p) for p in parts):
            bad = fm.id[[_missing(p) for p in parts].index(True)]
            raise DataError("id is empty", where=where, field=bad)
        sid = "-".join(_text(p) for p in parts)
    else:
        sid = str(rowno)
    # images (VLMEvalKit: a short cell is the index of the row whose image it reuses)
    images: list[Image] = []
    for col in fm.image:
        value = get_path(row, col)
        if ctx.refs and isinstance(value, str) and 0 < len(value.strip()) <= TSV_REF_MAX \
                and not value.strip().startswith("["):
            ref = value.strip()
            if ref in ctx.by_index:
                images += ctx.by_index[ref]
                continue
            if not (ctx.base / ref).is_file() and not Path(ref).is_absolute():
                found = ctx.forward(ref, fm)
                if found is None:
                    raise DataError(f"image {ref!r} is the index of another row, and no row "
                                    "with that index holds an image", where=where, field=col)
                images += found
                continue
            # else: a short cell naming an image file, read below
        images += image_of(value, ctx, where=where, col=col)
    if ctx.refs and fm.id and images:
        ctx.by_index.setdefault(_text(get_path(row, fm.id[0])), tuple(images))
    videos = _video_of(get_path(row, fm.video), ctx.base, where, fm.video) if fm.video else []

    # classification: a label (ClassLabel ints mapped to names) and multilabel lists
    label: str | None = None
    labels: tuple[str, ...] = ()
    if fm.label is not None or fm.labels is not None:
        def name(v: Any, col: str) -> str:
            names = class_names.get(col) or reader.classes
            if isinstance(v, int) and not isinstance(v, bool) and names:
                if not 0 <= v < len(names):
                    raise DataError(f"label {v} is out of range for {len(names)} classes",
                                    where=where, field=col)
                return names[v]
            if _missing(v):
                raise DataError("label is empty", where=where, field=col)
            return _text(v)
        if fm.labels is not None:
            vals = literal_list(get_path(row, fm.labels))
            if vals is None:
                raw = get_path(row, fm.labels)
                vals = [] if _missing(raw) else [x for x in str(raw).split(",") if x.strip()]
            labels = tuple(name(v, fm.labels) for v in vals)
        if fm.label is not None:
            label = name(get_path(row, fm.label), fm.label)
        elif labels:
            label = labels[0]
        else:
            raise DataError("no label (the labels list is empty)", where=where,
                            field=fm.labels or "labels")
        if fm.labels is None:
            labels = (label,)

    # question and options
    q = get_path(row, fm.question) if fm.question else None
    if fm.question and not _missing(q) and not isinstance(q, str | int | float):
        raise DataError(f"question must be text, got {type(q).__name__}", where=where,
                        field=fm.question)
    if fm.question and _missing(q) and label is None:
        raise DataError("question is empty", where=where, field=fm.question)
    question = _text(q) if not _missing(q) else "What does the image show?"
    hint = get_path(row, fm.hint) if fm.hint else None
    hint_text = None if _missing(hint) else _text(hint)
    letters: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    inline = False
    if fm.choices == "A..Z":
        for lt in LETTERS:  # as VLMEvalKit: every present, non-empty letter column
            if lt in row and not _missing(row[lt]):
                letters += (lt,)
                options += (_text(row[lt]),)
    elif fm.choices is not None:
        value = get_path(row, fm.choices)
        items = literal_list(value)
        if items is None and not _missing(value):
            raise DataError(f"expected a list of options (or a list repr), got "
                            f"{str(value)[:60]!r}", where=where, field=fm.choices)
        options = tuple(_text(x) for x in (items or []))
        if len(options) > len(LETTERS):
            raise DataError(f"{len(options)} options: at most 26 are supported",
                            where=where, field=fm.choices)
        letters = tuple(LETTERS[: len(options)])
    if not letters and fm.inline_choices:
        letters, options = _inline_options(question)
        inline = bool(letters)
    if not letters and fm.letters:
        letters = tuple(fm.letters)
    if label is not None:
        answer, fmt, kind = label, AnswerFormat(kind="exact"), "label"
    else:
        answer, fmt, kind = _answer(get_path(row, fm.answer) if fm.answer else None,
                                    fm.answer_kind, letters, options, fm, row, where, inline)
        if fmt.kind != "choice":
            letters, options = (), ()
    text = question if inline else render_question(question, hint_text, letters, options,
                                                   reader.prompt)
    mapped_cols = {*fm.id, fm.question, fm.hint, fm.choices, fm.answer, *fm.image, fm.video,
                   fm.category, fm.label, fm.labels}
    if fm.meta is not None:
        meta = {c: _scalar(get_path(row, c)) for c in fm.meta}
    else:
        skip = set(LETTERS) if fm.choices == "A..Z" else set()
        meta = {c: _scalar(v) for c, v in row.items()
                if c not in mapped_cols and c not in skip and c != "image_path"
                and not isinstance(v, bytes | bytearray)
                and not (isinstance(v, dict) and "bytes" in v)
                and not (isinstance(v, str) and len(v) > 2048)}
    cat = get_path(row, fm.category) if fm.category else None
    meta = {**meta, "answer_kind": kind}
    if label is not None:
        meta.update(label=label, labels=list(labels))
    sample = Sample(id=sid, question=text, images=tuple(images), videos=tuple(videos),
                    answer=answer, answer_format=fmt,
                    category="" if _missing(cat) else _text(cat), meta=meta)
    return Mapped(sample, kind, len(letters), label, labels, where)


@dataclass
class Problem:
    where: str
    field: str | None
    message: str

    def line(self) -> str:
        return f"{self.where}: {self.field + ': ' if self.field else ''}{self.message}"


@dataclass
class Scan:
    """Every row of a data set mapped (``mmsim data inspect``)."""

    reader: Reader
    fmap: FieldMap | None = None
    rows: int = 0
    items: list[Mapped] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    shared_images: int = 0
    distinct_images: int = 0
    images: int = 0


def iter_mapped(reader: Reader, cache_dir: Path, *, strict: bool, scan: Scan | None = None
                ) -> Iterator[Mapped]:
    """Map the rows in order. ``strict``: raise at the first bad row (duplicate ids
    included); else record problems in ``scan`` and go on."""
    src = reader.source
    base = src.files[0].parent if src.files else Path(".")
    ctx = ImageCtx(folder=cache_dir / "tables", base=base, refs=reader.image_refs,
                   source=src)
    seen: dict[str, str] = {}
    fm: FieldMap | None = None
    n = 0
    for where, row in src.rows():
        n += 1
        if scan is not None:
            scan.rows = n
        try:
            if ROW_ERROR in row:
                raise row[ROW_ERROR]
            if fm is None:
                fm = resolve_fields(reader.given, row, reader.where)
                reader.fmap = fm
                if scan is not None:
                    scan.fmap = fm
            m = map_row(row, where, n, fm, reader, ctx)
            if m.sample.id in seen:
                raise DataError(f"duplicate id {m.sample.id!r} (first at {seen[m.sample.id]})",
                                where=where, field=fm.id[0] if fm.id else "id")
            seen[m.sample.id] = where
            for im in m.sample.images:
                ctx.hashes[im.sha256] += 1
        except DataError as exc:
            if strict or scan is None or (fm is None and ROW_ERROR not in row):
                raise
            scan.problems.append(Problem(exc.where or where, exc.field, exc.message))
            continue
        yield m
    if scan is not None:
        scan.shared_images = sum(c - 1 for c in ctx.hashes.values() if c > 1)
        scan.distinct_images = len(ctx.hashes)
        scan.images = sum(ctx.hashes.values())


def load_samples(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                 limit: int | None, fmt: str | None = None) -> list[Sample]:
    """The data set as Samples, stopping at the first bad row."""
    return [m.sample for m in load_mapped(options, base_dir=base_dir, cache_dir=cache_dir,
                                          limit=limit, fmt=fmt)[1]]


def load_mapped(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                limit: int | None, fmt: str | None = None) -> tuple[Reader, list[Mapped]]:
    reader = make_reader(options, base_dir, fmt=fmt)
    out: list[Mapped] = []
    for m in iter_mapped(reader, cache_dir, strict=True):
        if limit is not None and len(out) >= limit:
            break
        out.append(m)
    if not out and (limit is None or limit > 0):
        raise DataError("the dataset is empty (no rows)", where=reader.where)
    return reader, out


def load_labelled(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                  limit: int | None, fmt: str | None = None
                  ) -> tuple[tuple[str, ...], list[Mapped]]:
    """A classification data set: the class list (the label column's ClassLabel names,
    else ``classes``, else the labels seen, sorted) and the labelled rows, each with one
    image."""
    reader = make_reader(options, base_dir, fmt=fmt, classify=True)
    mapped: list[Mapped] = []
    for m in iter_mapped(reader, cache_dir, strict=True):
        if limit is not None and len(mapped) >= limit:
            break
        if len(m.sample.images) != 1:
            fm = reader.fmap
            raise DataError(f"a classification item needs exactly one image, this row has "
                            f"{len(m.sample.images)}", where=m.where,
                            field=(fm.image[0] if fm and fm.image else "image"))
        mapped.append(m)
    if not mapped:
        raise DataError("the dataset is empty (no rows)", where=reader.where)
    fm = reader.fmap
    names = reader.source.class_names
    col = fm.label or fm.labels if fm else None
    classes = tuple(names.get(col or "", []) or reader.classes or
                    sorted({x for m in mapped for x in (m.label or "", *m.labels) if x}))
    known = set(classes)
    for m in mapped:
        for x in (m.label, *m.labels):
            if x is not None and x not in known:
                raise DataError(f"label {x!r} is not in the class list", where=m.where,
                                field=col or "label")
    if len(classes) < 2:
        raise DataError(f"a classification data set needs at least 2 classes, found "
                        f"{len(classes)}", where=reader.where, field="classes")
    return classes, mapped


def scan_dataset(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                 fmt: str | None = None) -> Scan:
    """Map every row, collecting the problems instead of stopping."""
    reader = make_reader(options, base_dir, fmt=fmt)
    scan = Scan(reader)
    for m in iter_mapped(reader, cache_dir, strict=False, scan=scan):
        scan.items.append(m)
    return scan


__all__ = ["ANSWER_KINDS", "FIELD_KEYS", "OPTION_KEYS", "FieldMap", "Mapped", "Problem",
           "Reader", "Scan", "image_of", "iter_mapped", "load_labelled", "load_mapped",
           "load_samples", "make_reader", "map_row", "render_question", "resolve_fields",
           "scan_dataset"]
