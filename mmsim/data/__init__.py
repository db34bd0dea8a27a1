"""Datasets: the built-in synthetic set and adapters for published formats."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mmsim.data.sample import Sample
from mmsim.registry import Registry


class DatasetLoader(Protocol):
    """Loads samples. ``options`` are the scenario's ``dataset`` mapping minus ``name``;
    ``base_dir`` resolves relative paths (the scenario file's folder); ``cache_dir`` is a
    folder the loader may write derived files to (e.g. extracted images); ``limit`` keeps
    the first N samples in the dataset's own order."""

    def __call__(self, options: dict[str, Any], *, base_dir: Path, cache_dir: Path,
                 limit: int | None) -> list[Sample]: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register a dataset loader under ``name`` (usable in scenario YAML)."""
    return DATASETS.decorator(name)


__all__ = ["DATASETS", "DatasetLoader", "Sample", "dataset"]

# Built-in loaders register themselves on import (kept last: they import ``dataset``).
from mmsim.data import mathverse, mmmu_pro, readers, synthetic  # noqa: E402, F401
