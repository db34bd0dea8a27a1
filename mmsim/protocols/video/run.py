"""A ``kind: video`` run (played by the kernel): an evaluation pass (one reply per model and
validation item, greedy by default) and rollouts (G replies per model and prompt at a
temperature), each episode committed to the run's store when it ends.

Frames are sampled once per clip before play (the :class:`~mmsim.data.video.FrameCache`
keys them by the clip's sha256 and the frame recipe, in the run's ``assets/frames``), so
models, samples and reruns never decode a clip again. Episode ids and every draw are pure
functions of the scenario and the data: a rerun plays only what is missing, and its
metrics equal an uninterrupted run's. Infrastructure failures are recorded as failed
episodes (played again on resume), never scored.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from mmsim.actors.roles import AskContext
from mmsim.backends.base import Oracle
from mmsim.data.sample import Sample
from mmsim.data.video import FrameCache
from mmsim.errors import UserError
from mmsim.messages import ChatTurn, Envelope, Image, Observation, Part, Text, Video
from mmsim.protocols.video.data import LEVELS, TRAIN
from mmsim.protocols.video.export import export_rollouts
from mmsim.protocols.video.metrics import EP_EVAL, EP_ROLLOUT
from mmsim.protocols.video.rewards import accuracy_reward, answer_tag, format_reward
from mmsim.protocols.video.scenario import VideoScenario
from mmsim.runtime.pool import Jobs
from mmsim.runtime.protocol import Actors, Played, ProtocolRun, RunSetup
from mmsim.store import EpisodeRecord, RunStore

log = structlog.get_logger("mmsim.video")


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


class VideoRun(ProtocolRun[VideoScenario, list[Sample]]):
    """One video run in one process. A job is an episode id (every process plans the same
    units; frames come from the run's frame cache)."""

    def __init__(self, setup: RunSetup[list[Sample]]):
        super().__init__(setup)
        self.decodes = 0
        self.frames = self.sample_frames(self.data)
        try:
            self.units = plan(self.scn, self.data)
        except UserError as exc:
            if exc.where is not None:
                raise
            raise type(exc)(exc.message, where=self.loaded.where(
                *(exc.field or "rollouts").split(".")), field=exc.field) from None
        self.by_id = {u.episode_id: u for u in self.units}

    def sample_frames(self, items: list[Sample]) -> dict[str, tuple[Image, ...]]:
        """Every clip's frames (cached by content hash; decoded at most once)."""
        spec = self.scn.frames
        if spec.send != "images":
            return {}
        cache = FrameCache(self.setup.run_dir / "assets", spec)
        clips: dict[str, Video] = {}
        for it in items:
            for v in it.videos:
                clips.setdefault(v.sha256, v)
        progress = self.setup.progress
        progress.phase("sampling frames", len(clips))
        out: dict[str, tuple[Image, ...]] = {}
        for sha, v in clips.items():
            out[sha] = cache.frames(v)
            progress.advance()
        self.decodes = cache.decodes
        return out

    def manifest(self) -> dict[str, Any]:
        return {"frames": self.scn.frames.model_dump(mode="json")}

    def jobs(self, phase: str, done: Container[str], store: RunStore | None
             ) -> tuple[Jobs[str], int]:
        return Jobs.of(u.episode_id for u in self.units if u.episode_id not in done), \
            len(self.units)

    async def play(self, phase: str, job: str, actors: Actors) -> Played:
        u = self.by_id[job]
        scn = self.scn
        obs = observation(scn, u, self.frames, self.run_id)
        resp = await actors.models[u.model].ask(
            (obs, AskContext(oracle=Oracle(sample=u.item, episode_key=u.episode_id),
                             seed=scn.seed, temperature=u.temperature,
                             variant=f"s{u.sample_index}" if u.phase == "rollout" else "")))
        rec = EpisodeRecord(
            episode_id=u.episode_id, run_id=self.run_id,
            kind=EP_EVAL if u.phase == "eval" else EP_ROLLOUT, model=u.model,
            condition=u.phase, sample_id=u.item.id, category=u.item.category,
            status="done", n_responses=1,
            payload={"n_options": len(u.item.answer_format.letters),
                     "sample_index": u.sample_index},
            model_prompt_tokens=resp.usage.prompt_tokens,
            model_completion_tokens=resp.usage.completion_tokens, latency_s=resp.latency_s,
            model_retries=resp.usage.retries, simulated=resp.simulated)
        if resp.parse == "error":
            rec.status, rec.error, rec.messages = "failed", resp.error, (obs, resp)
            return Played(rec)
        rewards, reward = score(scn, resp.text, u.item.answer)
        tag = answer_tag(resp.text)
        n_frames = sum(1 for p in obs.conversation[0].parts if p.type != "text")
        res = VideoResult(
            run_id=self.run_id, episode_id=u.episode_id, turn=1, sender="env",
            phase=u.phase, model=u.model, item_id=u.item.id, level=u.item.category,
            sample_index=u.sample_index,
            group_id=f"{u.model}/{u.item.id}" if u.phase == "rollout" else "",
            gold=u.item.answer, answer=tag, rewards=rewards, reward=reward,
            temperature=u.temperature, n_frames=n_frames, with_video=bool(u.item.videos),
            prompt_tokens=resp.usage.prompt_tokens,
            completion_tokens=resp.usage.completion_tokens)
        rec.first_correct = rec.solved = rewards["accuracy"] >= 1.0
        rec.reward = reward
        rec.first_unparsed = tag is None
        rec.n_unparsed = int(tag is None)
        rec.messages = (obs, resp, res)
        return Played(rec)

    def finish(self, run_dir: Path) -> list[str]:
        """Export the rollouts for a trainer (``rollouts.export``)."""
        ro = self.scn.rollouts
        notes = []
        for fmt in (ro.export if ro is not None else []):
            dest = run_dir / f"rollouts.{fmt}"
            export_rollouts(run_dir, dest, fmt)
            notes.append(f"rollouts: {dest}")
        return notes


__all__ = ["EP_EVAL", "EP_ROLLOUT", "Unit", "VideoResult", "VideoRun",
           "observation", "plan", "score"]
