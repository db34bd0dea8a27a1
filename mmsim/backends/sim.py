"""``sim``: parametric simulated agents.

A sim agent is a small generative model of a model's behaviour, seeded per call so runs are
reproducible whatever the concurrency:

* first answer: correct with probability ``memorized + (1 - memorized) * sigmoid(a * (skill -
  difficulty))`` (a one-parameter item-response model with discrimination ``a``);
* after feedback of kind *k*: takes the feedback up (answers correctly) with probability
  ``uptake[k]`` (``misleading`` is used instead when a provider's detailed feedback was
  unhelpful); otherwise re-attempts: on multiple choice it eliminates options already marked
  wrong with probability ``elimination`` and picks among the rest, else it repeats itself;
* with probability ``format_noise`` the reply carries no parseable answer;
* latency drawn from a log-normal with median ``latency_ms``.

As a provider (``purpose="feedback"``) it writes detailed feedback that is helpful with
probability ``feedback_quality`` and names the answer with probability ``leak_rate``.

Every completion is marked ``simulated`` and every report says so.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

import anyio
import structlog
from pydantic import BaseModel, ConfigDict, Field

from mmsim.backends.base import Backend, Completion, GenerateRequest, Oracle, backend
from mmsim.data.sample import Sample
from mmsim.errors import UserError, validated
from mmsim.messages import Usage
from mmsim.tasks.answers import extract_answer

log = structlog.get_logger("mmsim.sim")

DEFAULT_UPTAKE = {"binary": 0.25, "detailed": 0.40, "reveal": 0.92, "none": 0.05,
                  "misleading": 0.10}


class SimParams(BaseModel):
    """Parameters of a simulated agent (``params:`` of a ``backend: sim`` agent)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    skill: float = 0.0
    discrimination: float = Field(1.0, gt=0)
    memorized: float = Field(0.0, ge=0, le=1)
    uptake: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_UPTAKE))
    uptake_decay: float = Field(1.0, gt=0, le=1)
    elimination: float = Field(0.5, ge=0, le=1)
    format_noise: float = Field(0.02, ge=0, le=1)
    feedback_quality: float = Field(0.8, ge=0, le=1)
    leak_rate: float = Field(0.0, ge=0, le=1)
    latency_ms: float = Field(0.0, ge=0)
    latency_sigma: float = Field(0.3, ge=0)
    tokens_per_char: float = Field(0.25, ge=0)
    #: Difficulty by sample id, overriding the sample's own (fitted twins carry their items'
    #: estimated difficulties: ``mmsim fit --difficulty fit``, docs/twins.md).
    item_difficulty: dict[str, float] = Field(default_factory=dict)


