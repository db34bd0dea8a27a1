"""Row sources for the field-map readers: VLMEvalKit TSV, CSV, JSONL, JSON, parquet files
and Hugging Face layouts (hub folders of parquet shards, ``save_to_disk`` arrow folders,
``hf://owner/name[:config][@split]`` through the optional ``datasets`` library).

Every source streams: it yields ``(where, row)`` one row at a time (``where`` is
``file:line`` for text files, ``file:row N`` for parquet/arrow, 1-based), reading parquet
and arrow in record batches, so a file of hundreds of MB is never held whole. pyarrow and
``datasets`` are imported lazily, with an "install mmsim[...]" error when missing.

A source also reports the Hugging Face ``ClassLabel`` names of its columns (from the
``huggingface`` schema metadata of parquet/arrow files, ``dataset_info.json`` of an arrow
folder, or ``datasets``' features), so integer labels can be mapped to their names.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsim.errors import DataError

FORMATS: tuple[str, ...] = ("tsv", "csv", "jsonl", "json", "parquet", "arrow", "hf")
"""The file formats a field-map reader reads (``dataset.format``; by default from the
path: its suffix, or the layout of a folder)."""

DEFAULT_MAX_FILE_MB = 64 * 1024
"""Data files larger than this (MB) are refused unless ``max_file_mb`` raises it."""

_SUFFIXES = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}
BATCH_ROWS = 256
ROW_ERROR = "\x00row-error"
"""The key of a row a source could not read (its value: the DataError): the readers
raise it, ``mmsim data inspect`` lists it and goes on."""


def check_data_file(path: Path, *, max_mb: float = DEFAULT_MAX_FILE_MB,
                    field: str = "path") -> None:
    """Refuse what is not a regular file (a device, a pipe, a socket) or is larger than
    ``max_mb``: one line naming the file."""
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"file not readable ({exc.strerror or exc})", where=str(path),
                        field=field) from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError("not a regular file (a device, pipe or socket cannot be read as "
                        "data)", where=str(path), field=field)
    if st.st_size > max_mb * 1024 * 1024:
        raise DataError(f"file is {st.st_size / 2**20:.0f} MB, over the {max_mb:g} MB limit "
                        "(raise dataset.max_file_mb to read it)", where=str(path),
                        field=field)


@dataclass
class Source:
    """Rows of one data set: ``files`` read in order; ``class_names``: the ClassLabel names
    of columns that have them; ``fmt``: the format read."""

    fmt: str
    files: list[Path]
    class_names: dict[str, list[str]] = field(default_factory=dict)
    hf_name: str | None = None  # hf://: the dataset as datasets loads it
    hf_config: str | None = None
    hf_split: str | None = None
    max_mb: float = DEFAULT_MAX_FILE_MB

    @property
    def label(self) -> str:
        if self.hf_name is not None:
            return f"hf://{self.hf_name}"
        return str(self.files[0]) if len(self.files) == 1 else str(self.files[0].parent)

    def rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(where, row)`` of every row, streamed."""
        if self.hf_name is not None:
            yield from self._hf_rows()
            return
        for f in self.files:
            check_data_file(f, max_mb=self.max_mb)
            if self.fmt in ("tsv", "csv"):
                yield from _delimited_rows(f, "\t" if self.fmt == "tsv" else ",")
            elif self.fmt == "jsonl":
                yield from _jsonl_rows(f)
            elif self.fmt == "json":
                yield from _json_rows(f)
            elif self.fmt == "parquet":
                yield from _parquet_rows(f)
            else:
                yield from _arrow_rows(f)

    def _hf_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        ds = _load_hf(self.hf_name or "", self.hf_config, self.hf_split)
        where = self.label
        table = ds.data.table if hasattr(ds.data, "table") else ds.data
        n = 0
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            for row in batch.to_pylist():
                n += 1
                yield f"{where}:row {n}", row


# --------------------------------------------------------------------------- text formats


def _text_error(path: Path, exc: Exception) -> DataError:
    return DataError(f"not readable as UTF-8 text ({exc})", where=str(path))


