"""Runs an InterFeedback scenario: screening, benchmark construction, feedback episodes.

1. **Screening**: every agent (receivers and providers) answers every item once.
2. **Test sets**: per receiver x provider, the items the provider answered correctly and the
   receiver wrongly (``protocol.test_set`` picks the variant); ``N_test <= N_wrong`` is
   checked.
3. **Feedback episodes**: receiver x provider x policy x test item, up to
   ``protocol.max_rounds`` feedback rounds; round 0 is the receiver's screening answer.

Every episode is committed to the store when it ends; a rerun on the same directory skips
the episodes already done, so a killed run resumes and ends with the same results.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import structlog

import mmsim
from mmsim.actors import ActorSystem, FeedbackProviderActor, ModelActor
from mmsim.actors.human import make_provider
from mmsim.backends import BACKENDS, Backend
from mmsim.backends.base import check_backend_params
from mmsim.data import DATASETS, Sample
from mmsim.env import EpisodeFailed, InterFeedbackEnv, PolicyPlan, RoundPolicy
from mmsim.env.interfeedback import first_turn
from mmsim.errors import (
    DataError,
    InfrastructureError,
    MmsimError,
    PluginError,
    StoreError,
    UserError,
)
from mmsim.human import backend_factory
from mmsim.messages import ChatTurn, Response
from mmsim.policies import POLICIES
from mmsim.runtime.annotate import play_annotation
from mmsim.runtime.executors import (
    FEEDBACK,
    SCREENING,
    Executor,
    FeedbackJob,
    Jobs,
    LocalExecutor,
    Phase,
    ScreenJob,
)
from mmsim.runtime.manifest import describe_agent, prompt_template_hashes, redact_scenario
from mmsim.runtime.screening import ScreenAnswers
from mmsim.runtime.servers import (
    RunningServer,
    ServerError,
    ServerGroup,
    kill_all_now,
    resolve_params,
)
from mmsim.runtime.sink import EpisodeSink
from mmsim.scenario import LoadedScenario, Scenario
from mmsim.store import EpisodeIdSet, EpisodeRecord, ResponseCache, RunStore, run_dir_lock
from mmsim.tasks.answers import check_answer

log = structlog.get_logger("mmsim.run")
ScreenMap = MutableMapping[tuple[str, str], Response]  # (agent, sample id) -> answer
T = TypeVar("T")


class Progress:
    """What the runner reports while it runs (a rich progress bar in the CLI)."""

    def phase(self, name: str, total: int) -> None:
        """A phase starts with ``total`` episodes to play (already-done ones excluded)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more episodes finished."""


@dataclass(slots=True)
class RunResult:
    run_dir: Path
    run_id: str
    resumed: bool
    played: int
    skipped: int
    failed: int
    elapsed_s: float
    turns: int = 0
    play_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: int | None = None  # the signal that stopped the run early, if one did
    # elapsed_s: the whole run (data loading included); play_s: playing episodes, store
    # writes included (what throughput benchmarks divide by)


def screen_id(agent: str, sample_id: str) -> str:
    return f"screen/{agent}/{sample_id}"


def feedback_id(receiver: str, provider: str, policy: str, sample_id: str) -> str:
    return f"feedback/{receiver}/{provider}/{policy}/{sample_id}"


def run_fingerprint(loaded: LoadedScenario) -> str:
    blob = json.dumps({"scenario": loaded.scenario.canonical(), "limit": loaded.limit},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def dataset_fingerprint(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(s.id.encode())
        h.update(s.answer.encode())
        h.update(s.question.encode())
        for im in s.images:
            h.update(im.sha256.encode())
    return h.hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=2, cwd=Path(mmsim.__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def extra_manifest(loaded: LoadedScenario, backends: dict[str, Backend]) -> dict[str, Any]:
    """Manifest fields beyond the basics (docs/reports.md): seeds, agents with model id,
    endpoint and sampling parameters (secrets dropped), prompt template hashes."""
    scn = loaded.scenario
    specs = scn.agents()
    return {
        "seeds": {"scenario": scn.seed, "dataset": scn.dataset.options.get("seed"),
                  "agents": {n: s.params.get("seed") for n, s in specs.items()
                             if "seed" in s.params}},
        "agents": {n: describe_agent(specs[n].params, b.describe(), backend=specs[n].backend,
                                     concurrency=specs[n].concurrency)
                   for n, b in backends.items()},
        "prompt_templates": prompt_template_hashes(
            [r for p in scn.policies for r in p.rounds]),
    }


def load_samples(loaded: LoadedScenario, cache_dir: Path) -> list[Sample]:
    spec = loaded.scenario.dataset
    loader = DATASETS.get(spec.name)
    try:
        samples = loader(spec.options, base_dir=loaded.base_dir, cache_dir=cache_dir,
                         limit=loaded.limit)
    except UserError as exc:
        raise _anchor_dataset_error(loaded, exc) from None
    except Exception as exc:  # a loader bug (or a plugin's): one line, not a traceback
        log.debug("dataset.loader_failed", exc_info=True)
        raise DataError(f"dataset loader {spec.name!r} failed: {type(exc).__name__}: {exc}",
                        where=loaded.where("dataset", "name"), field="dataset") from exc
    if not samples:
        raise DataError("the dataset is empty", where=loaded.where("dataset"), field="dataset")
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise DataError(f"duplicate sample id {s.id!r}", where=loaded.where("dataset"),
                            field="dataset")
        seen.add(s.id)
    return samples


def _anchor_dataset_error(loaded: LoadedScenario, exc: UserError) -> UserError:
    """A loader's error about one of its options, re-anchored to the scenario's line
    (``scn.yaml:7: dataset.path: file not found (/data/x.json)``); errors about a data
    file or row (which name that file and row) are kept as they are."""
    opts = loaded.scenario.dataset.options
    about_option = exc.field in opts or (exc.where or "").startswith("dataset '")
    if not about_option or (exc.where or "").find(", row ") >= 0:
        return exc
    key = exc.field if exc.field in opts else None
    msg = exc.message
    if exc.where and not exc.where.startswith("dataset '"):
        msg = f"{msg} ({exc.where})"
    return type(exc)(msg, where=loaded.where("dataset", *([key] if key else [])),
                     field=f"dataset.{exc.field}" if exc.field else "dataset")


def _agent_places(scn: Scenario) -> dict[str, tuple[str, int]]:
    return {**{a.name: ("providers", i) for i, a in enumerate(scn.providers)},
            **{a.name: ("receivers", i) for i, a in enumerate(scn.receivers)}}


def _located(exc: UserError, loaded: LoadedScenario, place: tuple[str, int],
             name: str) -> UserError:
    """``exc`` (about agent ``name``'s params) re-pointed at the scenario line."""
    group, i = place
    rest = (exc.field or "").removeprefix(f"{name}.").split(".")
    rest = rest if rest[0] in ("params", "human") else ["params"]
    return type(exc)(exc.message, where=loaded.where(group, i, *rest),
                     field=".".join([group, str(i), *rest]))


def check_backends(loaded: LoadedScenario) -> None:
    """What ``mmsim validate`` checks of the agents: each one's ``params`` as its backend
    would take them (``Backend.check_params``), building nothing. Human agents and plugin
    backends registered without ``cls=`` are not checked. A ``server:`` reference stands
    for its server's URL and model (the server is not started)."""
    scn = loaded.scenario
    places = _agent_places(scn)
    servers = {sv.name: sv for sv in scn.servers}
    for name, spec in scn.agents().items():
        if spec.kind == "human":
            continue
        params = dict(spec.params)
        sv = servers.get(str(params.pop("server", "")))
        if sv is not None:
            params["base_url"] = f"http://{sv.host}:1/v1"  # checked as a URL, never used
            if "model" not in params and sv.model is not None:
                params["model"] = sv.model
        try:
            check_backend_params(BACKENDS.get(spec.backend), name, params)
        except UserError as exc:
            if exc.where is not None:
                raise
            raise _located(exc, loaded, places[name], name) from None


def build_backends(scn: Scenario, loaded: LoadedScenario | None = None,
                   servers: dict[str, RunningServer] | None = None) -> dict[str, Backend]:
    """The agents' backends. With ``loaded``, a bad ``params`` error names the scenario
    line and the field (``scn.yaml:9: receivers.0.params.skil: ...``). ``servers``: the
    running servers that ``params: {server: NAME}`` refers to."""
    out: dict[str, Backend] = {}
    places = _agent_places(scn)
    for name, spec in scn.agents().items():
        factory = (backend_factory(spec.channel or "terminal", spec.human, spec.backend)
                   if spec.kind == "human" else BACKENDS.get(spec.backend))
        try:
            out[name] = factory(name, resolve_params(dict(spec.params), servers or {}))
        except UserError as exc:
            if loaded is None or exc.where is not None:
                raise
            raise _located(exc, loaded, places[name], name) from None
        except Exception as exc:  # a backend plugin's bug: name it, no traceback
            if loaded is None:
                raise
            group, i = places[name]
            raise PluginError(f"backend {spec.backend!r} raised {type(exc).__name__}: {exc}",
                              where=loaded.where(group, i, "backend"),
                              field=f"{group}.{i}.backend") from exc
    return out


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


def build_plans(scn: Scenario) -> list[PolicyPlan]:
    return [PolicyPlan(name=p.name, rounds=tuple(
        RoundPolicy(name=r, fn=POLICIES.get(r), options=dict(p.options)) for r in p.rounds))
        for p in scn.policies]


@contextlib.contextmanager
def gc_tuned(gen0: int = 50_000) -> Iterator[None]:
    """Cheaper garbage collection while episodes play.

    The objects alive before play (samples, images, backends) are moved out of the
    collector's sight (``gc.freeze``) and young collections run every ``gen0`` allocations
    instead of 700: a zero-latency simulated run spends about a fifth of its time in the
    collector otherwise. Everything is restored on exit; cycles are still collected.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(gen0, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


async def run_pool(jobs: Iterable[T], concurrency: int, fn: Callable[[T], Awaitable[None]],
                   stop: anyio.Event | None = None) -> None:
    """Run ``fn`` over ``jobs`` with at most ``concurrency`` in flight (backpressure).

    Workers start on demand: when a worker takes a job and every worker is busy, the pool
    grows (doubling, up to ``concurrency``). Jobs that never wait (zero-latency simulations)
    run on a handful of workers instead of paying for thousands of idle tasks; jobs that
    wait reach ``concurrency`` in flight within a few scheduler rounds. Once ``stop`` is
    set no new job starts; the ones in flight finish.
    """
    it: Iterator[T] = iter(jobs)
    limit = max(1, concurrency)
    workers = busy = 0

    async def worker() -> None:
        nonlocal busy
        for job in it:
            if stop is not None and stop.is_set():
                return
            busy += 1
            if busy >= workers:
                grow(min(workers, limit - workers))
            try:
                await fn(job)
            finally:
                busy -= 1

    def grow(n: int) -> None:
        nonlocal workers
        for _ in range(n):
            workers += 1
            tg.start_soon(worker)

    async with anyio.create_task_group() as tg:
        grow(1)


class Runner:
    """Plays one scenario into one run directory."""

    #: After a stop signal, how long episodes in flight may take to finish before they are
    #: cancelled (a cancelled episode is not recorded; a resumed run plays it again).
    stop_grace_s: float = 10.0

    def __init__(self, loaded: LoadedScenario, run_dir: Path, *, progress: Progress | None = None,
                 store_enabled: bool = True, handle_signals: bool = False,
                 executor: Executor | None = None):
        self.loaded = loaded
        self.executor = executor or LocalExecutor()  # where episodes play (executors.py)
        self.scn = loaded.scenario
        self.run_dir = Path(run_dir)
        self.progress = progress or Progress()
        self.store_enabled = store_enabled
        self.handle_signals = handle_signals
        self.run_id = f"{self.scn.name}-{run_fingerprint(loaded)[:12]}"
        self.played = self.skipped = self.failed = self.turns = 0
        self._firsts: dict[str, ChatTurn] = {}  # sample id -> first user turn (built once)
        self.stop_signal: int | None = None
        self._stop: anyio.Event | None = None
        self._play_scope: anyio.CancelScope | None = None

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

    def _first(self, sample: Sample) -> ChatTurn:
        turn = self._firsts.get(sample.id)
        if turn is None:
            turn = self._firsts[sample.id] = first_turn(sample)
        return turn

    async def run(self) -> RunResult:
        # The scenario's servers (servers:) boot while the data loads; they are stopped when
        # the run ends, fails or is interrupted (mmsim/runtime/servers.py).
        fresh = not self.run_dir.exists()
        if not fresh and not self.run_dir.is_dir():
            raise UserError("the run directory is a file, not a directory",
                            where=str(self.run_dir))
        # One writer per run directory, taken before servers start or data loads: a
        # second `mmsim run` on the same --out stops here (exit 2), having touched nothing.
        with run_dir_lock(self.run_dir):
            async with ServerGroup(self.scn.servers, self.run_dir / "servers") as servers:
                return await self._run(fresh, servers)

    async def _run(self, fresh: bool, server_group: ServerGroup) -> RunResult:
        t0 = time.perf_counter()
        scn = self.scn
        self._stop = anyio.Event()
        # Everything that can fail on user input happens before the store is touched; a run
        # directory this call created is removed again when it does (kept when a server
        # failed: its log is there).
        try:
            plans = build_plans(scn)
            samples = load_samples(self.loaded, self.run_dir / "assets")
            servers = await server_group.wait_healthy()
            backends = build_backends(scn, self.loaded, servers)
        except BaseException as exc:
            if fresh and self.run_dir.is_dir() and not isinstance(exc, ServerError):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        manifest = {
            "scenario_file": str(self.loaded.path),
            "scenario_sha256": hashlib.sha256(self.loaded.path.read_bytes()).hexdigest(),
            "fingerprint": run_fingerprint(self.loaded), "limit": self.loaded.limit,
            "mmsim_version": mmsim.__version__, "git_commit": _git_commit(),
            "python": platform.python_version(), "seed": scn.seed,
            "agents": {n: b.describe() for n, b in backends.items()},
            "dataset": {"name": scn.dataset.name, "n_samples": len(samples),
                        "fingerprint": dataset_fingerprint(samples)},
            "simulated": any(b.simulated for b in backends.values()),
        }
        manifest.update(extra_manifest(self.loaded, backends))
        if servers:
            manifest["servers"] = server_group.describe()
        store = RunStore.open(self.run_dir) if self.store_enabled else None
        cache: ResponseCache | None = None
        try:
            resumed = False
            done = EpisodeIdSet()
            if store is not None:
                resumed = store.begin_run(self.run_id, scn.name, run_fingerprint(self.loaded),
                                          redact_scenario(scn.canonical()), manifest)
                done = store.done_ids()
                cache = ResponseCache(store.path)
                specs = scn.agents()
                for name, b in backends.items():
                    b.attach_cache(cache, specs[name].cache)
            log.info("run.start", run_id=self.run_id, run_dir=str(self.run_dir),
                     resumed=resumed, samples=len(samples), already_done=len(done))
            t_play = time.perf_counter()
            saved = _signal_handlers() if self.handle_signals else None
            try:
                async with anyio.create_task_group() as tg:
                    if self.handle_signals:
                        tg.start_soon(self._watch_signals, name="signal-watcher")
                    with gc_tuned():
                        await self._play(samples, backends, plans, store, done)
                    tg.cancel_scope.cancel()
            except BaseException as exc:
                found = _mmsim_error(exc)
                if store is not None and not isinstance(found, StoreError):
                    with contextlib.suppress(MmsimError):
                        store.finish_run("failed")
                if found is not None and found is not exc:
                    raise found from None  # not wrapped in the task group's ExceptionGroup
                raise
            finally:
                if saved is not None:
                    _restore_signal_handlers(saved)
            play_s = time.perf_counter() - t_play
            if store is not None:
                store.finish_run("interrupted" if self.stop_signal is not None else "finished")
            counts = store.counts() if store is not None else {}
        finally:
            if cache is not None:
                with contextlib.suppress(Exception):  # a lost cache entry costs one request
                    cache.close()
            if store is not None:
                store.close()
        elapsed = time.perf_counter() - t0
        log.info("run.end", run_id=self.run_id, played=self.played, skipped=self.skipped,
                 failed=self.failed, elapsed_s=round(elapsed, 3), interrupted=self.stop_signal)
        return RunResult(self.run_dir, self.run_id, resumed, self.played, self.skipped,
                         self.failed, elapsed, self.turns, play_s, counts, self.stop_signal)

    async def _play(self, samples: list[Sample], backends: dict[str, Backend],
                    plans: list[PolicyPlan], store: RunStore | None, done: EpisodeIdSet) -> None:
        scn = self.scn
        by_id = {s.id: s for s in samples}
        agents = scn.agents()
        screen = ScreenAnswers(screen_id)  # compact: a run may screen 100,000s of items
        if store is not None:
            screen.update(self._load_screening(store, done, agents, by_id))
        # The stop timer cancels this scope: episodes in flight are dropped, the sink still
        # commits every finished one (its flush is shielded), the actors shut down.
        with anyio.CancelScope() as self._play_scope:
            async with ActorSystem() as system, EpisodeSink(store) as sink, \
                    self.executor.session(self):
                await self._play_phases(samples, screen, store, done, plans, backends, system,
                                        sink)
        self._play_scope = None

    async def _play_phases(self, samples: list[Sample], screen: ScreenMap,
                           store: RunStore | None, done: EpisodeIdSet, plans: list[PolicyPlan],
                           backends: dict[str, Backend], system: ActorSystem,
                           sink: EpisodeSink) -> None:
        scn = self.scn
        agents = {n: a for n, a in scn.agents().items() if a.kind != "human"}  # not screened
        stop = self._stop
        models, providers = self._spawn_agents(system, backends)
        by_id = {s.id: s for s in samples}
        plan_by_name = {p.name: p for p in plans}

        # 1. screening (jobs are names, not samples: an executor may ship them elsewhere),
        # item-major, so that the episodes in flight are spread over the agents (endpoints);
        # made as they are taken (a job is screened once: adding its answer to ``screen``
        # while the phase plays changes none of the jobs still to come)
        def screening_jobs() -> Iterator[ScreenJob]:
            for s in samples:
                for a in agents:
                    if (a, s.id) not in screen and screen_id(a, s.id) not in done:
                        yield a, s.id

        todo = Jobs(screening_jobs)
        self.skipped += len(agents) * len(samples) - len(todo)
        self.progress.phase("screening", len(todo))
        await self.executor.play(self, Phase(SCREENING, by_id, plan_by_name, models, providers,
                                             screen, sink, stop), todo, sink)
        if stop is not None and stop.is_set():
            return  # stopping: no test sets from a partial screening

        if scn.protocol.mode == "annotate":  # annotator-assist instead of feedback rounds
            await play_annotation(self, samples, screen, done, providers, sink, stop)
            return

        # 2. test sets, 3. feedback episodes
        jobs = self._feedback_jobs(samples, screen, plans, done)
        self.progress.phase("feedback", len(jobs))
        await self.executor.play(self, Phase(FEEDBACK, by_id, plan_by_name, models, providers,
                                             screen, sink, stop), jobs, sink)

    def _spawn_agents(self, system: ActorSystem, backends: dict[str, Backend]
                      ) -> tuple[dict[str, ModelActor], dict[str, FeedbackProviderActor]]:
        """The agents' actors: a model actor per screened agent, a provider actor each."""
        scn = self.scn
        agents = {n: a for n, a in scn.agents().items() if a.kind != "human"}  # not screened
        models = {n: system.spawn(ModelActor(n, backends[n], concurrency=agents[n]
                                             .concurrency)) for n in agents}
        providers = {p.name: system.spawn(make_provider(
            p.name, backends[p.name], max_rounds=scn.protocol.max_rounds,
            concurrency=p.concurrency)) for p in scn.providers}
        return models, providers

    def _load_screening(self, store: RunStore, done: EpisodeIdSet, agents: dict[str, Any],
                        by_id: dict[str, Sample]) -> dict[tuple[str, str], Response]:
        out: dict[tuple[str, str], Response] = {}
        for ep in store.done_with_prefix("screen/"):
            _, agent, sample_id = ep.split("/", 2)
            if agent not in agents or sample_id not in by_id:
                continue
            for m in store.messages(ep):
                if m["kind"] == "response":
                    payload = {k: v for k, v in m.items() if k not in ("seq", "kind")}
                    out[(agent, sample_id)] = Response(run_id=self.run_id, episode_id=ep,
                                                       **payload)
        return out

    def _feedback_jobs(self, samples: list[Sample], screen: ScreenMap,
                       plans: list[PolicyPlan], done: EpisodeIdSet) -> Jobs[FeedbackJob]:
        """The feedback episodes still to play, (receiver, provider, policy, sample id),
        cell by cell; the test sets are built here, the jobs made as they are taken."""
        scn = self.scn
        mode = scn.protocol.test_set
        cells: list[tuple[str, str, list[Sample]]] = []  # receiver, provider, test set

        humans = {p.name for p in scn.providers if p.kind == "human"}

        def correct(agent: str, s: Sample) -> bool | None:
            if agent in humans:
                return True  # a person is not screened: taken as competent on every item
            key = (agent, s.id)
            if key not in screen:
                return None  # screening failed: the item is left out of every cell
            answer = (screen.answer(key) if isinstance(screen, ScreenAnswers)
                      else screen[key].answer)
            return check_answer(answer, s.answer, s.answer_format)

        for rec in scn.receivers:
            wrong = [s for s in samples if correct(rec.name, s) is False]
            for prov in scn.providers:
                if mode == "all_wrong":
                    test = wrong
                elif mode == "shared":
                    test = [s for s in wrong
                            if all(correct(p.name, s) for p in scn.providers)]
                else:
                    test = [s for s in wrong if correct(prov.name, s)]
                if len(test) > len(wrong):  # the published study's flaw, made impossible
                    raise AssertionError(f"N_test {len(test)} > N_wrong {len(wrong)} for "
                                         f"{rec.name} x {prov.name}")
                cells.append((rec.name, prov.name, test))

        def jobs() -> Iterator[FeedbackJob]:
            for rec, prov, test in cells:
                for plan in plans:
                    for s in test:
                        if feedback_id(rec, prov, plan.name, s.id) not in done:
                            yield rec, prov, plan.name, s.id

        out = Jobs(jobs)
        self.skipped += sum(len(test) for _, _, test in cells) * len(plans) - len(out)
        return out

    async def _screen_episode(self, model: ModelActor, sample: Sample
                              ) -> tuple[EpisodeRecord, Response | None]:
        eid = screen_id(model.name, sample.id)
        env = InterFeedbackEnv(sample=sample, run_id=self.run_id, episode_id=eid,
                               episode_key="screen", receiver=model.name, seed=self.scn.seed,
                               max_rounds=0, first=self._first(sample))
        obs = env.reset()
        resp = await model.ask((obs, env.ask_context()))
        self.turns += 1
        rec = EpisodeRecord(episode_id=eid, run_id=self.run_id, kind="screen",
                            receiver=model.name, sample_id=sample.id, category=sample.category,
                            status="done", n_options=len(sample.answer_format.letters),
                            simulated=resp.simulated, retries=resp.usage.retries)
        try:
            step = await env.step(resp)
        except EpisodeFailed as exc:
            self.failed += 1
            rec.status, rec.error, rec.messages = "failed", exc.reason, (obs, resp)
            log.warning("episode.failed", episode=eid, reason=exc.reason)
            return rec, None
        self.played += 1
        rec.first_correct = rec.solved = step.grade.correct
        rec.first_unparsed = step.grade.unparsed
        rec.n_responses, rec.n_unparsed = 1, int(step.grade.unparsed)
        rec.prompt_tokens = resp.usage.prompt_tokens
        rec.completion_tokens = resp.usage.completion_tokens
        rec.latency_s = resp.latency_s
        rec.messages = (obs, resp, step.grade)
        return rec, resp

    async def _feedback_episode(self, receiver: ModelActor, provider: FeedbackProviderActor,
                                plan: PolicyPlan, sample: Sample, first: Response
                                ) -> EpisodeRecord:
        eid = feedback_id(receiver.name, provider.name, plan.name, sample.id)
        env = InterFeedbackEnv(sample=sample, run_id=self.run_id, episode_id=eid,
                               episode_key=f"{provider.name}/{plan.name}",
                               receiver=receiver.name, seed=self.scn.seed,
                               max_rounds=self.scn.protocol.max_rounds, provider=provider,
                               plan=plan, first=self._first(sample))
        obs = env.reset()
        resp = first.model_copy(update={"episode_id": eid, "run_id": self.run_id})
        messages: list[Any] = [obs, resp]
        rec = EpisodeRecord(episode_id=eid, run_id=self.run_id, kind="feedback",
                            receiver=receiver.name, provider=provider.name, policy=plan.name,
                            sample_id=sample.id, category=sample.category, status="done",
                            n_options=len(sample.answer_format.letters),
                            simulated=first.simulated)
        try:
            while True:
                step = await env.step(resp)
                messages.append(step.grade)
                rec.n_responses += 1
                rec.n_unparsed += int(step.grade.unparsed)
                rec.prompt_tokens += resp.usage.prompt_tokens
                rec.completion_tokens += resp.usage.completion_tokens
                rec.latency_s += resp.latency_s
                if step.done:
                    break
                fb = step.feedback
                assert fb is not None and step.observation is not None
                messages += [fb, step.observation]
                rec.n_feedback += 1
                rec.n_leaked += int(fb.leaked)
                rec.feedback_tokens += fb.usage.prompt_tokens + fb.usage.completion_tokens
                rec.feedback_completion_tokens += fb.usage.completion_tokens
                rec.feedback_retries += fb.usage.retries
                resp = await receiver.ask((step.observation, env.ask_context()))
                self.turns += 1
                rec.retries += resp.usage.retries
                messages.append(resp)
        except EpisodeFailed as exc:
            if isinstance(exc.__cause__, InfrastructureError):  # the provider gave up
                rec.feedback_retries += exc.__cause__.retries
            self.failed += 1
            rec.status, rec.error = "failed", exc.reason
            rec.messages = tuple(messages)
            log.warning("episode.failed", episode=eid, reason=exc.reason)
            return rec
        self.played += 1
        st = env.state
        rec.first_correct = False
        rec.first_unparsed = first.parse == "unparsed"
        rec.solved = st.solved
        rec.rounds = st.turn
        rec.corrected_round = st.turn if st.solved else None
        rec.messages = tuple(messages)
        return rec


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
    """Run (or resume) ``loaded`` into ``run_dir``.

    ``executor``: where the episodes play (default in this process; see
    :mod:`mmsim.runtime.executors` for Ray).

    With ``handle_signals`` (main thread only; the CLI sets it) the first SIGINT/SIGTERM
    stops the run cleanly (no new episodes, in-flight ones finish within
    :attr:`Runner.stop_grace_s`, the store is flushed, the run is marked ``interrupted``
    and :attr:`RunResult.interrupted` holds the signal); a second one exits at once.
    """
    return await Runner(loaded, Path(run_dir), progress=progress, store_enabled=store_enabled,
                        handle_signals=handle_signals, executor=executor).run()


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def default_run_dir(scn: _Named) -> Path:
    """``runs/<scenario name>``: where a scenario of any kind runs without ``--out``."""
    return Path("runs") / scn.name


__all__ = ["Progress", "RunResult", "Runner", "default_run_dir", "run_scenario"]
