"""MathVerse (HF ``AI4Math/MathVerse``) from a local copy of ``testmini``.

Reads ``testmini.parquet`` / ``testmini_text_only.parquet`` (``image`` is a parquet
image struct ``{bytes, path}``; the bytes are written once to
``cache_dir/mathverse/<sha256>.<ext>`` and referenced there) or the JSON twins
``testmini.json`` / ``testmini_text_only.json`` (a list of rows whose ``image`` is a
path relative to the JSON's folder, or ``""`` for text-only).

Multiple choice: the options are parsed from the ``Choices:`` block of ``question``
(``A:40°`` lines; a space after the colon is tolerated); the answer is a letter. When
the options are only in the image (Vision Dominant / Vision Only rows have no
``Choices:`` block) the letters are A..D (or up to the answer's letter) with no option
texts. Free-form: ``numeric`` when the answer parses as a number (``$h=58$`` -> 58,
``60°`` -> 60, ``\\frac{1}{2}`` -> 0.5), else ``exact`` on the answer without ``$``.

Also holds the file/image helpers the other published-format loaders share
(:func:`resolve_data_path`, :func:`read_parquet`, :func:`image_from_bytes`,
:func:`image_from_file`, :func:`image_from_struct`, :func:`row_where`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from mmsim.data import dataset, safeio
from mmsim.data.files import write_once
from mmsim.data.sample import Sample
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Image
from mmsim.registry import did_you_mean

VERSIONS: tuple[str, ...] = ("Text Dominant", "Text Lite", "Vision Intensive",
                             "Vision Dominant", "Vision Only", "Text Only")
"""The ``problem_version`` values of MathVerse."""

QUESTION_FIELDS: tuple[str, ...] = ("question", "query_wo", "query_cot", "question_for_eval")
REQUIRED_COLUMNS: tuple[str, ...] = ("sample_index", "problem_version", "question", "answer",
                                     "question_type")
VISION_ONLY_FALLBACK = "Answer the question shown in the image."
_OPTION_KEYS = ("path", "versions", "question_field")

# --------------------------------------------------------------------------- shared helpers

_FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}


def row_where(file: Path | str, index: int, row_id: object | None = None) -> str:
    """``"<file>, row 3 (id '12')"``: the ``where`` of a DataError about one row."""
    head = f"{file}, row {index}"
    return f"{head} (id {str(row_id)!r})" if row_id not in (None, "") else head


def check_options(options: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """Fail on an option the loader does not know (a typo), suggesting the close one."""
    for key in options:
        if key not in known:
            raise DataError(f"unknown option {key!r}{did_you_mean(key, list(known))}; known: "
                            + ", ".join(known), where=where, field=key)


def resolve_data_path(value: Any, base_dir: Path, *, where: str, field: str = "path") -> Path:
    """The ``path`` option as a path that exists (relative ones resolve from ``base_dir``)."""
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise DataError("a path to the local copy of the data is required", where=where,
                        field=field)
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = base_dir / p
    if not p.exists():
        raise DataError("file not found", where=str(p), field=field)
    return p


def read_parquet(path: Path) -> Any:
    """A ``pyarrow.Table`` for ``path`` (pyarrow is imported here, lazily)."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise DataError("reading parquet needs pyarrow: pip install 'mmsim[parquet]'",
                        where=str(path)) from None
    try:
        safeio.check_regular(path, safeio.MAX_DATA_BYTES, what="data file")
    except OSError:
        pass  # pyarrow words a missing file
    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError/... for bad files
        raise DataError(f"not a readable parquet file ({type(exc).__name__}: {exc})",
                        where=str(path)) from exc


def _probe(data: bytes, *, where: str, field: str) -> tuple[str, int, int]:
    """(PIL format, width, height) of image bytes, verified by PIL, else a DataError."""
    try:  # a decompression-bomb sized image (> PIL's MAX_IMAGE_PIXELS) is refused
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format or "", im.size
                im.verify()
    except Exception as exc:
        raise DataError(f"unreadable image bytes ({type(exc).__name__}: {exc})",
                        where=where, field=field) from exc
    return fmt, width, height


def image_from_bytes(data: bytes, folder: Path, *, where: str, field: str) -> Image:
    """Verify image bytes with PIL, write them once to ``folder/<sha256>.<ext>`` and
    reference that file."""
    fmt, width, height = _probe(data, where=where, field=field)
    ext, mime = _FORMATS.get(fmt, (fmt.lower() or "img", PILImage.MIME.get(fmt, "image/png")))
    digest = hashlib.sha256(data).hexdigest()
    path = write_once(folder, f"{digest[:32]}.{ext}", data)
    return Image(uri=str(path), sha256=digest, mime=mime, width=width, height=height)


