"""Executors: where a run's episodes are played.

The runner decides *what* to play, phase by phase (screening, then the feedback episodes
built from the screening results); an executor decides *where*:

* :class:`LocalExecutor` (the default) plays a phase's jobs in this process, at most
  ``run.concurrency`` episodes in flight.
* :class:`RayExecutor` (``mmsim run --executor ray``, extra ``mmsim[ray]``) shards a
  phase's jobs into batches and sends each batch to a Ray actor (:class:`EpisodeWorker`)
  that runs mmsim's async runtime on it. A job is a tuple of names (agent, sample id,
  provider, policy), never a sample: each worker loads the data set once from the
  scenario (images are referenced by path and sha256). A worker returns its episodes as
  encoded rows (:meth:`RunStore.encode`), which the driver writes through its sink, so
  the run directory is the same whichever executor played it, and resume works across
  executors. A batch whose actor died is played again on a fresh actor; rows are only
  written once a batch has come back whole, so nothing is lost or written twice.

Both executors play an episode with the same code (:func:`play_jobs`, the runner's
episode methods), seeds and episode keys, so a run's metrics do not depend on the
executor.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio
import structlog

from mmsim.errors import MmsimError, UserError
from mmsim.store.sqlite import EncodedEpisode, EpisodeRecord, RunStore

if TYPE_CHECKING:
    from mmsim.actors import FeedbackProviderActor, ModelActor
    from mmsim.data import Sample
    from mmsim.env import PolicyPlan
    from mmsim.messages import Response
    from mmsim.runtime.runner import Runner
    from mmsim.scenario import LoadedScenario

log = structlog.get_logger("mmsim.run")

#: A screening job: (agent, sample id).
ScreenJob = tuple[str, str]
#: A feedback job: (receiver, provider, policy, sample id).
FeedbackJob = tuple[str, str, str, str]
Job = ScreenJob | FeedbackJob
SCREENING, FEEDBACK = "screening", "feedback"
J = TypeVar("J")


class Jobs(Generic[J]):
    """A phase's jobs, made on demand: ``len`` is known up front (the progress bar's total,
    the batch size of a remote executor), but the jobs themselves are produced as they are
    taken, so a run of 100,000 episodes never holds a list of them.

    Args:
        make: returns a fresh iterator over the jobs, the same ones each time it is called
            (it is called once to count them, once to play them).
    """

    __slots__ = ("_len", "_make")

    def __init__(self, make: Callable[[], Iterator[J]]):
        self._make = make
        self._len = sum(1 for _ in make())

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[J]:
        return self._make()


class RecordSink(Protocol):
    async def add(self, record: EpisodeRecord) -> None: ...


@dataclass(slots=True)
class Phase:
    """What a phase's episodes are played with, in the process that plays them."""

    name: str  # SCREENING or FEEDBACK
    samples: Mapping[str, Sample]
    plans: Mapping[str, PolicyPlan]
    models: Mapping[str, ModelActor]
    providers: Mapping[str, FeedbackProviderActor]
    screen: MutableMapping[tuple[str, str], Response]  # (agent, sample id) -> screening response
    sink: RecordSink
    stop: anyio.Event | None = None


async def play_jobs(runner: Runner, phase: Phase, jobs: Iterable[Any], concurrency: int,
                    advance: Callable[[int], None] | None = None) -> None:
    """Play ``jobs`` of ``phase`` in this process, at most ``concurrency`` in flight."""
    from mmsim.runtime.runner import run_pool

    samples, sink, screen = phase.samples, phase.sink, phase.screen
    if phase.name == SCREENING:
        models = phase.models

        async def play(job: ScreenJob) -> None:
            agent, sid = job
            rec, resp = await runner._screen_episode(models[agent], samples[sid])
            if resp is not None:
                screen[(agent, sid)] = resp
            await sink.add(rec)
            if advance is not None:
                advance(1)
    else:
        models, providers, plans = phase.models, phase.providers, phase.plans

        async def play(job: FeedbackJob) -> None:  # type: ignore[misc]
            receiver, provider, policy, sid = job
            rec = await runner._feedback_episode(models[receiver], providers[provider],
                                                 plans[policy], samples[sid],
                                                 screen[(receiver, sid)])
            await sink.add(rec)
            if advance is not None:
                advance(1)

    await run_pool(jobs, concurrency, play, phase.stop)


