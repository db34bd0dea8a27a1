"""Simulated classifiers: how a ``backend: sim`` model behaves in a classification run.

A scenario's ``sim`` models are built from this module by the classification runner (the
InterFeedback ``sim`` parameters do not apply). The simulation is a small random-utility
model of a multimodal classifier, seeded so that results never depend on concurrency:

* **perception**: for an image whose objects are ``o_1..o_m`` (its multilabel set, or its
  label), every class ``c`` gets the score ``mu * max_k(w_k * S[o_k, c]) + g_c + e_c``, where
  ``S`` is the classes' visual similarity (1 on the diagonal; the synthetic data gives it:
  shared colour / shape, neighbours on the colour wheel; other data: the string encoder's
  similarity), ``w = (1, secondary_salience, ...)``, ``g_c`` Gumbel noise drawn once per
  model and image (shared by every protocol, so protocol differences are the protocols'
  effects, not noise), ``e_c`` small per-episode noise (``decoding_noise``), and the
  signal ``mu = max(0, base + discrimination * (skill - difficulty - penalty))``. The model
  sees the best-scoring class among the classes it may name: all of them (closed and open
  world, batches) or the offered options (multiple choice). Near classes are the likely
  confusions, so hard distractors (near classes) hurt more than random ones, which are
  rarely close: random distractors inflate accuracy.
* **batches**: the penalty grows with the batch size (``batch_penalty`` per extra image)
  and the position in it (``position_penalty``); with probability ``misalign`` per extra
  image the answers slip by one position.
* **closed world / batches**: names the class; with probability ``out_of_list`` says it in
  other words (a synonym such as "crimson disc"), off the list. **Open world**: a free
  name, a synonym with probability ``synonym_rate``. **Multiple choice**: the letter.
* ``format_noise``: a reply with no usable answer.

Every completion is marked simulated and every report says SIMULATED.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mmsim.backends.base import Backend, Completion, GenerateRequest
from mmsim.backends.sim import seeded_rng
from mmsim.data.sample import Sample
from mmsim.errors import UserError, validated
from mmsim.messages import Usage
from mmsim.protocols.classification.data import FloatMatrix, item_label, item_labels

Mode = Literal["closed", "mc", "open", "batch"]


@dataclass(frozen=True)
class SimView:
    """What a simulated classifier may look at (it travels in the oracle's sample
    ``meta["cls_view"]``; real backends never see it)."""

    mode: Mode
    items: tuple[Sample, ...]
    classes: tuple[str, ...]
    similarity: FloatMatrix
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    options: tuple[str, ...] = ()  # multiple choice: class names in letter order
    letters: tuple[str, ...] = ()


class ClassifierSimParams(BaseModel):
    """Parameters of a simulated classifier (``params:`` of a ``backend: sim`` model)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    skill: float = 1.0
    discrimination: float = Field(3.0, gt=0)
    base: float = 7.0
    secondary_salience: float = Field(0.9, ge=0, le=1)
    decoding_noise: float = Field(0.3, ge=0)
    out_of_list: float = Field(0.08, ge=0, le=1)
    synonym_rate: float = Field(0.45, ge=0, le=1)
    batch_penalty: float = Field(0.06, ge=0)
    position_penalty: float = Field(0.06, ge=0)
    misalign: float = Field(0.03, ge=0, le=1)
    format_noise: float = Field(0.02, ge=0, le=1)
    latency_ms: float = Field(0.0, ge=0)
    latency_sigma: float = Field(0.3, ge=0)
    tokens_per_char: float = Field(0.25, ge=0)


_CLOSED_TEMPLATES = ("Answer: {a}", "The image shows a {a}.\nAnswer: {a}",
                     "<answer>{a}</answer>", "It looks like a {a}.\nAnswer: {a}")
_OPEN_TEMPLATES = ("Answer: {a}", "I can see a {a}.\nAnswer: {a}", "Answer: a {a}",
                   "<answer>{a}</answer>")
_MC_TEMPLATES = ("Answer: {a}", "The correct option is {a}.\nAnswer: {a}", "({a})")
_UNPARSEABLE = ("I cannot tell what the image shows.", "The image is too unclear to say.")
_GENERIC_VARIANTS = ("something like a {c}", "{c}-like object", "a kind of {c}")


