"""A protocol's data, loaded for the kernel with the checks every protocol gets: errors
anchored in the scenario file, a loader's crash named, no empty data set, no duplicate
item ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from mmsim.errors import DataError, UserError
from mmsim.registry import cancelled_for_real, describe_exception, user_frame
from mmsim.runtime.protocol import EvalProtocol
from mmsim.spec import LoadedScenario

log = structlog.get_logger("mmsim.run")


def anchor_dataset_error(loaded: LoadedScenario, exc: UserError) -> UserError:
    """A loader's error about one of its options, re-anchored to the scenario's line
    (``scn.yaml:7: dataset.path: file not found (/data/x.json)``); errors about a data
    file or row (which name that file and row) are kept as they are; an error that names
    no place is put on the scenario's ``dataset``."""
    opts = loaded.scenario.dataset.options
    about_option = exc.field in opts or (exc.where or "").startswith("dataset '")
    if exc.where is None and not about_option:
        return type(exc)(exc.message, where=loaded.where("dataset"),
                         field=exc.field or "dataset")
    if not about_option or (exc.where or "").find(", row ") >= 0:
        return exc
    key = exc.field if exc.field in opts else None
    msg = exc.message
    if exc.where and not exc.where.startswith("dataset '"):
        msg = f"{msg} ({exc.where})"
    return type(exc)(msg, where=loaded.where("dataset", *([key] if key else [])),
                     field=f"dataset.{exc.field}" if exc.field else "dataset")


def load_data(proto: EvalProtocol[Any, Any], loaded: LoadedScenario, cache_dir: Path) -> Any:
    """``proto``'s data for ``loaded`` (see the module docstring)."""
    name = loaded.scenario.dataset.name
    try:
        data = proto.load_data(loaded, cache_dir)
    except UserError as exc:
        raise anchor_dataset_error(loaded, exc) from None
    except BaseException as exc:  # a loader bug (or a plugin's): one line, not a traceback
        if cancelled_for_real(exc):
            raise
        log.debug("dataset.loader_failed", exc_info=True)
        at = user_frame(exc)
        raise DataError(f"dataset loader {name!r} failed: {describe_exception(exc)}"
                        + (f" ({at[0]}:{at[1]})" if at else ""),
                        where=loaded.where("dataset", "name"), field="dataset") from None
    items = proto.samples(data)
    if not items:
        raise DataError("the dataset is empty", where=loaded.where("dataset"), field="dataset")
    seen: set[str] = set()
    for s in items:
        if s.id in seen:
            raise DataError(f"duplicate {proto.item_noun} id {s.id!r}",
                            where=loaded.where("dataset"), field="dataset")
        seen.add(s.id)
    return data


__all__ = ["anchor_dataset_error", "load_data"]