def image_from_file(path: Path, *, where: str, field: str) -> Image:
    """Reference an image file in place, after checking it exists and PIL can read it."""
    try:  # a device, a pipe or a file over the limit is refused (mmsim.data.safeio)
        data = safeio.read_bytes(path, safeio.MAX_IMAGE_BYTES, what=f"image file {path}",
                                 where=where)
    except DataError as exc:
        raise DataError(exc.message, where=where, field=field) from None
    except OSError as exc:
        raise DataError(f"image file not readable: {path} ({exc.strerror or exc})",
                        where=where, field=field) from exc
    fmt, width, height = _probe(data, where=where, field=field)
    mime = _FORMATS.get(fmt, ("", PILImage.MIME.get(fmt, "image/png")))[1]
    return Image(uri=str(path), sha256=hashlib.sha256(data).hexdigest(), mime=mime,
                 width=width, height=height)


def image_from_struct(value: Any, folder: Path, base: Path, *, where: str,
                      field: str) -> Image | None:
    """A parquet image struct ``{bytes, path}`` (HF ``datasets`` Image feature) as an
    :class:`Image`: embedded bytes go to ``folder``; a bare ``path`` is resolved from
    ``base``. ``None`` (or neither bytes nor path) means no image."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return image_from_bytes(bytes(value), folder, where=where, field=field)
    if not isinstance(value, dict):
        raise DataError(f"expected an image struct {{bytes, path}}, got "
                        f"{type(value).__name__}", where=where, field=field)
    data, rel = value.get("bytes"), value.get("path")
    if data:
        return image_from_bytes(bytes(data), folder, where=where, field=field)
    if rel:
        p = Path(str(rel))
        return image_from_file(p if p.is_absolute() else base / p, where=where, field=field)
    return None


# --------------------------------------------------------------------------- parsing

_CHOICES_HEADER = re.compile(r"(?im)^\s*choices?\s*:\s*")
_CHOICE_LINE = re.compile(r"^\s*\(?([A-Z])\)?\s*[:：.．]\s*(.*?)\s*$")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_UNIT = re.compile(
    r"\s*(?:\^\s*\{?\\circ\}?|\\circ|°|\\degree|degrees?|\\?%|"
    r"(?:\\(?:text|mathrm)\{\s*)?(?:square\s+|sq\.?\s*)?"
    r"(?:[cmdk]?m|in(?:ch(?:es)?)?|ft|feet|yd|units?|[km]?g|m?l|s|sec(?:onds?)?|min(?:utes?)?"
    r"|h(?:ours?)?)\}?(?:\^\{?[23]\}?|²|³)?\}?)\s*$")
_FRACTION = re.compile(r"([-+]?)\\[dt]?frac\{\s*(\d+(?:\.\d+)?)\s*\}\{\s*(\d+(?:\.\d+)?)\s*\}")
_SLASH = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")


def parse_choices(question: str) -> list[tuple[str, str]]:
    """The ``(letter, text)`` options of the last ``Choices:`` block, letters in order
    A, B, C... (``A:40°``; ``A: 40°``, ``A.40°`` and ``(A) 40°`` are tolerated)."""
    headers = list(_CHOICES_HEADER.finditer(question))
    if not headers:
        return []
    out: list[tuple[str, str]] = []
    for line in question[headers[-1].end():].splitlines():
        if not line.strip():
            continue
        m = _CHOICE_LINE.match(line)
        if not m or m.group(1) != chr(ord("A") + len(out)):
            break
        out.append((m.group(1), m.group(2)))
    return out


def _strip_math(text: str) -> str:
    s = text.strip()
    while len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1].strip()
    return s


def parse_number(text: str) -> float | None:
    """A free-form answer as a number, or None: strips ``$...$``, a leading ``h=``,
    degrees, a short unit, thousands commas; reads ``\\frac{a}{b}`` and ``a/b``."""
    s = _strip_math(text).replace("\\,", "").replace("\\!", "").replace("\\ ", " ")
    s = s.replace("−", "-").strip()
    if "=" in s:
        s = s.rsplit("=", 1)[1].strip()
    s = s.strip("$ ").rstrip(".")
    for _ in range(2):
        stripped = _UNIT.sub("", s)
        if stripped and stripped != s and _looks_numeric(stripped):
            s = stripped
    m = _FRACTION.fullmatch(s)
    if m:
        den = float(m.group(3))
        return None if den == 0 else float(m.group(1) + "1") * float(m.group(2)) / den
    m = _SLASH.fullmatch(s)
    if m:
        den = float(m.group(2))
        return None if den == 0 else float(m.group(1)) / den
    if _PLAIN_NUMBER.fullmatch(s):
        return float(s.replace(",", ""))
    return None


def _looks_numeric(s: str) -> bool:
    return bool(_PLAIN_NUMBER.fullmatch(s) or _FRACTION.fullmatch(s) or _SLASH.fullmatch(s))


def format_number(value: float) -> str:
    """``58.0`` -> ``"58"``, ``0.5`` -> ``"0.5"`` (shortest repr that round-trips)."""
    return str(int(value)) if value.is_integer() else repr(value)


def normalise_letter(text: object) -> str | None:
    """``"B"``, ``" b "``, ``"(B)"``, ``"B."`` -> ``"B"``; anything else -> None."""
    if not isinstance(text, str):
        return None
    s = text.strip().strip("().").strip()
    return s.upper() if len(s) == 1 and s.isalpha() and s.isascii() else None


# --------------------------------------------------------------------------- loader


def _versions(value: Any, where: str) -> set[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise DataError("versions must be a version name or a non-empty list of them; known: "
                        + ", ".join(VERSIONS), where=where, field="versions")
    for v in items:
        if v not in VERSIONS:
            raise DataError(f"unknown problem_version {v!r}{did_you_mean(str(v), list(VERSIONS))}"
                            "; known: " + ", ".join(VERSIONS), where=where, field="versions")
    return set(items)


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], Any]:
    """The rows, without their images for parquet, and the parquet ``image`` column (a
    pyarrow ChunkedArray, read per kept row) or None (JSON: ``image`` stays in the row)."""
    if path.suffix.lower() == ".json":
        try:
            raw = safeio.read_bytes(path, safeio.MAX_DATA_BYTES, what="data file")
            rows = json.loads(raw.decode("utf-8"))
        except OSError as exc:
            raise DataError(f"not a readable JSON file ({exc})", where=str(path)) from exc
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise DataError(f"not UTF-8 text (byte {exc.start})", where=f"{path}:{line}") \
                from None
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg}, column {exc.colno})",
                            where=f"{path}:{exc.lineno}") from None
        except RecursionError:
            raise DataError("JSON nested too deeply", where=str(path)) from None
        if not isinstance(rows, list):
            raise DataError("expected a JSON list of rows", where=str(path))
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError("expected an object", where=row_where(path, i))
        return rows, None
    table = read_parquet(path)
    if "image" not in table.column_names:
        return list(table.to_pylist()), None
    return list(table.drop(["image"]).to_pylist()), table.column("image")


def _locate(path: Path) -> Path:
    if not path.is_dir():
        return path
    for name in ("testmini.parquet", "testmini.json"):
        if (path / name).is_file():
            return path / name
    raise DataError("folder holds neither testmini.parquet nor testmini.json: name the file",
                    where=str(path), field="path")


@dataset("mathverse")
def load_mathverse(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                   limit: int | None) -> list[Sample]:
    """MathVerse testmini from a local parquet or JSON copy (HF AI4Math/MathVerse).

    Options:
        path: ``testmini.parquet``, ``testmini_text_only.parquet`` or a JSON twin (or the
            folder holding ``testmini.parquet``/``testmini.json``).
        versions: a ``problem_version`` or list of them to keep (default all).
        question_field: the column shown to the model: ``question`` (default),
            ``query_wo``, ``query_cot`` or ``question_for_eval``. Options are always
            parsed from ``question``. Rows where that field is empty (Vision Only) fall
            back to ``query_wo``, then to a fixed "Answer the question shown in the
            image." instruction.
    """
    where = "dataset 'mathverse'"
    check_options(options, _OPTION_KEYS, where)
    path = _locate(resolve_data_path(options.get("path"), base_dir, where=where))
    versions = _versions(options.get("versions"), where)
    qfield = options.get("question_field", "question")
    if qfield not in QUESTION_FIELDS:
        raise DataError(f"question_field must be one of {', '.join(QUESTION_FIELDS)}, got "
                        f"{qfield!r}", where=where, field="question_field")
    rows, images = _read_rows(path)
    if not rows:
        raise DataError("the dataset is empty (no rows)", where=str(path))
    for col in (*REQUIRED_COLUMNS, qfield):
        if col not in rows[0]:
            raise DataError(f"missing column {col!r}: not a MathVerse testmini file (read "
                            "other tables with name: parquet, tsv, jsonl... and a preset or "
                            "fields; docs/datasets.md)",
                            where=str(path), field=col)
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        sid = str(row.get("sample_index") or "")
        if not sid:
            raise DataError("sample_index is empty", where=row_where(path, i),
                            field="sample_index")
        if sid in seen:
            raise DataError(f"duplicate sample_index {sid!r} (first at row {seen[sid]})",
                            where=row_where(path, i, sid), field="sample_index")
        seen[sid] = i

    folder = cache_dir / "mathverse"
    samples: list[Sample] = []
    for i, row in enumerate(rows):
        if limit is not None and len(samples) >= limit:
            break
        version = str(row.get("problem_version") or "")
        if versions is not None and version not in versions:
            continue
        img_value = images[i].as_py() if images is not None else row.get("image")
        samples.append(_sample(row, i, path, img_value, qfield, folder))
    if not samples and (limit is None or limit > 0):
        raise DataError(f"no rows left after filtering on versions {sorted(versions or [])}",
                        where=str(path), field="versions")
    return samples


def _sample(row: dict[str, Any], i: int, path: Path, img_value: Any, qfield: str,
            folder: Path) -> Sample:
    sid = str(row["sample_index"])
    where = row_where(path, i, sid)
    source_q = row.get("question")
    if not isinstance(source_q, str):
        raise DataError("question must be a string", where=where, field="question")
    field_used = qfield
    text = row.get(qfield)
    if not isinstance(text, str) or not text.strip():
        field_used, text = "query_wo", row.get("query_wo")
        if not isinstance(text, str) or not text.strip():
            field_used, text = "fallback", VISION_ONLY_FALLBACK

    image: Image | None
    if isinstance(img_value, str):
        image = (image_from_file(path.parent / img_value, where=where, field="image")
                 if img_value.strip() else None)
    else:
        image = image_from_struct(img_value, folder, path.parent, where=where, field="image")

    raw = row.get("answer")
    if not isinstance(raw, str | int | float) or isinstance(raw, bool) or not str(raw).strip():
        raise DataError("answer is empty", where=where, field="answer")
    raw = str(raw).strip()
    qtype = str(row.get("question_type") or "")
    if qtype == "multi-choice":
        choices = parse_choices(source_q)
        letter = normalise_letter(raw)
        if letter is None:
            # Tolerate an answer written as the option's text.
            letter = next((lt for lt, opt in choices if opt.strip() == raw), None)
        if letter is None:
            raise DataError(f"multi-choice answer {raw!r} is not an option letter",
                            where=where, field="answer")
        if choices:
            letters = tuple(lt for lt, _ in choices)
            opts = tuple(opt for _, opt in choices)
            if letter not in letters:
                raise DataError(f"answer {letter!r} is not among the options' letters "
                                f"{', '.join(letters)}", where=where, field="answer")
        else:  # options only in the image
            last = max(ord("D"), ord(letter))
            letters, opts = tuple(chr(c) for c in range(ord("A"), last + 1)), ()
        fmt = AnswerFormat(kind="choice", letters=letters, options=opts)
        answer = letter
    elif qtype == "free-form":
        number = parse_number(raw)
        if number is not None:
            fmt, answer = AnswerFormat(kind="numeric"), format_number(number)
        else:
            fmt, answer = AnswerFormat(kind="exact"), _strip_math(raw)
    else:
        raise DataError(f"question_type must be 'multi-choice' or 'free-form', got {qtype!r}",
                        where=where, field="question_type")
    metadata = row.get("metadata")
    return Sample(
        id=sid,
        question=text,
        images=(image,) if image else (),
        answer=answer,
        answer_format=fmt,
        category=str(row.get("problem_version") or ""),
        meta={
            "problem_index": str(row.get("problem_index") or ""),
            "problem_version": str(row.get("problem_version") or ""),
            "question_type": qtype,
            "metadata": metadata if isinstance(metadata, dict) else {},
            "raw_answer": raw,
            "question_field": field_used,
        },
    )


__all__ = [
    "VERSIONS",
    "format_number",
    "image_from_bytes",
    "image_from_file",
    "image_from_struct",
    "load_mathverse",
    "normalise_letter",
    "parse_choices",
    "parse_number",
    "read_parquet",
    "resolve_data_path",
    "row_where",
]