class ClassifierSim(Backend):
    """A simulated multimodal classifier (see the module docstring)."""

    simulated = True
    # a simulation neither fails nor is cached (its replies follow the oracle, which is
    # not part of the request): the agent layer adds nothing
    manages_retries = manages_cache = True

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        self.p = self.check_params(name, params)

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any]) -> ClassifierSimParams:
        return validated(ClassifierSimParams, params, label="sim classifier params: ",
                         field=f"models.{name}.params")

    def describe(self) -> dict[str, Any]:
        return {"backend": "sim", "simulated": True, "behaviour": "classification",
                "params": self.p.model_dump()}

    async def generate(self, request: GenerateRequest) -> Completion:
        oracle = request.oracle
        view = oracle.sample.meta.get("cls_view") if oracle is not None else None
        if oracle is None or not isinstance(view, SimView):
            raise UserError(f"sim classifier {self.name!r} needs a classification oracle")
        rng = seeded_rng(request.seed, self.name, oracle.episode_key, oracle.sample.id)
        if rng.random() < self.p.format_noise:
            text = rng.choice(_UNPARSEABLE)
        elif view.mode == "batch":
            text = self._batch(view, rng, request.seed)
        else:
            item = view.items[0]
            if view.mode == "mc":
                seen = self.perceive(item, view, 0.0, request.seed, rng, view.options)
                letter = view.letters[view.options.index(seen)]
                text = rng.choice(_MC_TEMPLATES).format(a=letter)
            else:
                seen = self.perceive(item, view, 0.0, request.seed, rng)
                if view.mode == "open":
                    text = rng.choice(_OPEN_TEMPLATES).format(
                        a=self._phrase(seen, view, rng, self.p.synonym_rate))
                else:
                    text = rng.choice(_CLOSED_TEMPLATES).format(
                        a=self._phrase(seen, view, rng, self.p.out_of_list))
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

    # -- perception ------------------------------------------------------------------
    def perceive(self, item: Sample, view: SimView, penalty: float, seed: int,
                 rng: random.Random, candidates: tuple[str, ...] | None = None) -> str:
        """The class the model sees in ``item`` among ``candidates`` (default: every
        class); see the module docstring."""
        p = self.p
        classes = view.classes
        shared = seeded_rng(seed, self.name, "perceive", item.id)
        gumbel = -np.log(-np.log(np.random.default_rng(shared.getrandbits(64)).uniform(
            1e-12, 1.0, len(classes))))
        objects = item_labels(item) or (item_label(item),)
        difficulty = item.difficulty if item.difficulty is not None else 0.0
        mu = max(0.0, p.base + p.discrimination * (p.skill - difficulty - penalty))
        seen = np.zeros(len(classes))
        for k, obj in enumerate(objects):
            w = 1.0 if k == 0 else p.secondary_salience
            seen = np.maximum(seen, w * view.similarity[classes.index(obj)])
        cand = candidates or classes
        idx = [classes.index(c) for c in cand]
        scores = [mu * seen[i] + gumbel[i] + rng.gauss(0.0, p.decoding_noise) for i in idx]
        return cand[int(np.argmax(scores))]

    # -- answering -------------------------------------------------------------------
    @staticmethod
    def _phrase(cls: str, view: SimView, rng: random.Random, rate: float) -> str:
        if rng.random() >= rate:
            return cls
        variants = view.synonyms.get(cls)
        if variants:
            return rng.choice(variants)
        return rng.choice(_GENERIC_VARIANTS).format(c=cls)

    def _batch(self, view: SimView, rng: random.Random, seed: int) -> str:
        p = self.p
        b = len(view.items)
        names = []
        for pos, item in enumerate(view.items):
            penalty = p.batch_penalty * (b - 1) + p.position_penalty * pos
            names.append(self._phrase(self.perceive(item, view, penalty, seed, rng), view, rng,
                                      p.out_of_list))
        if b > 1 and rng.random() < p.misalign * (b - 1):
            k = rng.randrange(b - 1)
            names = names[:k] + names[k + 1:] + [names[-1]]
        return "\n".join(f"{i}. {n}" for i, n in enumerate(names, 1))


def make_classifier_sim(name: str, params: dict[str, Any]) -> Backend:
    """The classification behaviour of ``backend: sim``."""
    return ClassifierSim(name, params)


__all__ = ["ClassifierSim", "ClassifierSimParams", "Mode", "SimView", "make_classifier_sim"]
