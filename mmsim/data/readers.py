"""The field-map readers registered as datasets (``dataset: {name: tsv, path: ...}``).

``table`` reads any supported format (told by the path); ``tsv``, ``csv``, ``jsonl``,
``json``, ``parquet``, ``arrow`` and ``hf`` fix it. The same readers are registered in
each protocol's dataset registry by that protocol (classification, dynamic, video), so
every protocol can name them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmsim.data import DATASETS, DatasetLoader
from mmsim.data.fields import load_samples
from mmsim.data.sample import Sample

READERS: dict[str, str] = {
    "table": "Any format, told by the path (suffix, or a folder's layout).",
    "tsv": "VLMEvalKit TSV (base64 images, index reuse, A..Z options, hint).",
    "csv": "CSV with a header, through the field map.",
    "jsonl": "JSON Lines (one row object per line), through the field map.",
    "json": "A JSON list of row objects, through the field map.",
    "parquet": "A parquet file, or a Hugging Face hub folder of shards (configs as folders).",
    "arrow": "A datasets save_to_disk folder (state.json + .arrow files).",
    "hf": "hf://owner/name (then :config, @split) through the optional datasets library.",
}


def reader_loader(fmt: str | None) -> DatasetLoader:
    """A ``(options, *, base_dir, cache_dir, limit) -> list[Sample]`` loader for ``fmt``."""

    def load(options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
             limit: int | None, **_: Any) -> list[Sample]:
        return load_samples(options, base_dir=base_dir, cache_dir=cache_dir, limit=limit,
                            fmt=fmt)

    load.__doc__ = READERS["table" if fmt is None else fmt]
    return load


def register_readers(registry: Any) -> None:
    """Register every reader in ``registry`` (a protocol's dataset registry)."""
    for name, doc in READERS.items():
        registry.register(name, reader_loader(None if name == "table" else name), doc=doc)


register_readers(DATASETS)

__all__ = ["READERS", "reader_loader", "register_readers"]
