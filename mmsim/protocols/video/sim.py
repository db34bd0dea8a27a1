"""Simulated models of the video protocol (``backend: sim`` in a ``kind: video`` scenario).

On item ``i`` of level ``l`` (L1, L2, L3 or ``train``, which counts as L1) a sim model is
right with probability ``p = c + (1 - c) * sigmoid(discrimination * (skill + level_skill[l]
- d_i))`` where ``d_i`` is the item's difficulty and ``c = 1/4`` the chance of a guess.

* **Greedy** (temperature 0 or unset): the answer is a pure function of (model, item): right
  when a seeded uniform ``u(model, item) < p`` — the same reply every time it is asked.
* **Sampling** at temperature ``T > 0``: each sample is right with ``sigmoid(logit(p) /
  T)`` independently (seeded by the episode key, so a rerun draws the same samples). Wrong
  answers pick one of the other three letters uniformly.

The reply follows the published format ``<think>…</think><answer>X.</answer>`` with
probability ``format_rate``; otherwise it is, half the time each, an ``<answer>`` without
the ``<think>`` part (accuracy still counts, format reward 0) or free text without tags
("The answer is X.", accuracy reward 0: the tag is what the rule reads).
A post-trained model is typically a higher ``skill``, smaller level gaps (the paper's RL
model generalizes better to L2/L3) and a ``format_rate`` near 1.
"""

from __future__ import annotations

import math
import random
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from mmsim.backends.base import Backend, Completion, GenerateRequest
from mmsim.backends.sim import seeded_rng, sigmoid
from mmsim.data.sample import Sample
from mmsim.errors import UserError, validated
from mmsim.messages import Usage


class VideoSimParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    skill: float = 0.5
    discrimination: float = Field(1.5, gt=0)
    level_skill: dict[str, float] = Field(default_factory=lambda: {"L2": -0.5, "L3": -1.0})
    format_rate: float = Field(0.9, ge=0, le=1)
    latency_ms: float = Field(0.0, ge=0)
    latency_sigma: float = Field(0.3, ge=0)
    tokens_per_char: float = Field(0.25, ge=0)
    tokens_per_frame: int = Field(64, ge=0)


class VideoSim(Backend):
    """A simulated video model (see the module docstring)."""

    simulated = True
    # a simulation neither fails nor is cached (its replies follow the oracle, which is
    # not part of the request): the agent layer adds nothing
    manages_retries = manages_cache = True

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        self.p = self.check_params(name, params)

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any]) -> VideoSimParams:
        return validated(VideoSimParams, params, label="sim params: ",
                         field=f"{name}.params")

    def describe(self) -> dict[str, Any]:
        return {"backend": "sim", "simulated": True, "behaviour": "video",
                "params": self.p.model_dump()}

    def p_correct(self, item: Sample) -> float:
        level = item.category if item.category in ("L2", "L3") else "L1"
        d = item.difficulty if item.difficulty is not None else 0.0
        skill = self.p.skill + self.p.level_skill.get(level, 0.0)
        return 0.25 + 0.75 * sigmoid(self.p.discrimination * (skill - d))

    async def generate(self, request: GenerateRequest) -> Completion:
        oracle = request.oracle
        if oracle is None:
            raise UserError(f"sim agent {self.name!r} needs an oracle to simulate")
        item = oracle.sample
        p = self.p_correct(item)
        t = request.temperature or 0.0
        if t <= 0:  # greedy: the same answer whenever this item is asked
            rng = seeded_rng(request.seed, self.name, "greedy", item.id)
            right = rng.random() < p
        else:
            rng = seeded_rng(request.seed, self.name, oracle.episode_key, "sample")
            logit = math.log(p / (1 - p)) if 0 < p < 1 else (50.0 if p >= 1 else -50.0)
            right = rng.random() < sigmoid(logit / t)
        text = self._reply(item, right, rng)
        latency = 0.0
        if self.p.latency_ms > 0:
            latency = self.p.latency_ms / 1000 * math.exp(rng.gauss(0.0, self.p.latency_sigma))
            del rng  # its 2.5 KB of generator state is not held while waiting
            await anyio.sleep(latency)
        frames = sum(1 for turn in request.messages for part in turn.parts
                     if part.type != "text")
        chars = sum(len(part.text) for turn in request.messages for part in turn.parts
                    if part.type == "text")
        usage = Usage(prompt_tokens=int(chars * self.p.tokens_per_char)
                      + frames * self.p.tokens_per_frame + 1,
                      completion_tokens=int(len(text) * self.p.tokens_per_char) + 1)
        return Completion(text=text, usage=usage, latency_s=latency, simulated=True)

    def _reply(self, item: Sample, right: bool, rng: random.Random) -> str:
        letters = item.answer_format.letters
        letter = item.answer if right else rng.choice([x for x in letters if x != item.answer])
        option = item.answer_format.options[letters.index(letter)]
        style = rng.random()
        if style < self.p.format_rate:
            return (f"<think>Following the motion in the frames and the current view, "
                    f"{option}.</think>\n<answer>{letter}.</answer>")
        if style < self.p.format_rate + (1 - self.p.format_rate) / 2:
            return f"<answer>{letter}.</answer>"
        return f"The answer is {letter}. {option}"


def make_video_sim(name: str, params: dict[str, Any]) -> Backend:
    """The video behaviour of ``backend: sim``."""
    return VideoSim(name, params)


__all__ = ["VideoSim", "VideoSimParams", "make_video_sim"]
