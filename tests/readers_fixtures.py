"""Fixtures in published layouts for the field-map readers: the same items written as a
VLMEvalKit TSV, as a Hugging Face parquet (hub layout) and as JSONL with image files."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image as PILImage


def png(colour: str, size: tuple[int, int] = (12, 9)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]

#: (id, question, options, answer letter, colour of the image, category, hint)
ITEMS: list[tuple[str, str, list[str], str, str, str, str | None]] = [
    (str(i), f"What colour fills picture {i}?",
     [c for c in COLOURS[:4]], "ABCD"[i % 4], COLOURS[i % 4],
     "colour" if i % 2 else "shade", "Look closely." if i % 3 == 0 else None)
    for i in range(12)
]


def write_tsv(path: Path, items: list[Any] = ITEMS, *, reuse: bool = True) -> Path:
    """A VLMEvalKit TSV (as pandas ``to_csv(sep='\\t')`` writes it): the second row of an
    image holds the ``index`` of the first (VLMEvalKit's reuse rule)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first: dict[str, str] = {}
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "question", "hint", "A", "B", "C", "D", "answer", "category",
                    "l2-category", "split", "image"])
        for sid, q, opts, ans, colour, cat, hint in items:
            if reuse and colour in first:
                img = first[colour]
            else:
                img = base64.b64encode(png(colour)).decode()
                first.setdefault(colour, sid)
            w.writerow([sid, q, hint or "", *opts, ans, cat, "perception", "dev", img])
    return path


def write_hf_parquet(root: Path, items: list[Any] = ITEMS, split: str = "test") -> Path:
    """A hub-layout folder ``root/data/test-00000-of-00001.parquet``: ``image`` as the
    Image feature ({bytes, path}), ``choices`` a list, ``answer`` an integer index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": sid, "question": q, "hint": hint, "choices": opts,
             "answer": "ABCD".index(ans), "category": cat,
             "image": {"bytes": png(colour), "path": f"{sid}.png"}}
            for sid, q, opts, ans, colour, cat, hint in items]
    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("hint", pa.string()),
                        ("choices", pa.list_(pa.string())), ("answer", pa.int64()),
                        ("category", pa.string()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                   root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def write_jsonl(path: Path, items: list[Any] = ITEMS) -> Path:
    """JSONL with the answer as the option's text and images as relative file paths."""
    (path.parent / "img").mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for sid, q, opts, ans, colour, cat, hint in items:
            (path.parent / "img" / f"{colour}.png").write_bytes(png(colour))
            fh.write(json.dumps({"qid": sid, "prompt": q, "context": hint, "options": opts,
                                 "gold": opts["ABCD".index(ans)], "topic": cat,
                                 "picture": f"img/{colour}.png"}) + "\n")
    return path


JSONL_FIELDS = {"id": "qid", "question": "prompt", "hint": "context", "choices": "options",
                "answer": "gold", "category": "topic", "image": "picture"}
