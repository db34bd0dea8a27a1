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
import platform
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog

import mmsim
from mmsim.actors import ActorSystem, FeedbackProviderActor, ModelActor
from mmsim.backends import BACKENDS, Backend
from mmsim.data import DATASETS, Sample
from mmsim.env import EpisodeFailed, InterFeedbackEnv, PolicyPlan, RoundPolicy
from mmsim.env.interfeedback import first_turn
from mmsim.errors import DataError
from mmsim.messages import ChatTurn, Response
from mmsim.policies import POLICIES
from mmsim.runtime.sink import EpisodeSink
from mmsim.scenario import LoadedScenario, Scenario
from mmsim.store import EpisodeRecord, RunStore
from mmsim.tasks.answers import check_answer

log = structlog.get_logger("mmsim.run")
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


def load_samples(loaded: LoadedScenario, cache_dir: Path) -> list[Sample]:
    spec = loaded.scenario.dataset
    loader = DATASETS.get(spec.name)
    samples = loader(spec.options, base_dir=loaded.base_dir, cache_dir=cache_dir,
                     limit=loaded.limit)
    if not samples:
        raise DataError("the dataset is empty", where=str(loaded.path), field="dataset")
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise DataError(f"duplicate sample id {s.id!r}", where=str(loaded.path),
                            field="dataset")
        seen.add(s.id)
    return samples


def build_backends(scn: Scenario) -> dict[str, Backend]:
    return {name: BACKENDS.get(spec.backend)(name, dict(spec.params))
            for name, spec in scn.agents().items()}


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


