"""Runs a ``kind: video`` scenario: an evaluation pass (one reply per model and validation
item, greedy by default) and rollouts (G replies per model and prompt at a temperature),
each episode committed to the run's store when it ends.

Frames are sampled once per clip before play (the :class:`~mmsim.data.video.FrameCache`
keys them by the clip's sha256 and the frame recipe, in the run's ``assets/frames``), so
models, samples and reruns never decode a clip again. Episode ids and every draw are pure
functions of the scenario and the data: a rerun plays only what is missing, and its
metrics equal an uninterrupted run's. Infrastructure failures are recorded as failed
episodes (played again on resume), never scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from mmsim.actors import ActorSystem, ModelActor
from mmsim.actors.roles import AskContext
from mmsim.backends import BACKENDS, Backend
from mmsim.backends.base import Oracle
from mmsim.data.sample import Sample
from mmsim.data.video import FrameCache
from mmsim.errors import DataError, UserError
from mmsim.messages import ChatTurn, Envelope, Image, Observation, Part, Text, Video
from mmsim.protocols.video.data import LEVELS, TRAIN, VIDEO_DATASETS
from mmsim.protocols.video.rewards import accuracy_reward, answer_tag, format_reward
from mmsim.protocols.video.scenario import LoadedVideo, VideoScenario
from mmsim.protocols.video.sim import VideoSim, make_video_sim
from mmsim.runtime.protocol_run import (
    base_manifest,
    check_kind_backends,
    in_scenario,
    run_id,
    run_store,
)
from mmsim.runtime.runner import (
    Progress,
    RunResult,
    dataset_fingerprint,
    default_run_dir,
    gc_tuned,
    run_pool,
)
from mmsim.runtime.sink import EpisodeSink
from mmsim.store import EpisodeRecord, RunStore, run_dir_lock

log = structlog.get_logger("mmsim.video")

EP_EVAL = "video_eval"
EP_ROLLOUT = "video_rollout"


class VideoResult(Envelope):
    """The scored reply of one video episode (stored with its messages)."""

    kind: Literal["video_result"] = "video_result"
    phase: Literal["eval", "rollout"]
    model: str
    item_id: str
    level: str
    sample_index: int = 0
    group_id: str = ""
    gold: str
    answer: str | None  # the content of <answer>, None without the tag
    rewards: dict[str, float]
    reward: float
    temperature: float | None = None
    n_frames: int = 0
    with_video: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Unit:
    episode_id: str
    phase: Literal["eval", "rollout"]
    model: str
    item: Sample
    sample_index: int
    temperature: float | None


def load_data(loaded: LoadedVideo, cache_dir: Path) -> list[Sample]:
    scn = loaded.scenario
    spec = scn.dataset
    try:
        items = VIDEO_DATASETS.get(spec.name)(spec.options, base_dir=loaded.base_dir,
                                              cache_dir=cache_dir, limit=loaded.limit,
                                              seed=scn.seed)
    except UserError as exc:
        if exc.field in spec.options and exc.where and exc.where.startswith("dataset "):
            raise type(exc)(exc.message, where=str(loaded.path),
                            field=f"dataset.{exc.field}") from None
        raise
    if not items:
        raise DataError("the dataset is empty", where=str(loaded.path), field="dataset")
    return items


def check_agents(loaded: LoadedVideo) -> None:
    """Every model's params as its backend takes them (``mmsim validate``, and the run
    before it builds anything)."""
    check_kind_backends(loaded, {"models": loaded.scenario.models}, VideoSim)


def build_backends(scn: VideoScenario) -> dict[str, Backend]:
    """``backend: sim`` agents get the video behaviour (:mod:`.sim`)."""
    return {a.name: (make_video_sim if a.backend == "sim" else BACKENDS.get(a.backend))(
        a.name, dict(a.params)) for a in scn.models}


def plan(scn: VideoScenario, items: list[Sample]) -> list[Unit]:
    """Evaluation episodes (validation items) then rollout episodes (G per prompt)."""
    units: list[Unit] = []
    validation = [it for it in items if it.category in LEVELS]
    for m in scn.models:
        units += [Unit(f"video/eval/{m.name}/{it.id}", "eval", m.name, it, 0,
                       scn.eval.temperature) for it in validation]
    ro = scn.rollouts
    if ro is not None:
        if ro.split == "training":
            prompts = [it for it in items if it.category == TRAIN]
        elif ro.split == "validation":
            prompts = validation
        else:
            prompts = list(items)
        if not prompts:
            raise UserError(f"rollouts.split is {ro.split!r} but the dataset has no such "
                            "items (seed-bench-r1: set dataset.training, e.g. "
                            "training_6k.jsonl), or use rollouts.split: validation, or turn "
                            "rollouts off with rollouts: null", field="rollouts.split")
        prompts = prompts[:ro.max_items] if ro.max_items else prompts
        for m in scn.models:
            units += [Unit(f"video/roll/{m.name}/{it.id}/s{j}", "rollout", m.name, it, j,
                           ro.temperature) for it in prompts for j in range(ro.samples)]
    return units


def observation(scn: VideoScenario, unit: Unit, frames: dict[str, tuple[Image, ...]],
                run_id: str) -> Observation:
    """The published order: the clip (frames, or the video), the current observation, then
    the prompt. Identical for every sample of a prompt (byte-identical request prefixes)."""
    item = unit.item
    parts: list[Part] = []
    for v in item.videos:
        parts += list(frames[v.sha256]) if scn.frames.send == "images" else [v]
    parts += list(item.images)
    parts.append(Text(text=scn.prompt.format(problem=item.question)))
    return Observation(run_id=run_id, episode_id=unit.episode_id, turn=0, sender="env",
                       conversation=(ChatTurn(role="user", parts=tuple(parts)),),
                       answer_format=item.answer_format)


def score(scn: VideoScenario, text: str, gold: str) -> tuple[dict[str, float], float]:
    rewards = {"accuracy": accuracy_reward(text, gold), "format": format_reward(text)}
    return rewards, sum(rewards[r] for r in scn.rewards)


class VideoRunner:
    """Plays one video scenario into one run directory."""

    def __init__(self, loaded: LoadedVideo, run_dir: Path, *,
                 progress: Progress | None = None):
        self.loaded = loaded
        self.scn = loaded.scenario
        self.run_dir = Path(run_dir)
        self.progress = progress or Progress()
        self.run_id = run_id(loaded)
        self.played = self.skipped = self.failed = 0
        self.decodes = 0

    def sample_frames(self, items: list[Sample]) -> dict[str, tuple[Image, ...]]:
        """Every clip's frames (cached by content hash; decoded at most once)."""
        if self.scn.frames.send != "images":
            return {}
        spec = self.scn.frames
        cache = FrameCache(self.run_dir / "assets", spec)
        clips: dict[str, Video] = {}
        for it in items:
            for v in it.videos:
                clips.setdefault(v.sha256, v)
        self.progress.phase("sampling frames", len(clips))
        out: dict[str, tuple[Image, ...]] = {}
        for sha, v in clips.items():
            out[sha] = cache.frames(v)
            self.progress.advance()
        self.decodes = cache.decodes
        return out

    async def run(self) -> RunResult:
        t0 = time.perf_counter()
        scn = self.scn
        check_agents(self.loaded)  # names the file and the field, like mmsim validate
        with in_scenario(self.loaded):
            backends = build_backends(scn)
            items = load_data(self.loaded, self.run_dir / "assets")
            frames = self.sample_frames(items)
        with in_scenario(self.loaded):
            units = plan(scn, items)
        levels = sorted({it.category for it in items})
        manifest = base_manifest("video", self.loaded, backends, {
            "name": scn.dataset.name, "n_samples": len(items), "levels": levels,
            "n_clips": len({v.sha256 for it in items for v in it.videos}),
            "fingerprint": dataset_fingerprint(items)})
        manifest["frames"] = scn.frames.model_dump(mode="json")
        with run_store(self.run_dir, self.loaded, manifest) as (store, resumed, done):
            todo = [u for u in units if u.episode_id not in done]
            self.skipped = len(units) - len(todo)
            log.info("run.start", run_id=self.run_id, episodes=len(units), todo=len(todo))
            t_play = time.perf_counter()
            with gc_tuned():
                async with ActorSystem() as system:
                    models = {m.name: system.spawn(ModelActor(m.name, backends[m.name],
                                                              concurrency=m.concurrency))
                              for m in scn.models}
                    await self._play(todo, models, frames, store)
            play_s = time.perf_counter() - t_play
            store.finish_run()
            counts = store.counts()
        if scn.rollouts is not None and scn.rollouts.export:
            from mmsim.protocols.video.export import export_rollouts

            for fmt in scn.rollouts.export:
                export_rollouts(self.run_dir, self.run_dir / f"rollouts.{fmt}", fmt)
        return RunResult(self.run_dir, self.run_id, resumed, self.played, self.skipped,
                         self.failed, time.perf_counter() - t0, self.played, play_s, counts)

    async def _play(self, todo: list[Unit], models: dict[str, ModelActor],
                    frames: dict[str, tuple[Image, ...]], store: RunStore) -> None:
        scn = self.scn
        async with EpisodeSink(store) as sink:
            self.progress.phase("episodes", len(todo))

            async def play(u: Unit) -> None:
                obs = observation(scn, u, frames, self.run_id)
                resp = await models[u.model].ask(
                    (obs, AskContext(oracle=Oracle(sample=u.item, episode_key=u.episode_id),
                                     seed=scn.seed, temperature=u.temperature)))
                rec = EpisodeRecord(
                    episode_id=u.episode_id, run_id=self.run_id,
                    kind=EP_EVAL if u.phase == "eval" else EP_ROLLOUT, receiver=u.model,
                    policy=u.phase, sample_id=u.item.id, category=u.item.category,
                    status="done", n_responses=1, n_options=len(u.item.answer_format.letters),
                    prompt_tokens=resp.usage.prompt_tokens,
                    completion_tokens=resp.usage.completion_tokens, latency_s=resp.latency_s,
                    retries=resp.usage.retries, simulated=resp.simulated)
                if resp.parse == "error":
                    self.failed += 1
                    rec.status, rec.error, rec.messages = "failed", resp.error, (obs, resp)
                    await sink.add(rec)
                    self.progress.advance()
                    return
                rewards, reward = score(scn, resp.text, u.item.answer)
                tag = answer_tag(resp.text)
                n_frames = sum(1 for p in obs.conversation[0].parts if p.type != "text")
                res = VideoResult(
                    run_id=self.run_id, episode_id=u.episode_id, turn=1, sender="env",
                    phase=u.phase, model=u.model, item_id=u.item.id, level=u.item.category,
                    sample_index=u.sample_index,
                    group_id=f"{u.model}/{u.item.id}" if u.phase == "rollout" else "",
                    gold=u.item.answer, answer=tag, rewards=rewards, reward=reward,
                    temperature=u.temperature, n_frames=n_frames,
                    with_video=bool(u.item.videos),
                    prompt_tokens=resp.usage.prompt_tokens,
                    completion_tokens=resp.usage.completion_tokens)
                rec.first_correct = rec.solved = rewards["accuracy"] >= 1.0
                rec.first_unparsed = tag is None
                rec.n_unparsed = int(tag is None)
                rec.messages = (obs, resp, res)
                self.played += 1
                await sink.add(rec)
                self.progress.advance()

            await run_pool(todo, scn.run.concurrency, play)


async def run_video(loaded: LoadedVideo, run_dir: str | Path, *,
                    progress: Progress | None = None) -> RunResult:
    """Run (or resume) a video scenario into ``run_dir``."""
    with run_dir_lock(run_dir):  # one writer per run directory
        return await VideoRunner(loaded, Path(run_dir), progress=progress).run()


__all__ = ["EP_EVAL", "EP_ROLLOUT", "Unit", "VideoResult", "VideoRunner", "default_run_dir",
           "observation", "plan", "run_video", "score"]
