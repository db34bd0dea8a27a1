"""What the runners of the other protocols (classification, dynamic, video) share with each
other: the run's fingerprint, the manifest's common fields, input errors named in the
scenario file, and the store session a run plays into.

Each runner keeps what is its own: its plan of episodes, its actors, its extra manifest
fields and its results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import mmsim
from mmsim.backends import BACKENDS, Backend
from mmsim.backends.base import check_backend_params
from mmsim.errors import UserError
from mmsim.runtime.runner import _git_commit
from mmsim.scenario import AgentSpec
from mmsim.store import EpisodeIdSet, RunStore


class KindScenario(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def seed(self) -> int: ...

    def canonical(self) -> dict[str, Any]: ...


class LoadedKind(Protocol):
    """A loaded scenario of any kind (``LoadedClassification``, ``LoadedDynamic``, ...)."""

    @property
    def scenario(self) -> KindScenario: ...

    @property
    def path(self) -> Path: ...

    @property
    def limit(self) -> int | None: ...


def run_fingerprint(loaded: LoadedKind) -> str:
    """What makes two runs the same run: the canonical scenario and ``--limit``."""
    blob = json.dumps({"scenario": loaded.scenario.canonical(), "limit": loaded.limit},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_id(loaded: LoadedKind, fingerprint: str | None = None) -> str:
    fp = run_fingerprint(loaded) if fingerprint is None else fingerprint
    return f"{loaded.scenario.name}-{fp[:12]}"


@contextlib.contextmanager
def in_scenario(loaded: LoadedKind) -> Iterator[None]:
    """Name the scenario file in a UserError raised inside the block that names no file."""
    try:
        yield
    except UserError as exc:
        if exc.where is not None:
            raise
        raise type(exc)(exc.message, where=str(loaded.path), field=exc.field) from None


def base_manifest(kind: str, loaded: LoadedKind, backends: Mapping[str, Backend],
                  dataset: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields every kind records; a runner adds its own."""
    return {
        "kind": kind,
        "scenario_file": str(loaded.path),
        "scenario_sha256": hashlib.sha256(loaded.path.read_bytes()).hexdigest(),
        "fingerprint": run_fingerprint(loaded), "limit": loaded.limit,
        "mmsim_version": mmsim.__version__, "git_commit": _git_commit(),
        "python": platform.python_version(), "seed": loaded.scenario.seed,
        "agents": {n: b.describe() for n, b in backends.items()},
        "dataset": dataset,
        "simulated": any(b.simulated for b in backends.values()),
    }


def check_kind_backends(loaded: LoadedKind, groups: Mapping[str, Sequence[AgentSpec]],
                        sim: type[Backend]) -> None:
    """What ``mmsim validate`` checks of a kind's agents: each one's ``params`` as its
    backend would take them (``sim`` agents: the kind's ``sim`` class), building nothing;
    an error names the scenario file and the field (``models.0.params.skill``)."""
    for group, agents in groups.items():
        for i, a in enumerate(agents):
            try:
                if a.backend == "sim":
                    sim.check_params(a.name, dict(a.params))
                else:
                    check_backend_params(BACKENDS.get(a.backend), a.name, dict(a.params))
            except UserError as exc:
                if exc.where is not None:
                    raise
                rest = (exc.field or "").split(".")
                rest = rest[rest.index("params"):] if "params" in rest else ["params"]
                raise type(exc)(exc.message, where=str(loaded.path),
                                field=".".join([group, str(i), *rest])) from None


@contextlib.contextmanager
def run_store(run_dir: Path, loaded: LoadedKind, manifest: dict[str, Any]
              ) -> Iterator[tuple[RunStore, bool, EpisodeIdSet]]:
    """The run's store, recorded as (or checked to be) this scenario's run (``manifest``
    from :func:`base_manifest`, whose fingerprint it uses): yields the store, whether the
    run resumes an earlier one, and the episodes already done."""
    store = RunStore.open(run_dir)
    try:
        scn, fp = loaded.scenario, manifest["fingerprint"]
        resumed = store.begin_run(run_id(loaded, fp), scn.name, fp, scn.canonical(), manifest)
        yield store, resumed, store.done_ids()
    finally:
        store.close()


__all__ = ["LoadedKind", "base_manifest", "check_kind_backends", "in_scenario",
           "run_fingerprint", "run_id", "run_store"]
