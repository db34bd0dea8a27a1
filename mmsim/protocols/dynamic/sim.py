"""Simulated agents of dynamic evaluation (``backend: sim`` in a ``kind: dynamic`` scenario).

**Models.** On item ``i`` with difficulty ``d_i`` and task family ``f``, a sim model *knows*
the answer with probability ``k = sigmoid(discrimination * (skill + family_skill[f] -
forgetting * memorized - d_i))`` and otherwise guesses (right with the family's chance
rate: 1/k options, 1/2 for yes/no, 0 for open outputs). A right open output is a
paraphrase of the reference; a wrong one is the reference with one or two facts corrupted
(object, attribute, count, action) — so the judge has real content to score.

**Contamination.** ``memorized`` is the share of test items the model has memorized *in
the T0 format only*: on those items the T0 (``qa``) reply is the right answer whatever the
skill, and nothing else changes — the memorized string does not help captioning, posing,
verifying, counting, describing-then-answering or eliminating options. ``forgetting``
(default 0) is the general skill, in logits per unit of ``memorized``, that the memorizing
model lost (it spent capacity memorizing): with ``forgetting > 0`` a contaminated model is
*lower* than its base on every other family, as the paper's fine-tuned models are; with 0
it is equal there (up to noise). Which items are memorized is a seeded per-model draw.

**Judges.** ``mode: honest`` (default): the raw score is ``F1 ** strictness + noise``,
where ``F1`` is the overlap of the canonical content words (objects, attributes, counts,
actions; numbers as digits; synonyms mapped) of the output and the reference
(:func:`~mmsim.protocols.dynamic.perturb.overlap_f1`), ``noise ~ N(0, noise)``, clipped to
[0, 1] and rounded to the 0..scale integer a real judge writes ("Score: N"). Paraphrases
thus score high and corruptions low, with realistic overlap. ``mode: random``: a uniform
integer, whatever the output — its AUROC is about 0.5 and the gate refuses it.
``format_noise``: a verdict without a score (retried, then recorded as unparsed).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from mmsim.backends.base import Backend, Completion, GenerateRequest
from mmsim.backends.sim import seeded_rng, sigmoid
from mmsim.data.sample import Sample
from mmsim.errors import UserError, validated
from mmsim.messages import Usage
from mmsim.protocols.dynamic.families import TASK_FAMILIES, TaskInstance
from mmsim.protocols.dynamic.perturb import overlap_f1


@dataclass(frozen=True)
class DynView:
    """What a simulated model may look at (travels in the oracle's ``meta["dyn_view"]``)."""

    item: Sample
    instance: TaskInstance


class DynamicSimParams(BaseModel):
    """Parameters of a simulated model or judge in a dynamic-evaluation scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    # models
    skill: float = 1.0
    discrimination: float = Field(1.5, gt=0)
    memorized: float = Field(0.0, ge=0, le=1)
    forgetting: float = Field(0.0, ge=0)
    family_skill: dict[str, float] = Field(default_factory=dict)
    # judges
    mode: Literal["honest", "random"] = "honest"
    noise: float = Field(0.1, ge=0)
    strictness: float = Field(4.0, gt=0)
    # both
    format_noise: float = Field(0.01, ge=0, le=1)
    latency_ms: float = Field(0.0, ge=0)
    latency_sigma: float = Field(0.3, ge=0)
    tokens_per_char: float = Field(0.25, ge=0)


_UNPARSEABLE = ("I am not sure what to make of this image.",
                "The image is unclear; I would rather not commit to an answer.")
_BAD_VERDICT = ("The output is partly right.", "Hard to say; it depends on the reading.")


class DynamicSim(Backend):
    """A simulated model or judge for dynamic evaluation (see the module docstring)."""

    simulated = True
    # a simulation neither fails nor is cached (its replies follow the oracle, which is
    # not part of the request): the agent layer adds nothing
    manages_retries = manages_cache = True

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        self.p = self.check_params(name, params)

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any]) -> DynamicSimParams:
        return validated(DynamicSimParams, params, label="sim params: ",
                         field=f"{name}.params")

    def describe(self) -> dict[str, Any]:
        return {"backend": "sim", "simulated": True, "behaviour": "dynamic",
                "params": self.p.model_dump()}

    def memorized(self, item_id: str) -> bool:
        """Whether this model memorized ``item_id`` (in the T0 format)."""
        return self.p.memorized > 0 and seeded_rng(
            self.name, "memorized", item_id).random() < self.p.memorized

    def p_correct(self, item: Sample, inst: TaskInstance) -> float:
        p = self.p
        if inst.family == "qa" and self.memorized(item.id):
            return 1.0
        d = item.difficulty if item.difficulty is not None else 0.0
        skill = p.skill + p.family_skill.get(inst.family, 0.0) - p.forgetting * p.memorized
        know = sigmoid(p.discrimination * (skill - d))
        return know + (1 - know) * inst.chance

    async def generate(self, request: GenerateRequest) -> Completion:
        oracle = request.oracle
        if oracle is None:
            raise UserError(f"sim agent {self.name!r} needs an oracle to simulate")
        rng = seeded_rng(request.seed, self.name, oracle.episode_key, request.purpose)
        if request.purpose == "judge":
            text = self._verdict(oracle.sample.meta.get("dyn_judge") or {}, rng)
        else:
            view = oracle.sample.meta.get("dyn_view")
            if not isinstance(view, DynView):
                raise UserError(f"sim agent {self.name!r} needs a dynamic-evaluation oracle")
            text = self._answer(view, rng)
        latency = 0.0
        if self.p.latency_ms > 0:
            latency = self.p.latency_ms / 1000 * math.exp(rng.gauss(0.0, self.p.latency_sigma))
            del rng  # its 2.5 KB of generator state is not held while waiting
            await anyio.sleep(latency)
        prompt_chars = sum(len(p.text) for t in request.messages for p in t.parts
                           if p.type == "text")
        usage = Usage(prompt_tokens=int(prompt_chars * self.p.tokens_per_char) + 1,
                      completion_tokens=int(len(text) * self.p.tokens_per_char) + 1)
        return Completion(text=text, usage=usage, latency_s=latency, simulated=True)

    def _answer(self, view: DynView, rng: random.Random) -> str:
        if rng.random() < self.p.format_noise:
            return rng.choice(_UNPARSEABLE)
        correct = rng.random() < self.p_correct(view.item, view.instance)
        fam = TASK_FAMILIES.get(view.instance.family)
        return fam.sim_output(view.item, view.instance, correct, rng)

    def _verdict(self, j: dict[str, Any], rng: random.Random) -> str:
        p = self.p
        scale = int(j.get("scale", 5))
        if rng.random() < p.format_noise:
            return rng.choice(_BAD_VERDICT)
        if p.mode == "random":
            return f"Score: {rng.randint(0, scale)}\nReason: (random judge)"
        f1 = overlap_f1(str(j.get("output", "")), str(j.get("reference", "")))
        x = min(1.0, max(0.0, f1 ** p.strictness + rng.gauss(0.0, p.noise)))
        return (f"Score: {round(x * scale)}\nReason: the output states {100 * f1:.0f}% of the "
                "reference's content (objects, attributes, counts, actions).")


def make_dynamic_sim(name: str, params: dict[str, Any]) -> Backend:
    """The dynamic-evaluation behaviour of ``backend: sim``."""
    return DynamicSim(name, params)


__all__ = ["DynView", "DynamicSim", "DynamicSimParams", "make_dynamic_sim"]
