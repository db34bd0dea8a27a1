"""Executors: where a run's episodes are played.

The kernel decides *what* to play, phase by phase (a protocol's phases, each planned once
the previous one has played); an executor decides *where*:

* :class:`LocalExecutor` (the default) plays a phase's jobs in this process, at most
  ``run.concurrency`` episodes in flight.
* :class:`RayExecutor` (``mmsim run --executor ray``, extra ``mmsim[ray]``) shards a
  phase's jobs into batches and sends each batch to a Ray actor (:class:`EpisodeWorker`)
  that runs mmsim's async runtime on it. A job is a small picklable value (names, a
  response), never a sample: each worker loads the data set once from the scenario (images
  are referenced by path and sha256) and makes the protocol's run object there. A worker
  returns its episodes as encoded rows (:meth:`RunStore.encode`), which the driver writes
  through its sink, and the outputs the phase keeps (:meth:`ProtocolRun.collect`), so the
  run directory is the same whichever executor played it, and resume works across
  executors. A batch whose actor died is played again on a fresh actor; rows are only
  written once a batch has come back whole, so nothing is lost or written twice.

Both executors play an episode with the same code (the protocol's :meth:`ProtocolRun.play`,
through :func:`play_jobs`), seeds and episode keys, so a run's metrics do not depend on
the executor. Executors know no protocol.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import structlog

from mmsim.errors import MmsimError, UserError
from mmsim.registry import user_code_error
from mmsim.runtime.pool import Jobs, gc_tuned, run_pool
from mmsim.runtime.progress import Tally
from mmsim.runtime.protocol import Actors, ProtocolRun
from mmsim.spec import LoadedScenario
from mmsim.store.sqlite import EncodedEpisode, EpisodeRecord, RunStore

log = structlog.get_logger("mmsim.run")


class RecordSink(Protocol):
    async def add(self, record: EpisodeRecord) -> None: ...


@dataclass(slots=True)
class Phase:
    """A phase as it is played in one process: the protocol's run object, the actors, and
    where records, counts and progress go."""

    name: str
    run: ProtocolRun[Any, Any]
    actors: Actors
    sink: RecordSink
    tally: Tally
    stop: anyio.Event | None = None


async def play_jobs(phase: Phase, jobs: Iterable[Any], concurrency: int,
                    outputs: list[tuple[Any, Any]] | None = None) -> None:
    """Play ``jobs`` of ``phase`` in this process, at most ``concurrency`` in flight. Each
    episode's output is collected by the run (or appended to ``outputs``, in a worker)."""
    name, run, actors, sink, tally = phase.name, phase.run, phase.actors, phase.sink, \
        phase.tally
    progress = tally.progress

    protocol = run.loaded.kind

    async def play(job: Any) -> None:
        try:
            p = await run.play(name, job, actors)
        except BaseException as exc:  # user code's exception, named (a real cancel as is)
            err = user_code_error(exc, f"a {name!r} episode")
            if err is exc:
                raise
            raise err from None
        rec = p.record
        rec.protocol = protocol
        if rec.reward is None and rec.solved is not None:
            rec.reward = 1.0 if rec.solved else 0.0  # the verified outcome, by default
        if p.output is not None:
            if outputs is None:
                run.collect(name, job, p.output)
            else:
                outputs.append((job, p.output))
        tally.turns += p.turns
        if rec.status == "failed":
            tally.failed += 1
        else:
            tally.played += 1
        await sink.add(rec)
        progress.advance(1)

    await run_pool(jobs, concurrency, play, phase.stop)


@dataclass
class RemoteSetup:
    """What remote workers need to play a run: the scenario, the run directory (for the
    data's assets) and every agent's params (``server:`` references resolved by the
    driver, so workers reach the servers the driver started)."""

    loaded: LoadedScenario
    run_dir: Path
    params: dict[str, dict[str, Any]]

    def __getstate__(self) -> dict[str, Any]:
        # the scenario travels as data: its class may come from a plugin the worker has
        # not loaded yet when it unpickles this (it loads plugins, then rebuilds it)
        loaded = self.loaded
        return {"scenario": loaded.scenario.model_dump(mode="python"),
                "loaded": loaded.model_dump(exclude={"scenario"}),
                "run_dir": self.run_dir, "params": self.params}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.run_dir, self.params = state["run_dir"], state["params"]
        self._state = state

    def rebuild(self) -> None:
        """The scenario as the driver had it (call once the plugins are loaded)."""
        from mmsim.runtime.protocol import PROTOCOLS

        state = getattr(self, "_state", None)
        if state is None:
            return
        proto = PROTOCOLS.get(state["loaded"]["kind"])
        scn = proto.scenario.model_validate(state["scenario"])
        self.loaded = LoadedScenario(scenario=scn, **state["loaded"])