def _delimited_rows(path: Path, delimiter: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a TSV/CSV file with a header (as pandas writes them: minimal quoting; an
    empty cell is a missing value, None). A line without quotes is split directly (base64
    image cells are long and never quoted); a quoted record, which may span lines, goes
    through the csv module."""
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header: list[str] | None = None
            buf: list[str] = []
            start = 0
            for n, line in enumerate(fh, 1):
                if not buf and '"' not in line:
                    cells = line.rstrip("\r\n").split(delimiter)
                    start = n
                else:
                    if not buf:
                        start = n
                    buf.append(line)
                    text = "".join(buf)
                    if text.count('"') % 2:
                        continue  # a quoted cell goes on on the next line
                    buf = []
                    cells = next(csv.reader([text], delimiter=delimiter), [])
                if header is None:
                    header = [h.strip() for h in cells]
                    if len(set(header)) != len(header):
                        dup = next(h for h in header if header.count(h) > 1)
                        raise DataError(f"duplicate column {dup!r} in the header",
                                        where=f"{path}:{start}")
                    continue
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                if len(cells) != len(header):
                    yield f"{path}:{start}", {ROW_ERROR: DataError(
                        f"{len(cells)} cells, the header has {len(header)} columns",
                        where=f"{path}:{start}")}
                    continue
                yield f"{path}:{start}", {h: (c if c != "" else None)
                                          for h, c in zip(header, cells, strict=True)}
            if buf:
                raise DataError("a quoted cell is never closed", where=f"{path}:{start}")
    except UnicodeDecodeError as exc:
        raise _text_error(path, exc) from None
    except csv.Error as exc:
        raise DataError(f"not a valid {'TSV' if delimiter == chr(9) else 'CSV'} file "
                        f"({exc})", where=str(path)) from None
    except OSError as exc:
        raise DataError(f"not readable ({exc.strerror or exc})", where=str(path)) from None


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    row = {ROW_ERROR: DataError(f"not valid JSON ({exc.msg}, column "
                                                f"{exc.colno})", where=f"{path}:{n}")}
                except RecursionError:
                    row = {ROW_ERROR: DataError("JSON nested too deeply", where=f"{path}:{n}")}
                if not isinstance(row, dict):
                    row = {ROW_ERROR: DataError("expected a JSON object per line",
                                                where=f"{path}:{n}")}
                yield f"{path}:{n}", row
    except UnicodeDecodeError as exc:
        raise _text_error(path, exc) from None


def _json_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A JSON list of row objects (or ``{"data": [...]}`` / ``{split: [...]}`` with one
    list)."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _text_error(path, exc) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg}, column {exc.colno})",
                        where=f"{path}:{exc.lineno}") from None
    except RecursionError:
        raise DataError("JSON nested too deeply", where=str(path)) from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list):
        raise DataError("expected a JSON list of row objects", where=str(path))
    for i, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise DataError("expected an object", where=f"{path}:row {i}")
        yield f"{path}:row {i}", row


# --------------------------------------------------------------------------- arrow formats


def _pyarrow() -> Any:
    try:
        import pyarrow  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise DataError("reading parquet/arrow needs pyarrow: pip install 'mmsim[parquet]'"
                        ) from None
    return pyarrow


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    _pyarrow()
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    try:  # buffered column reads, no pre-buffering: memory stays near one batch's
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    except Exception as exc:  # ArrowInvalid, OSError...
        raise DataError(f"not a readable parquet file ({type(exc).__name__}: {exc})",
                        where=str(path)) from None
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            for row in batch.to_pylist():
                n += 1
                yield f"{path}:row {n}", row
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"parquet file unreadable after row {n} ({type(exc).__name__}: "
                        f"{exc})", where=str(path)) from None


def _open_arrow(path: Path) -> Any:
    pa = _pyarrow()
    import pyarrow.ipc  # type: ignore[import-untyped, unused-ignore]  # noqa: F401

    source = pa.memory_map(str(path), "r")
    try:
        return pa.ipc.open_stream(source)
    except Exception:
        try:
            return pa.ipc.open_file(source)
        except Exception as exc:
            raise DataError(f"not a readable arrow file ({type(exc).__name__}: {exc})",
                            where=str(path)) from None


def _arrow_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = _open_arrow(path)
    n = 0
    batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) \
        if hasattr(reader, "num_record_batches") else iter(reader)
    for big in batches:
        for off in range(0, big.num_rows, BATCH_ROWS):
            for row in big.slice(off, BATCH_ROWS).to_pylist():
                n += 1
                yield f"{path}:row {n}", row


def _class_names_of(features: Any) -> dict[str, list[str]]:
    """ClassLabel names from a ``datasets`` features dict (``{"label": {"_type":
    "ClassLabel", "names": [...]}}``; a ``Sequence``/``List`` of ClassLabel too)."""
    out: dict[str, list[str]] = {}
    if not isinstance(features, dict):
        return out
    for col, feat in features.items():
        inner = feat
        for _ in range(3):
            if isinstance(inner, list) and len(inner) == 1:
                inner = inner[0]
            elif isinstance(inner, dict) and inner.get("_type") in ("Sequence", "List",
                                                                       "LargeList"):
                inner = inner.get("feature")
            else:
                break
        if isinstance(inner, dict) and inner.get("_type") == "ClassLabel" and \
                isinstance(inner.get("names"), list):
            out[str(col)] = [str(x) for x in inner["names"]]
    return out


def _schema_class_names(schema: Any) -> dict[str, list[str]]:
    meta = schema.metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return _class_names_of((info.get("info") or {}).get("features"))


def _read_schema(path: Path, fmt: str) -> Any:
    _pyarrow()
    if fmt == "parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

        try:
            return pq.read_schema(path)
        except Exception as exc:
            raise DataError(f"not a readable parquet file ({type(exc).__name__}: {exc})",
                            where=str(path)) from None
    return _open_arrow(path).schema


# --------------------------------------------------------------------------- layouts


def _split_files(folder: Path, split: str | None, where: str, prefer: str | None = None
                 ) -> tuple[list[Path], str]:
    """Parquet shards of ``split`` in ``folder`` (``test-00000-of-00001.parquet`` or
    ``test/*.parquet``); with no split asked, the only split there (or ``test``)."""
    shards = sorted(folder.glob("*.parquet"))
    splits: dict[str, list[Path]] = {}
    for s in shards:
        splits.setdefault(s.name.split("-", 1)[0] if "-" in s.name else s.stem, []).append(s)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(sub.glob("*.parquet"))
        if files and sub.name not in splits:
            splits[sub.name] = files
    if not splits:
        raise DataError("no parquet files in this folder", where=str(folder), field="path")
    if split is None:
        if prefer in splits:
            split = prefer
        elif len(splits) == 1:
            split = next(iter(splits))
        elif "test" in splits:
            split = "test"
        else:
            raise DataError(f"several splits ({', '.join(sorted(splits))}): name one with "
                            "dataset.split", where=where, field="split")
    if split not in splits:
        raise DataError(f"no split {split!r} (found: {', '.join(sorted(splits))})",
                        where=str(folder), field="split")
    return splits[split], split


def _hub_folder(root: Path, config: str | list[str] | None, split: str | None,
                prefer_config: str | None = None, prefer_split: str | None = None
                ) -> list[Path]:
    """Parquet files of a hub-layout folder: ``data/<split>-*.parquet`` (the default
    config), ``<config>/<split>-*.parquet`` (one folder per config; ``config: "*"`` or a
    list reads several), or shards at the root."""
    configs = sorted(p.name for p in root.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and
                     (any(p.glob("*.parquet")) or any(p.glob("*/*.parquet"))))
    if any(root.glob("*.parquet")) and config is None:
        return _split_files(root, split, str(root), prefer_split)[0]
    if config is None:
        if prefer_config == "*" and configs and "data" not in configs:
            config = "*"
        elif "data" in configs:
            config = "data"
        elif len(configs) == 1:
            config = configs[0]
        elif not configs:
            raise DataError("no parquet files under this folder", where=str(root),
                            field="path")
        else:
            raise DataError(f"several configs ({', '.join(configs)}): name one with "
                            "dataset.config (or \"*\" for all)", where=str(root),
                            field="config")
    names = configs if config == "*" else [config] if isinstance(config, str) else config
    files: list[Path] = []
    for name in names:
        if name not in configs:
            raise DataError(f"no config folder {name!r} (found: "
                            f"{', '.join(configs) or 'none'})", where=str(root),
                            field="config")
        files += _split_files(root / name, split, str(root), prefer_split)[0]
    return files


def _arrow_folder(root: Path, split: str | None) -> tuple[list[Path], dict[str, list[str]]]:
    """A ``save_to_disk`` folder: ``state.json`` (+ ``dataset_info.json``) listing its
    ``data-0000k-of-0000n.arrow`` files, or a DatasetDict (``dataset_dict.json`` and one
    such folder per split)."""
    dd = root / "dataset_dict.json"
    if dd.is_file():
        try:
            splits = [str(s) for s in json.loads(dd.read_text()).get("splits", [])]
        except (ValueError, OSError, AttributeError) as exc:
            raise DataError(f"unreadable dataset_dict.json ({exc})", where=str(dd)) from None
        if split is None:
            split = splits[0] if len(splits) == 1 else "test" if "test" in splits else None
        if split is None or split not in splits:
            raise DataError(f"name a split with dataset.split (found: {', '.join(splits)})",
                            where=str(root), field="split")
        root = root / split
    state = root / "state.json"
    try:
        files = [root / str(d["filename"]) for d in
                 json.loads(state.read_text()).get("_data_files", [])]
    except (ValueError, OSError, AttributeError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable state.json ({exc})", where=str(state)) from None
    if not files:
        files = sorted(root.glob("*.arrow"))
    names: dict[str, list[str]] = {}
    info = root / "dataset_info.json"
    if info.is_file():
        try:
            names = _class_names_of(json.loads(info.read_text()).get("features"))
        except (ValueError, OSError, AttributeError):
            names = {}
    return files, names


def parse_hf(uri: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/name[:config][@split]`` -> (name, config, split)."""
    rest = uri[len("hf://"):]
    split = None
    if "@" in rest:
        rest, split = rest.rsplit("@", 1)
    config = None
    if ":" in rest:
        rest, config = rest.split(":", 1)
    return rest, config or None, split or None


def _load_hf(name: str, config: str | None, split: str | None) -> Any:
    try:
        import datasets  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise DataError("hf:// datasets need the datasets library: pip install "
                        "'mmsim[datasets]' (or point dataset.path at a local parquet/arrow "
                        "copy)", where=f"hf://{name}", field="path") from None
    try:
        ds = datasets.load_dataset(name, config, split=split or "test")
    except Exception as exc:  # network, missing split, bad layout...
        raise DataError(f"datasets.load_dataset failed: {type(exc).__name__}: {exc}",
                        where=f"hf://{name}", field="path") from None
    return ds


def open_source(path_value: Any, base_dir: Path, *, fmt: str | None = None,
                config: str | list[str] | None = None, split: str | None = None,
                max_mb: float = DEFAULT_MAX_FILE_MB, prefer_config: str | None = None,
                prefer_split: str | None = None) -> Source:
    """The rows ``path_value`` names (a file, a folder in a Hugging Face layout, or an
    ``hf://`` URI), read as ``fmt`` (default: inferred). ``prefer_*``: a preset's config
    and split, used when none is named and the folder has them."""
    if not isinstance(path_value, str | os.PathLike) or not str(path_value):
        raise DataError("a path to the data file (or folder, or hf://owner/name) is required",
                        field="path")
    text = str(path_value)
    if fmt == "hf" or text.startswith("hf://"):
        name, cfg, spl = parse_hf(text) if text.startswith("hf://") else (text, None, None)
        local = Path(name).expanduser()
        if not local.is_absolute() and (base_dir / local).exists():
            name = str(base_dir / local)
        src = Source("hf", [], hf_name=name,
                     hf_config=cfg or (config if isinstance(config, str) else None),
                     hf_split=spl or split, max_mb=max_mb)
        try:
            import datasets  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            raise DataError("hf:// datasets need the datasets library: pip install "
                            "'mmsim[datasets]' (or point dataset.path at a local parquet/"
                            "arrow copy)", where=text, field="path") from None
        ds = _load_hf(name, src.hf_config, src.hf_split)
        names: dict[str, list[str]] = {}
        for col, feat in ds.features.items():
            inner = getattr(feat, "feature", feat)
            if isinstance(inner, datasets.ClassLabel):
                names[col] = list(inner.names)
        src.class_names = names
        return src
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = base_dir / p
    if not p.exists():
        raise DataError("file not found", where=str(p), field="path")
    if p.is_dir():
        if fmt not in (None, "parquet", "arrow"):
            raise DataError(f"a folder is read as parquet shards or an arrow folder, not "
                            f"{fmt}", where=str(p), field="format")
        if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file() or \
                fmt == "arrow":
            files, names = _arrow_folder(p, split)
            src = Source("arrow", files, max_mb=max_mb)
            src.class_names = names or (_schema_class_names(_read_schema(files[0], "arrow"))
                                        if files else {})
        else:
            src = Source("parquet", _hub_folder(p, config, split, prefer_config,
                                                prefer_split), max_mb=max_mb)
    else:
        check_data_file(p, max_mb=max_mb)
        by_suffix = _SUFFIXES.get(p.suffix.lower())
        binary = {"parquet", "arrow"}
        if fmt and by_suffix and fmt != by_suffix and (fmt in binary) != (by_suffix in binary):
            raise DataError(f"a {p.suffix} file read as {fmt}: use dataset.name "
                            f"{by_suffix} (or table, which goes by the suffix)", where=str(p),
                            field="format")
        kind = fmt or by_suffix
        if kind is None:
            raise DataError(f"cannot tell the format from the suffix {p.suffix!r}: set "
                            f"dataset.format ({', '.join(FORMATS[:6])})", where=str(p),
                            field="format")
        src = Source(kind, [p], max_mb=max_mb)
    if src.fmt in ("parquet", "arrow") and src.files and not src.class_names:
        src.class_names = _schema_class_names(_read_schema(src.files[0], src.fmt))
    if not src.files:
        raise DataError("no data files found", where=str(p), field="path")
    return src


__all__ = ["DEFAULT_MAX_FILE_MB", "FORMATS", "ROW_ERROR", "Source", "check_data_file",
           "open_source", "parse_hf"]
