"""The kernel: plays any protocol's scenario into one run directory.

Written once for every protocol (docs/architecture.md): the run directory's lock, the
scenario's ``servers:`` (booting while the data loads, stopped when the run ends), data
loading with errors anchored in the scenario file, backends built after their params are
checked, the manifest, the store with its response cache, resume (episodes already done
are skipped), SIGINT/SIGTERM with a clean stop, progress, and the executors (local, Ray).
The protocol (:class:`~mmsim.runtime.protocol.EvalProtocol`) declares its schema, data,
phases and episode function; the kernel never imports a protocol.

Every episode is committed to the store when it ends; a rerun on the same directory skips
the episodes already done, so a killed run resumes and ends with the same results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

from mmsim.actors import ActorSystem
from mmsim.backends import Backend
from mmsim.errors import MmsimError, StoreError, UserError
from mmsim.registry import user_code_error
from mmsim.runtime.agents import agent_params, agents_of, build_backends, spawn_actors
from mmsim.runtime.executors import Executor, LocalExecutor, Phase, RemoteSetup
from mmsim.runtime.loading import load_data
from mmsim.runtime.manifest import describe_agent, provenance, redact_scenario
from mmsim.runtime.pool import gc_tuned
from mmsim.runtime.progress import Progress, RunResult, Tally
from mmsim.runtime.protocol import PROTOCOLS, EvalProtocol, ProtocolRun, RunRefused, RunSetup
from mmsim.runtime.servers import ServerError, ServerGroup, kill_all_now
from mmsim.runtime.sink import EpisodeSink
from mmsim.spec import LoadedScenario
from mmsim.store import EpisodeIdSet, ResponseCache, RunStore, run_dir_lock
from mmsim.store.sqlite import check_run_dir

log = structlog.get_logger("mmsim.run")


def _mmsim_error(exc: BaseException) -> MmsimError | None:
    """The first mmsim error in an exception (group), e.g. raised inside a task group."""
    if isinstance(exc, MmsimError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _mmsim_error(sub)
            if found is not None:
                return found
    return None


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested groups of one (a task group's wrapping)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_manifest(proto: EvalProtocol[Any, Any], loaded: LoadedScenario,
                 backends: dict[str, Backend], data: Any) -> dict[str, Any]:
    """What a run records about itself (docs/reports.md): the scenario file and its hash,
    the run's fingerprint, mmsim's version and commit, the seeds, every agent with its
    model, endpoint and sampling parameters (secrets dropped) and the dataset."""
    scn = loaded.scenario
    specs = {n: spec for n, (_, _, spec, _) in agents_of(proto, scn).items()}
    return {
        "kind": proto.name,
        "scenario_file": str(loaded.path),
        "scenario_sha256": hashlib.sha256(loaded.path.read_bytes()).hexdigest(),
        "fingerprint": loaded.fingerprint(), "limit": loaded.limit,
        **provenance(), "seed": scn.seed,
        "dataset": proto.dataset_manifest(loaded, data),
        "simulated": any(b.simulated for b in backends.values()),
        "seeds": {"scenario": scn.seed, "dataset": scn.dataset.options.get("seed"),
                  "agents": {n: s.params.get("seed") for n, s in specs.items()
                             if "seed" in s.params}},
        "agents": {n: describe_agent(specs[n].params, b.describe(), backend=specs[n].backend,
                                     concurrency=specs[n].concurrency)
                   for n, b in backends.items()},
    }


class RunIncomplete(UserError):
    """A phase ended with fewer episodes recorded (done or failed) than were planned."""


class Kernel:
    """Plays one scenario (of any protocol) into one run directory."""

    #: After a stop signal, how long episodes in flight may take to finish before they are
    #: cancelled (a cancelled episode is not recorded; a resumed run plays it again).
    stop_grace_s: float = 10.0

    def __init__(self, loaded: LoadedScenario, run_dir: Path, *, progress: Progress | None = None,
                 store_enabled: bool = True, handle_signals: bool = False,
                 executor: Executor | None = None):
        self.loaded = loaded
        self.proto = PROTOCOLS.get(loaded.kind)
        self.executor = executor or LocalExecutor()  # where episodes play (executors.py)
        self.scn = loaded.scenario
        self.run_dir = Path(run_dir)
        self.tally = Tally(progress or Progress())
        self.store_enabled = store_enabled
        self.handle_signals = handle_signals
        self.fingerprint = loaded.fingerprint()
        self.run_id = loaded.run_id(self.fingerprint)
        self.stop_signal: int | None = None
        self.protocol_run: ProtocolRun[Any, Any] | None = None
        self._stop: anyio.Event | None = None
        self._play_scope: anyio.CancelScope | None = None

    @property
    def played(self) -> int:
        return self.tally.played

    @property
    def failed(self) -> int:
        return self.tally.failed

    @property
    def skipped(self) -> int:
        return self.tally.skipped

    @property
    def turns(self) -> int:
        return self.tally.turns

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop taking new episodes; the ones in flight get ``stop_grace_s`` to finish."""
        if self.stop_signal is None:
            self.stop_signal = int(signum)
        if self._stop is not None:
            self._stop.set()

    async def _watch_signals(self) -> None:
        """First SIGINT/SIGTERM: a clean stop. Second: exit at once (every committed batch
        is one transaction, so an abrupt exit loses only uncommitted episodes)."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.request_stop(signum)
                break
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _abort_now)
        log.info("run.stopping", signal=signal.Signals(self.stop_signal or 2).name)
        await anyio.sleep(self.stop_grace_s)
        if self._play_scope is not None:
            self._play_scope.cancel()

    async def run(self) -> RunResult:
        fresh = not self.run_dir.exists()
        # mmsim writes only into run directories it created (or an empty one): checked
        # before anything is written, a foreign SQLite file or folder is refused
        check_run_dir(self.run_dir)
        # One writer per run directory, taken before servers start or data loads: a
        # second `mmsim run` on the same --out stops here (exit 2), having touched nothing.
        with run_dir_lock(self.run_dir):
            async with ServerGroup(getattr(self.scn, "servers", []),
                                   self.run_dir / "servers") as servers:
                return await self._run(fresh, servers)

    async def _run(self, fresh: bool, server_group: ServerGroup) -> RunResult:
        t0 = time.perf_counter()
        proto, loaded, tally = self.proto, self.loaded, self.tally
        self._stop = anyio.Event()
        # Everything that can fail on user input happens before the store is touched; a run
        # directory this call created is removed again when it does (kept when a server
        # failed: its log is there).
        try:
            data = load_data(proto, loaded, self.run_dir / "assets")
            servers = await server_group.wait_healthy()
            params = agent_params(proto, self.scn, servers)
            backends = build_backends(proto, loaded, params)
            prun = self.protocol_run = proto.run(RunSetup(loaded, self.run_id, self.run_dir,
                                                          data, tally.progress))
        except BaseException as exc:
            if fresh and self.run_dir.is_dir() and not isinstance(exc, ServerError):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        manifest = run_manifest(proto, loaded, backends, data)
        manifest.update(prun.manifest())
        if servers:
            manifest["servers"] = server_group.describe()
        store = RunStore.open(self.run_dir) if self.store_enabled else None
        cache: ResponseCache | None = None
        status = "finished"
        try:
            resumed = False
            done = EpisodeIdSet()
            if store is not None:
                resumed = store.begin_run(self.run_id, self.scn.name, self.fingerprint,
                                          redact_scenario(self.scn.canonical()), manifest)
                done = store.done_ids()
                cache = ResponseCache(store.path)
                specs = agents_of(proto, self.scn)
                for name, b in backends.items():
                    b.attach_cache(cache, specs[name][2].cache)
            log.info("run.start", run_id=self.run_id, run_dir=str(self.run_dir),
                     resumed=resumed, samples=len(proto.samples(data)),
                     already_done=len(done))
            t_play = time.perf_counter()
            saved = _signal_handlers() if self.handle_signals else None
            try:
                async with anyio.create_task_group() as tg:
                    if self.handle_signals:
                        tg.start_soon(self._watch_signals, name="signal-watcher")
                    with gc_tuned():
                        await self._play(prun, backends, params, store, done)
                    tg.cancel_scope.cancel()
            except BaseException as exc:
                found = _mmsim_error(exc)
                if found is None:  # a plugin protocol's own code (jobs, after_phase...)
                    leaf = _leaf(exc)
                    named = user_code_error(leaf, f"protocol {proto.name!r}")
                    if isinstance(named, MmsimError):
                        found = named
                if store is not None and not isinstance(found, StoreError):
                    with contextlib.suppress(MmsimError):
                        store.finish_run(found.status if isinstance(found, RunRefused)
                                         else "failed")
                if found is not None and found is not exc:
                    raise found from None  # not wrapped in the task group's ExceptionGroup
                raise
            finally:
                if saved is not None:
                    _restore_signal_handlers(saved)
            play_s = time.perf_counter() - t_play
            if self.stop_signal is not None:
                status = "interrupted"
            if store is not None:
                store.finish_run(status)
            counts = store.counts() if store is not None else {}
        finally:
            if cache is not None:
                with contextlib.suppress(Exception):  # a lost cache entry costs one request
                    cache.close()
            if store is not None:
                store.close()
        notes = prun.finish(self.run_dir) if status == "finished" else []
        elapsed = time.perf_counter() - t0
        log.info("run.end", run_id=self.run_id, played=tally.played, skipped=tally.skipped,
                 failed=tally.failed, elapsed_s=round(elapsed, 3), interrupted=self.stop_signal)
        return RunResult(self.run_dir, self.run_id, resumed, tally.played, tally.skipped,
                         tally.failed, elapsed, tally.turns, play_s, counts, self.stop_signal,
                         notes)

    async def _play(self, prun: ProtocolRun[Any, Any], backends: dict[str, Backend],
                    params: dict[str, dict[str, Any]], store: RunStore | None,
                    done: EpisodeIdSet) -> None:
        """Every phase of the protocol, in order: its jobs planned (what is done skipped),
        played by the executor, then the protocol's check after the phase."""
        tally, stop = self.tally, self._stop
        concurrency = self.scn.run.concurrency
        setup = RemoteSetup(self.loaded, self.run_dir, params)
        # The stop timer cancels this scope: episodes in flight are dropped, the sink still
        # commits every finished one (its flush is shielded), the actors shut down.
        with anyio.CancelScope() as self._play_scope:
            async with ActorSystem() as system, EpisodeSink(store) as sink, \
                    self.executor.session(setup, prun.local_only()):
                actors = spawn_actors(self.proto, self.scn, system, backends)
                for name in prun.phases:
                    jobs, planned = prun.jobs(name, done, store)
                    tally.skipped += planned - len(jobs)
                    tally.progress.phase(name, len(jobs))
                    ended = tally.played + tally.failed
                    await self.executor.play(Phase(name, prun, actors, sink, tally, stop),
                                             jobs, concurrency)
                    if stop is not None and stop.is_set():
                        return  # stopping: no later phase is planned from a partial one
                    ended = tally.played + tally.failed - ended
                    if ended != len(jobs):  # never `finished` with episodes silently lost
                        raise RunIncomplete(
                            f"{len(jobs) - ended} of {len(jobs)} planned {name!r} episodes "
                            "ended neither recorded nor failed; the run is marked failed "
                            "and rerunning the same command plays them",
                            where=str(self.run_dir))
                    await sink.flush()
                    prun.after_phase(name, store)
        self._play_scope = None