def seeded_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded by a stable hash of ``parts`` (not Python's salted hash)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


_ANSWER_TEMPLATES = (
    "Looking at the figure, the answer is {a}.",
    "Answer: {a}",
    "Let me work through it step by step. The quantities in the image give {a}.\nAnswer: {a}",
    "<answer>{a}</answer>",
    "The final answer is \\boxed{{{a}}}.",
)
_UNPARSEABLE = (
    "I am not able to determine this from the image.",
    "The figure is unclear; it could be several of the choices.",
    "Let me think about the figure again carefully before answering.",
)


def _wrong_numeric(truth: str, rng: random.Random) -> str:
    try:
        v = float(truth.replace(",", ""))
    except ValueError:
        return truth + " (approx.)" if rng.random() < 0.5 else "unknown"
    step = max(1.0, abs(v) * rng.choice((0.1, 0.2, 0.5)))
    w = v + rng.choice((-1, 1)) * step * rng.randint(1, 3)
    if w == v:
        w = v + 1
    return str(int(w)) if float(w).is_integer() and v.is_integer() else f"{w:.3g}"


class SimBackend(Backend):
    """A simulated agent (see the module docstring)."""

    simulated = True
    # a simulation neither fails nor is cached (its replies follow the oracle, which is
    # not part of the request): the agent layer adds nothing
    manages_retries = manages_cache = True

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        self.p = self.check_params(name, params)
        self._uptake = {**DEFAULT_UPTAKE, **self.p.uptake}
        self._warned: set[str] = set()

    def _uptake_of(self, kind: str) -> float:
        """The uptake of a feedback kind: its own entry in ``uptake``, else the
        ``uptake.default`` entry, else binary's (a custom kind with neither is logged once
        per agent, since the sim then treats it as binary feedback; docs/sim.md)."""
        if kind in self._uptake:
            return self._uptake[kind]
        if "default" in self._uptake:
            return self._uptake["default"]
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("sim.unknown_feedback_kind", agent=self.name, kind=kind,
                        uses="binary", fix=f"set params.uptake.{kind} (or uptake.default)")
        return self._uptake["binary"]

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any]) -> SimParams:
        return validated(SimParams, params, label="sim params: ", field=f"{name}.params")

    def describe(self) -> dict[str, Any]:
        return {"backend": "sim", "simulated": True, "params": self.p.model_dump()}

    async def generate(self, request: GenerateRequest) -> Completion:
        oracle = request.oracle
        if oracle is None:
            raise UserError(f"sim agent {self.name!r} needs an oracle (ground truth) to simulate")
        rng = seeded_rng(request.seed, self.name, oracle.episode_key, oracle.sample.id,
                         len(oracle.responses), request.purpose)
        meta: dict[str, Any] = {}
        if request.purpose == "feedback":
            text, meta = self._feedback_text(oracle, rng)
        elif request.purpose == "judge":
            text = f"Score: {rng.randint(0, 5)}"
        elif request.purpose == "extract":
            text = self._extract_text(oracle)
        else:
            text = self._answer_text(oracle, rng)
        latency = 0.0
        if self.p.latency_ms > 0:
            latency = self.p.latency_ms / 1000 * math.exp(rng.gauss(0.0, self.p.latency_sigma))
            del rng  # its 2.5 KB of generator state is not held while waiting
            await anyio.sleep(latency)
        prompt_chars = sum(len(p.text) for t in request.messages for p in t.parts
                           if p.type == "text")
        usage = Usage(prompt_tokens=int(prompt_chars * self.p.tokens_per_char) + 1,
                      completion_tokens=int(len(text) * self.p.tokens_per_char) + 1)
        return Completion(text=text, usage=usage, latency_s=latency, simulated=True, meta=meta)

    # -- answering -------------------------------------------------------------------
    def _answer_text(self, oracle: Oracle, rng: random.Random) -> str:
        sample: Sample = oracle.sample
        if rng.random() < self.p.format_noise:
            return rng.choice(_UNPARSEABLE)
        answer = self._choose_answer(sample, oracle, rng)
        return rng.choice(_ANSWER_TEMPLATES).format(a=answer)

    def _choose_answer(self, sample: Sample, oracle: Oracle, rng: random.Random) -> str:
        p = self.p
        fmt = sample.answer_format
        truth = sample.answer
        difficulty = p.item_difficulty.get(
            sample.id, sample.difficulty if sample.difficulty is not None else 0.0)
        previous = [r.answer for r in oracle.responses if r.answer is not None]
        if not oracle.feedback:  # first answer
            p_correct = p.memorized + (1 - p.memorized) * sigmoid(
                p.discrimination * (p.skill - difficulty))
            if rng.random() < p_correct:
                return truth
            return self._wrong(sample, rng, exclude=())
        last = oracle.feedback[-1]
        kind = last.feedback_kind
        if kind == "detailed" and last.meta.get("sim_helpful") is False:
            kind = "misleading"
        up = self._uptake_of(kind)
        up *= p.uptake_decay ** (len(oracle.feedback) - 1)
        if rng.random() < up:
            return truth
        if fmt.kind == "choice" and rng.random() < p.elimination:
            told_wrong = {a for a in previous if a != truth}
            remaining = [x for x in fmt.letters if x not in told_wrong]
            return rng.choice(remaining) if remaining else truth
        if previous and rng.random() < 0.5:
            return previous[-1]
        return self._wrong(sample, rng, exclude=())

    @staticmethod
    def _wrong(sample: Sample, rng: random.Random, exclude: tuple[str, ...]) -> str:
        fmt = sample.answer_format
        if fmt.kind == "choice":
            wrong = [x for x in fmt.letters if x != sample.answer and x not in exclude]
            return rng.choice(wrong) if wrong else sample.answer
        return _wrong_numeric(sample.answer, rng)

    @staticmethod
    def _extract_text(oracle: Oracle) -> str:
        """As a model-based extractor: reads the reply under extraction (the oracle's last
        response) the way the lenient extractor does, or says there is none."""
        reply = oracle.responses[-1].text if oracle.responses else ""
        answer = extract_answer(reply, oracle.sample.answer_format, mode="lenient")
        return f"Answer: {answer if answer is not None else 'none'}"

    # -- giving feedback -------------------------------------------------------------
    def _feedback_text(self, oracle: Oracle, rng: random.Random) -> tuple[str, dict[str, Any]]:
        sample: Sample = oracle.sample
        given = oracle.responses[-1].answer if oracle.responses else None
        given_s = f"'{given}'" if given is not None else "your answer"
        helpful = rng.random() < self.p.feedback_quality
        if helpful:
            focus = {"counting": "count each object of the asked colour and shape once",
                     "chart": "read the bar heights against the axis ticks",
                     "math": "re-check which quantities the figure labels and what is asked"}
            hint = focus.get(sample.category, "re-read what the question asks for")
            text = f"{given_s} is not correct. Look again at the image and {hint}."
        else:
            text = (f"{given_s} is not correct. The figure may not be drawn to scale; "
                    "consider a different interpretation of the question.")
        if rng.random() < self.p.leak_rate:
            text += f" The correct answer is {sample.answer_text}."
        return text, {"sim_helpful": helpful}


@backend("sim", cls=SimBackend)
def make_sim(name: str, params: dict[str, Any]) -> Backend:
    """Parametric simulated agent (IRT skill, feedback uptake, elimination, noise, latency)."""
    return SimBackend(name, params)
