"""``mmsim data inspect``: what a data file holds and how mmsim will read it, before any
run: the mapping, row count, answer kinds, options per item, shared images, three rows
as the model sees them, and every problem with ``file:row: column``."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from mmsim.data.fields import FIELD_KEYS, OPTION_KEYS, Scan, scan_dataset
from mmsim.errors import DataError

SHOWN_ROWS = 3


def inspect_options(path: str, *, preset: str | None = None,
                    sets: list[str] | None = None) -> dict[str, Any]:
    """The ``dataset`` options for ``path`` with ``--preset`` and ``--set key=value``
    (a field of the map, or a reader option such as ``split``; values are YAML)."""
    options: dict[str, Any] = {"path": path}
    fields: dict[str, Any] = {}
    if preset:
        options["preset"] = preset
    for item in sets or []:
        key, sep, raw = item.partition("=")
        key = key.strip().removeprefix("fields.")
        if not sep or not key:
            raise DataError(f"--set needs field=value, got {item!r}", where="--set")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if key in FIELD_KEYS:
            fields[key] = value
        elif key in OPTION_KEYS and key not in ("path", "fields"):
            options[key] = value
        else:
            raise DataError(f"--set {key}: not a field ({', '.join(FIELD_KEYS)}) nor a "
                            f"reader option ({', '.join(OPTION_KEYS[1:])})", where="--set")
    if fields:
        options["fields"] = fields
    return options


def run_inspect(options: dict[str, Any], base_dir: Path) -> Scan:
    """Scan every row (images go to a temporary folder, removed after)."""
    with tempfile.TemporaryDirectory(prefix="mmsim-inspect-") as tmp:
        return scan_dataset(options, base_dir=base_dir, cache_dir=Path(tmp))


def summary(scan: Scan) -> dict[str, Any]:
    """What ``mmsim data inspect`` prints, as data."""
    src = scan.reader.source
    kinds = Counter(m.kind for m in scan.items)
    n_opts = Counter(m.n_options for m in scan.items)
    shown = []
    for m in scan.items[:SHOWN_ROWS]:
        s = m.sample
        shown.append({"where": m.where, "id": s.id, "text": s.question,
                      "images": [f"{im.sha256[:12]} {im.mime} {im.width}x{im.height}"
                                 for im in s.images],
                      "videos": [v.uri for v in s.videos],
                      "answer": s.answer_text, "answer_kind": m.kind,
                      "answer_format": s.answer_format.kind, "category": s.category})
    return {
        "source": src.label, "format": src.fmt, "files": [str(f) for f in src.files],
        "preset": scan.reader.preset, "prompt": scan.reader.prompt,
        "mapping": scan.fmap.mapped() if scan.fmap else {},
        "class_names": src.class_names,
        "rows": scan.rows, "items": len(scan.items),
        "answer_kinds": dict(sorted(kinds.items())),
        "options_per_item": {str(k): v for k, v in sorted(n_opts.items())},
        "images": {"references": scan.images, "distinct": scan.distinct_images,
                   "shared": scan.shared_images},
        "shown": shown,
        "problems": [p.line() for p in scan.problems],
    }


__all__ = ["inspect_options", "run_inspect", "summary"]