def _abort_now(signum: int, frame: object) -> None:
    kill_all_now()  # os._exit skips atexit and the servers' clean stop
    os._exit(128 + signum)


_Handlers = dict[int, Any]


def _signal_handlers() -> _Handlers:
    return {int(s): signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(saved: _Handlers) -> None:
    for s, h in saved.items():
        if h is not None:
            signal.signal(s, h)


async def run_scenario(loaded: LoadedScenario, run_dir: str | Path, *,
                       progress: Progress | None = None, store_enabled: bool = True,
                       handle_signals: bool = False, executor: Executor | None = None
                       ) -> RunResult:
    """Run (or resume) ``loaded`` (a scenario of any protocol) into ``run_dir``.

    ``executor``: where the episodes play (default in this process; see
    :mod:`mmsim.runtime.executors` for Ray).

    With ``handle_signals`` (main thread only; the CLI sets it) the first SIGINT/SIGTERM
    stops the run cleanly (no new episodes, in-flight ones finish within
    :attr:`Kernel.stop_grace_s`, the store is flushed, the run is marked ``interrupted``
    and :attr:`RunResult.interrupted` holds the signal); a second one exits at once.
    """
    return await Kernel(loaded, Path(run_dir), progress=progress, store_enabled=store_enabled,
                        handle_signals=handle_signals, executor=executor).run()


def default_run_dir(loaded: LoadedScenario) -> Path:
    """``runs/<scenario name>``: where a scenario of any kind runs without ``--out``."""
    return Path("runs") / str(loaded.scenario.name)


__all__ = ["Kernel", "RunIncomplete", "default_run_dir", "run_manifest", "run_scenario"]