class Executor:
    """Where episodes are played (the seam; see the module docstring)."""

    name = "local"

    @contextlib.asynccontextmanager
    async def session(self, setup: RemoteSetup, local_only: str | None
                      ) -> AsyncIterator[None]:
        """Held while the run plays (a remote executor starts its workers here; it refuses
        a run that says it is ``local_only``, with the reason)."""
        yield

    async def play(self, phase: Phase, jobs: Jobs[Any] | Sequence[Any],
                   concurrency: int) -> None:
        """Play one phase's ``jobs`` (taken in order, each once); finished episodes go to
        the phase's sink, outputs to its run, counts and progress to its tally."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """Plays every episode in this process (the default)."""

    name = "local"

    async def play(self, phase: Phase, jobs: Jobs[Any] | Sequence[Any],
                   concurrency: int) -> None:
        await play_jobs(phase, jobs, concurrency)


# ------------------------------------------------------------------------------- Ray


@dataclass(slots=True)
class BatchResult:
    """What a worker sends back for one batch."""

    encoded: list[EncodedEpisode]
    outputs: list[tuple[Any, Any]] = field(default_factory=list)
    turns: int = 0
    played: int = 0
    failed: int = 0


class _Collector:
    """A sink that encodes episodes (in the worker) and keeps the rows."""

    def __init__(self) -> None:
        self.encoded: list[EncodedEpisode] = []

    async def add(self, record: EpisodeRecord) -> None:
        self.encoded.append(RunStore.encode(record))


class EpisodeWorker:
    """The Ray actor's class: plays batches of jobs with mmsim's async runtime.

    It loads the plugins, the data set and the protocol's run object once, and builds fresh
    backends and actors per batch (so a backend's connections never outlive a batch's
    event loop).
    """

    def __init__(self, setup: RemoteSetup, plugins: Sequence[str] = ()):
        from mmsim.registry import load_entry_points, load_plugin_file
        from mmsim.runtime.loading import load_data
        from mmsim.runtime.protocol import PROTOCOLS, RunSetup

        load_entry_points()
        for p in plugins:
            load_plugin_file(p)
        setup.rebuild()
        self.setup = setup
        loaded = setup.loaded
        self.proto = PROTOCOLS.get(loaded.kind)
        data = load_data(self.proto, loaded, setup.run_dir / "assets")
        self.run = self.proto.run(RunSetup(loaded, loaded.run_id(), setup.run_dir, data,
                                           driver=False))

    def pid(self) -> int:
        return os.getpid()

    async def play(self, phase: str, jobs: list[Any], concurrency: int) -> BatchResult:
        from mmsim.actors import ActorSystem
        from mmsim.runtime.agents import build_backends, spawn_actors

        sink = _Collector()
        tally = Tally()
        outputs: list[tuple[Any, Any]] = []
        loaded = self.setup.loaded
        async with ActorSystem() as system:
            backends = build_backends(self.proto, loaded, self.setup.params)
            actors = spawn_actors(self.proto, loaded.scenario, system, backends)
            with gc_tuned():
                await play_jobs(Phase(phase, self.run, actors, sink, tally), jobs,
                                concurrency, outputs)
        return BatchResult(sink.encoded, outputs, tally.turns, tally.played, tally.failed)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'mmsim[ray]'",
                        field="executor") from None
    return ray


class RayExecutor(Executor):
    """Plays batches of episodes on Ray actors (see the module docstring).

    Args:
        address: a running cluster (``"auto"``, ``"HOST:PORT"``); None starts a local Ray
            unless this process already called ``ray.init``.
        workers: how many actors (default: one per CPU of the cluster).
        batch_size: jobs per batch (default: enough to keep each worker's share of
            ``run.concurrency`` busy, and at least four batches per worker when a phase
            is small enough).
        plugins: plugin files the workers import (``mmsim run --plugin``).
        num_cpus: CPUs each actor reserves.
        max_restarts: how many dead actors may be replaced in one run before it fails.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 batch_size: int | None = None, plugins: Sequence[str | Path] = (),
                 num_cpus: float = 1.0, max_restarts: int = 16):
        self.address = address
        self.workers = workers
        self.batch_size = batch_size
        self.plugins = [str(Path(p).resolve()) for p in plugins]
        self.num_cpus = num_cpus
        self.max_restarts = max_restarts
        self.restarts = 0  # actors replaced after dying (their batches were played again)
        self.requeued = 0  # batches played again
        self._handles: list[Any] = []
        self._gen: list[int] = []  # per slot: bumps when its actor is replaced
        self._started_ray = False
        self._cls: Any = None
        self._args: tuple[Any, ...] = ()

    @contextlib.asynccontextmanager
    async def session(self, setup: RemoteSetup, local_only: str | None
                      ) -> AsyncIterator[None]:
        ray = _ray()
        if local_only is not None:
            raise UserError(f"{local_only}: use --executor local", field="executor")
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self._started_ray = True
        n = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._cls = ray.remote(EpisodeWorker).options(num_cpus=self.num_cpus, max_restarts=0,
                                                      max_concurrency=1)
        setup = RemoteSetup(setup.loaded, setup.run_dir.resolve(), setup.params)
        self._args = (setup, self.plugins)
        self._handles = [self._cls.remote(*self._args) for _ in range(n)]
        self._gen = [0] * n
        try:
            yield
        finally:
            for h in self._handles:
                with contextlib.suppress(Exception):
                    ray.kill(h)
            self._handles = []
            if self._started_ray:
                ray.shutdown()
                self._started_ray = False

    def _size(self, n_jobs: int, concurrency: int) -> int:
        if self.batch_size:
            return self.batch_size
        per_worker = math.ceil(concurrency / len(self._handles))
        return max(1, min(max(4 * per_worker, 512),
                          math.ceil(n_jobs / (4 * len(self._handles)))))

    async def play(self, phase: Phase, jobs: Jobs[Any] | Sequence[Any],
                   concurrency: int) -> None:
        ray = _ray()
        from ray.exceptions import RayActorError, RayTaskError

        if not len(jobs):
            return
        per_worker = max(1, math.ceil(concurrency / len(self._handles)))
        size = self._size(len(jobs), concurrency)
        todo = iter(jobs)  # shared by the drivers: each batch is taken from it once
        stop, tally, run = phase.stop, phase.tally, phase.run

        def replace(slot: int, gen: int) -> None:
            if self._gen[slot] != gen:  # another batch on this slot replaced it already
                return
            if self.restarts >= self.max_restarts:
                raise MmsimError(f"ray workers died {self.restarts} times; stopping the run")
            self.restarts += 1
            with contextlib.suppress(Exception):
                ray.kill(self._handles[slot])
            self._handles[slot] = self._cls.remote(*self._args)
            self._gen[slot] += 1

        async def drive(slot: int) -> None:
            while stop is None or not stop.is_set():
                batch = list(itertools.islice(todo, size))
                if not batch:
                    return
                while True:
                    gen = self._gen[slot]
                    ref = self._handles[slot].play.remote(phase.name, batch, per_worker)
                    try:
                        res: BatchResult = await ref
                        break
                    except RayActorError as exc:  # the actor died: play the batch again
                        log.warning("ray.worker_died", slot=slot, batch=len(batch),
                                    error=type(exc).__name__)
                        self.requeued += 1
                        replace(slot, gen)
                    except RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, MmsimError):
                            raise cause from None
                        raise
                    except BaseException:
                        with contextlib.suppress(Exception):
                            ray.cancel(ref, force=False)
                        raise
                for enc in res.encoded:
                    await phase.sink.add_encoded(enc)  # type: ignore[attr-defined]
                for job, output in res.outputs:
                    run.collect(phase.name, job, output)
                tally.turns += res.turns
                tally.played += res.played
                tally.failed += res.failed
                tally.progress.advance(len(res.encoded))

        async with anyio.create_task_group() as tg:
            for slot in range(len(self._handles)):
                for _ in range(2):  # two batches per actor: the next one waits in its queue
                    tg.start_soon(drive, slot)


EXECUTORS = ("local", "ray")


def make_executor(name: str, *, address: str | None = None, workers: int | None = None,
                  plugins: Sequence[str | Path] = ()) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        if address is not None or workers is not None:
            raise UserError("--ray-address and --ray-workers need --executor ray",
                            field="executor")
        return LocalExecutor()
    if name == "ray":
        _ray()
        return RayExecutor(address, workers=workers, plugins=plugins)
    raise UserError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})",
                    field="executor")


__all__ = ["EXECUTORS", "BatchResult", "EpisodeWorker", "Executor", "LocalExecutor", "Phase",
           "RayExecutor", "RemoteSetup", "make_executor", "play_jobs"]