async def run_pool(jobs: Iterable[T], concurrency: int, fn: Callable[[T], Awaitable[None]]) -> None:
    """Run ``fn`` over ``jobs`` with at most ``concurrency`` in flight (backpressure).

    Workers start on demand: when a worker takes a job and every worker is busy, the pool
    grows (doubling, up to ``concurrency``). Jobs that never wait (zero-latency simulations)
    run on a handful of workers instead of paying for thousands of idle tasks; jobs that
    wait reach ``concurrency`` in flight within a few scheduler rounds.
    """
    it: Iterator[T] = iter(jobs)
    limit = max(1, concurrency)
    workers = busy = 0

    async def worker() -> None:
        nonlocal busy
        for job in it:
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

    def __init__(self, loaded: LoadedScenario, run_dir: Path, *, progress: Progress | None = None,
                 store_enabled: bool = True):
        self.loaded = loaded
        self.scn = loaded.scenario
        self.run_dir = Path(run_dir)
        self.progress = progress or Progress()
        self.store_enabled = store_enabled
        self.run_id = f"{self.scn.name}-{run_fingerprint(loaded)[:12]}"
        self.played = self.skipped = self.failed = self.turns = 0
        self._firsts: dict[str, ChatTurn] = {}  # sample id -> first user turn (built once)

    def _first(self, sample: Sample) -> ChatTurn:
        turn = self._firsts.get(sample.id)
        if turn is None:
            turn = self._firsts[sample.id] = first_turn(sample)
        return turn

    async def run(self) -> RunResult:
        t0 = time.perf_counter()
        scn = self.scn
        # Everything that can fail on user input happens before the store is touched.
        backends = build_backends(scn)
        plans = build_plans(scn)
        samples = load_samples(self.loaded, self.run_dir / "assets")
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
        store = RunStore.open(self.run_dir) if self.store_enabled else None
        try:
            resumed = False
            done: set[str] = set()
            if store is not None:
                resumed = store.begin_run(self.run_id, scn.name, run_fingerprint(self.loaded),
                                          scn.canonical(), manifest)
                done = store.done_episodes()
            log.info("run.start", run_id=self.run_id, run_dir=str(self.run_dir),
                     resumed=resumed, samples=len(samples), already_done=len(done))
            t_play = time.perf_counter()
            with gc_tuned():
                await self._play(samples, backends, plans, store, done)
            play_s = time.perf_counter() - t_play
            if store is not None:
                store.finish_run()
            counts = store.counts() if store is not None else {}
        finally:
            if store is not None:
                store.close()
        elapsed = time.perf_counter() - t0
        log.info("run.end", run_id=self.run_id, played=self.played, skipped=self.skipped,
                 failed=self.failed, elapsed_s=round(elapsed, 3))
        return RunResult(self.run_dir, self.run_id, resumed, self.played, self.skipped,
                         self.failed, elapsed, self.turns, play_s, counts)

    async def _play(self, samples: list[Sample], backends: dict[str, Backend],
                    plans: list[PolicyPlan], store: RunStore | None, done: set[str]) -> None:
        scn = self.scn
        by_id = {s.id: s for s in samples}
        agents = scn.agents()
        screen: dict[tuple[str, str], Response] = {}
        if store is not None:
            screen.update(self._load_screening(store, done, agents, by_id))
        async with ActorSystem() as system, EpisodeSink(store) as sink:
            models = {n: system.spawn(ModelActor(n, backends[n], concurrency=agents[n]
                                                 .concurrency)) for n in agents}
            providers = {p.name: system.spawn(FeedbackProviderActor(
                p.name, backends[p.name], concurrency=p.concurrency)) for p in scn.providers}

            # 1. screening
            todo = [(a, s) for a in agents for s in samples
                    if (a, s.id) not in screen and screen_id(a, s.id) not in done]
            self.skipped += len(agents) * len(samples) - len(todo)
            self.progress.phase("screening", len(todo))

            async def play_screen(job: tuple[str, Sample]) -> None:
                agent, sample = job
                rec, resp = await self._screen_episode(models[agent], sample)
                if resp is not None:
                    screen[(agent, sample.id)] = resp
                await sink.add(rec)
                self.progress.advance()

            await run_pool(todo, scn.run.concurrency, play_screen)

            # 2. test sets, 3. feedback episodes
            jobs = self._feedback_jobs(samples, screen, plans, done)
            self.progress.phase("feedback", len(jobs))

            async def play_feedback(job: tuple[str, str, PolicyPlan, Sample]) -> None:
                receiver, provider, plan, sample = job
                rec = await self._feedback_episode(models[receiver], providers[provider], plan,
                                                   sample, screen[(receiver, sample.id)])
                await sink.add(rec)
                self.progress.advance()

            await run_pool(jobs, scn.run.concurrency, play_feedback)

    def _load_screening(self, store: RunStore, done: set[str], agents: dict[str, Any],
                        by_id: dict[str, Sample]) -> dict[tuple[str, str], Response]:
        out: dict[tuple[str, str], Response] = {}
        for ep in done:
            if not ep.startswith("screen/"):
                continue
            _, agent, sample_id = ep.split("/", 2)
            if agent not in agents or sample_id not in by_id:
                continue
            for m in store.messages(ep):
                if m["kind"] == "response":
                    payload = {k: v for k, v in m.items() if k not in ("seq", "kind")}
                    out[(agent, sample_id)] = Response(run_id=self.run_id, episode_id=ep,
                                                       **payload)
        return out

    def _feedback_jobs(self, samples: list[Sample], screen: dict[tuple[str, str], Response],
                       plans: list[PolicyPlan], done: set[str]
                       ) -> list[tuple[str, str, PolicyPlan, Sample]]:
        scn = self.scn
        mode = scn.protocol.test_set
        jobs: list[tuple[str, str, PolicyPlan, Sample]] = []

        def correct(agent: str, s: Sample) -> bool | None:
            r = screen.get((agent, s.id))
            if r is None:
                return None  # screening failed: the item is left out of every cell
            return check_answer(r.answer, s.answer, s.answer_format)

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
                for plan in plans:
                    for s in test:
                        if feedback_id(rec.name, prov.name, plan.name, s.id) in done:
                            self.skipped += 1
                        else:
                            jobs.append((rec.name, prov.name, plan, s))
        return jobs

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
                            simulated=resp.simulated)
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
                resp = await receiver.ask((step.observation, env.ask_context()))
                self.turns += 1
                messages.append(resp)
        except EpisodeFailed as exc:
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


async def run_scenario(loaded: LoadedScenario, run_dir: str | Path, *,
                       progress: Progress | None = None,
                       store_enabled: bool = True) -> RunResult:
    """Run (or resume) ``loaded`` into ``run_dir``."""
    return await Runner(loaded, Path(run_dir), progress=progress,
                        store_enabled=store_enabled).run()


def default_run_dir(scn: Scenario) -> Path:
    return Path("runs") / scn.name


__all__ = ["Progress", "RunResult", "Runner", "default_run_dir", "run_scenario"]