class Executor:
    """Where episodes are played (the seam; see the module docstring)."""

    name = "local"

    @contextlib.asynccontextmanager
    async def session(self, runner: Runner) -> AsyncIterator[None]:
        """Held while the run plays (a remote executor starts its workers here)."""
        yield

    async def play(self, runner: Runner, phase: Phase, jobs: Jobs[Any] | Sequence[Any],
                   sink: Any) -> None:
        """Play one phase's ``jobs`` (taken in order, each once); finished episodes go to
        ``sink``, screening responses to ``phase.screen``; the runner's counters and
        progress advance."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """Plays every episode in this process (the default)."""

    name = "local"

    async def play(self, runner: Runner, phase: Phase, jobs: Jobs[Any] | Sequence[Any],
                   sink: Any) -> None:
        await play_jobs(runner, phase, jobs, runner.scn.run.concurrency,
                        runner.progress.advance)


# ------------------------------------------------------------------------------- Ray


@dataclass(slots=True)
class BatchResult:
    """What a worker sends back for one batch."""

    encoded: list[EncodedEpisode]
    screen: list[tuple[str, str, Response]] = field(default_factory=list)
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

    It loads the plugins, the data set and the policy plans once, and builds fresh backends
    and actors per batch (so a backend's connections never outlive a batch's event loop).
    """

    def __init__(self, loaded: LoadedScenario, run_dir: str, plugins: Sequence[str] = ()):
        from mmsim.registry import load_entry_points, load_plugin_file
        from mmsim.runtime.runner import Runner, build_plans, load_samples

        load_entry_points()
        for p in plugins:
            load_plugin_file(p)
        self.loaded = loaded
        self.runner = Runner(loaded, Path(run_dir), store_enabled=False)
        self.samples = {s.id: s for s in load_samples(loaded, Path(run_dir) / "assets")}
        self.plans = {p.name: p for p in build_plans(loaded.scenario)}

    def pid(self) -> int:
        return os.getpid()

    async def play(self, phase: str, jobs: list[Any], firsts: dict[tuple[str, str], Response],
                   concurrency: int) -> BatchResult:
        from mmsim.actors import ActorSystem
        from mmsim.runtime.runner import build_backends, gc_tuned

        r = self.runner
        turns, played, failed = r.turns, r.played, r.failed
        sink = _Collector()
        screen = dict(firsts)
        async with ActorSystem() as system:
            models, providers = r._spawn_agents(system, build_backends(self.loaded.scenario))
            ph = Phase(phase, self.samples, self.plans, models, providers, screen, sink)
            with gc_tuned():
                await play_jobs(r, ph, jobs, concurrency)
        new = ([(a, sid, resp) for (a, sid), resp in screen.items()]
               if phase == SCREENING else [])
        return BatchResult(sink.encoded, new, r.turns - turns, r.played - played,
                           r.failed - failed)


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
    async def session(self, runner: Runner) -> AsyncIterator[None]:
        ray = _ray()
        scn = runner.scn
        if scn.servers:
            raise UserError("the ray executor does not start scenario servers (servers:); "
                            "point the agents at running endpoints or use --executor local",
                            field="executor")
        if any(p.kind == "human" for p in scn.providers):
            raise UserError("human providers need the local executor", field="executor")
        if scn.protocol.mode == "annotate":
            raise UserError("annotate mode needs the local executor", field="executor")
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self._started_ray = True
        n = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._cls = ray.remote(EpisodeWorker).options(num_cpus=self.num_cpus, max_restarts=0,
                                                      max_concurrency=1)
        self._args = (runner.loaded, str(runner.run_dir.resolve()), self.plugins)
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

    async def play(self, runner: Runner, phase: Phase, jobs: Jobs[Any] | Sequence[Any],
                   sink: Any) -> None:
        ray = _ray()
        from ray.exceptions import RayActorError, RayTaskError

        if not len(jobs):
            return
        concurrency = max(1, math.ceil(runner.scn.run.concurrency / len(self._handles)))
        size = self._size(len(jobs), runner.scn.run.concurrency)
        todo = iter(jobs)  # shared by the drivers: each batch is taken from it once
        screen = phase.screen
        stop = phase.stop

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
                firsts = ({(j[0], j[3]): screen[(j[0], j[3])] for j in batch}
                          if phase.name == FEEDBACK else {})
                while True:
                    gen = self._gen[slot]
                    ref = self._handles[slot].play.remote(phase.name, batch, firsts,
                                                          concurrency)
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
                    await sink.add_encoded(enc)
                for agent, sid, resp in res.screen:
                    screen[(agent, sid)] = resp
                runner.turns += res.turns
                runner.played += res.played
                runner.failed += res.failed
                runner.progress.advance(len(res.encoded))

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


__all__ = ["EXECUTORS", "BatchResult", "EpisodeWorker", "Executor", "Jobs", "LocalExecutor",
           "Phase", "RayExecutor", "make_executor", "play_jobs"]
