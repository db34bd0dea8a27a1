"""A ``kind: classification`` run (played by the kernel): every model x protocol x image (or
batch x order) is one episode, committed to the run store when it ends.

The episode list is a pure function of the scenario and the data (seeded distractors,
batches and orders), so a rerun on the same directory plays exactly the episodes that are
not done yet, and the metrics of a resumed run equal those of an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Container
from typing import Any

import structlog

from mmsim.actors.roles import AskContext
from mmsim.errors import DataError
from mmsim.messages import Response
from mmsim.protocols.classification.data import (
    ClassificationData,
    item_label,
    item_labels,
)
from mmsim.protocols.classification.encoders import (
    ClassIndex,
    EncoderUnavailable,
    get_encoder,
)
from mmsim.protocols.classification.env import (
    ClassificationResult,
    ItemOutcome,
    Protocol,
    Unit,
    batch_episode_id,
    choice_outcome,
    episode_id,
    observation,
    oracle,
    outcome,
    read_class_answer,
    read_numbered_list,
)
from mmsim.protocols.classification.scenario import ClassificationScenario
from mmsim.protocols.classification.sim import Mode, SimView
from mmsim.runtime.pool import Jobs
from mmsim.runtime.protocol import Actors, Played, ProtocolRun, RunSetup
from mmsim.spec import LoadedScenario
from mmsim.store import EpisodeRecord, RunStore

log = structlog.get_logger("mmsim.classification")

EPISODE_KIND = "classification"


def check_labels(loaded: LoadedScenario, data: ClassificationData) -> None:
    """Every item's labels are in the class list (empty data and duplicate ids are the
    kernel's checks)."""
    for s in data.items:
        unknown = [x for x in (item_label(s), *item_labels(s)) if x not in data.classes]
        if unknown:
            raise DataError(f"item {s.id!r} has label {unknown[0]!r}, not in the class list",
                            where=loaded.where("dataset"), field="dataset")


def build_encoders(scn: ClassificationScenario, classes: tuple[str, ...]
                   ) -> tuple[dict[str, ClassIndex], dict[str, str]]:
    """The available encoders (id -> class index) and the optional ones skipped (id ->
    why). A missing non-optional encoder is an error (exit 2)."""
    out: dict[str, ClassIndex] = {}
    skipped: dict[str, str] = {}
    for i, spec in enumerate(scn.encoders):
        try:
            out[spec.key] = ClassIndex(classes, get_encoder(spec.name, spec.params))
        except EncoderUnavailable as exc:
            if spec.optional:
                skipped[spec.key] = exc.message
                log.warning("encoder.skipped", encoder=spec.key, reason=exc.message)
                continue
            raise EncoderUnavailable(exc.message, field=f"encoders.{i}") from None
    return out, skipped


def plan_units(scn: ClassificationScenario, data: ClassificationData,
               indices: dict[str, ClassIndex]) -> list[Unit]:
    """Every episode of the run, in a deterministic order."""
    seed, protos = scn.seed, scn.protocols
    classes = data.classes
    units: list[Unit] = []
    mc_options: dict[tuple[str, str], tuple[str, ...]] = {}
    if protos.multiple_choice.enabled:
        k = min(protos.multiple_choice.k, len(classes))
        hard_index = indices[scn.encoder_for("multiple_choice")]
        for item in data.items:
            label = item_label(item)
            banned = {label, *item_labels(item)}
            for kind in protos.multiple_choice.distractors:
                rng = random.Random(f"mmsim-cls:{seed}:mc-{kind}:{item.id}")
                if kind == "hard":
                    distractors = hard_index.neighbours(label, k - 1, exclude=sorted(banned))
                else:
                    pool = [c for c in classes if c not in banned]
                    distractors = rng.sample(pool, min(k - 1, len(pool)))
                opts = [label, *distractors]
                rng.shuffle(opts)
                mc_options[(kind, item.id)] = tuple(opts)
    for m in scn.models:
        for item in data.items:
            if protos.closed.enabled:
                units.append(Unit(episode_id("closed", m.name, item.id), "closed", m.name,
                                  (item,)))
            for kind in (protos.multiple_choice.distractors
                         if protos.multiple_choice.enabled else []):
                proto: Protocol = "mc-hard" if kind == "hard" else "mc-random"
                units.append(Unit(episode_id(proto, m.name, item.id), proto, m.name, (item,),
                                  options=mc_options[(kind, item.id)]))
            if protos.open.enabled:
                units.append(Unit(episode_id("open", m.name, item.id), "open", m.name,
                                  (item,)))
        if protos.batch.enabled:
            units += _batch_units(scn, data, m.name)
    return units


def batch_groups(scn: ClassificationScenario, data: ClassificationData, size: int
                 ) -> list[tuple[str, list[tuple[int, ...]]]]:
    """The batches of one size (a seeded shuffle of the items cut into groups of
    ``size``; an incomplete last group is left out) and, per batch, its orders (index
    permutations: the first is the identity, the others seeded and distinct when there
    are enough)."""
    spec = scn.protocols.batch
    ids = list(range(len(data.items)))
    random.Random(f"mmsim-cls:{scn.seed}:batch:{size}").shuffle(ids)
    groups = [ids[i:i + size] for i in range(0, len(ids) - size + 1, size)]
    if spec.max_batches is not None:
        groups = groups[:spec.max_batches]
    out: list[tuple[str, list[tuple[int, ...]]]] = []
    for gi, group in enumerate(groups):
        orders = [tuple(group)]
        n_orders = 1 if size == 1 else min(spec.orders, _factorial(size))
        rng = random.Random(f"mmsim-cls:{scn.seed}:order:{size}:{gi}")
        tries = 0
        while len(orders) < n_orders and tries < 100 * n_orders:
            tries += 1
            perm = group[:]
            rng.shuffle(perm)
            if tuple(perm) not in orders:
                orders.append(tuple(perm))
        out.append((f"b{size}-g{gi:04d}", orders))
    return out


def _factorial(n: int) -> int:
    out = 1
    for k in range(2, n + 1):
        out *= k
        if out > 10_000:
            break
    return out


def _batch_units(scn: ClassificationScenario, data: ClassificationData, model: str
                 ) -> list[Unit]:
    units: list[Unit] = []
    for size in scn.protocols.batch.sizes:
        if size > len(data.items):
            continue
        for group, orders in batch_groups(scn, data, size):
            for j, order in enumerate(orders):
                units.append(Unit(batch_episode_id(model, size, group, j), "batch", model,
                                  tuple(data.items[i] for i in order), batch_size=size,
                                  order=j, group=group))
    return units


_MODES: dict[str, Mode] = {"closed": "closed", "mc-random": "mc", "mc-hard": "mc",
                           "open": "open", "batch": "batch"}


class ClassificationRun(ProtocolRun[ClassificationScenario, ClassificationData]):
    """One classification run in one process. A job is an episode id (every process plans
    the same units from the scenario and the data)."""

    def __init__(self, setup: RunSetup[ClassificationData]):
        super().__init__(setup)
        scn, data = self.scn, self.data
        try:
            self.indices, self.skipped_encoders = build_encoders(scn, data.classes)
        except EncoderUnavailable as exc:
            raise EncoderUnavailable(exc.message, where=self.loaded.where(
                *(exc.field or "encoders").split(".")), field=exc.field) from None
        self.units = plan_units(scn, data, self.indices)
        self.by_id = {u.episode_id: u for u in self.units}
        similarity = data.similarity
        if similarity is None:
            similarity = ClassIndex(data.classes, get_encoder("string")).class_similarity()
        self.similarity = similarity
        self.closed_key = scn.encoder_for("closed")
        self.mc_key = scn.encoder_for("multiple_choice")

    def manifest(self) -> dict[str, Any]:
        return {"encoders": {k: v.encoder.describe() for k, v in self.indices.items()},
                "encoders_skipped": self.skipped_encoders}

    def jobs(self, phase: str, done: Container[str], store: RunStore | None
             ) -> tuple[Jobs[str], int]:
        return Jobs.of(u.episode_id for u in self.units if u.episode_id not in done), \
            len(self.units)

    def view(self, unit: Unit) -> SimView:
        letters = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:len(unit.options)])
        return SimView(mode=_MODES[unit.protocol], items=unit.items, classes=self.data.classes,
                       similarity=self.similarity, synonyms=self.data.synonyms,
                       options=unit.options, letters=letters)

    def grade(self, unit: Unit, resp: Response) -> ClassificationResult:
        items: list[ItemOutcome]
        enc: str | None = self.closed_key
        closed_index = self.indices[self.closed_key]
        if unit.protocol == "batch":
            answers = read_numbered_list(resp.text, len(unit.items))
            items = [outcome(it, pos, a, closed_index)
                     for pos, (it, a) in enumerate(zip(unit.items, answers, strict=True))]
        elif unit.protocol == "open":
            enc = None
            items = [outcome(unit.items[0], 0, read_class_answer(resp.text), None,
                             encoders=self.indices)]
        elif unit.protocol == "closed":
            items = [outcome(unit.items[0], 0, read_class_answer(resp.text), closed_index)]
        else:
            enc = self.mc_key if unit.protocol == "mc-hard" else None
            items = [choice_outcome(unit.items[0], resp.answer, unit.options)]
        return ClassificationResult(
            run_id=self.run_id, episode_id=unit.episode_id, turn=0, sender="env",
            protocol=unit.protocol, batch_size=unit.batch_size, order=unit.order,
            group=unit.group, encoder=enc, options=unit.options, items=tuple(items))

    async def play(self, phase: str, job: str, actors: Actors) -> Played:
        unit = self.by_id[job]
        data = self.data
        obs = observation(unit, self.run_id, data.classes)
        resp = await actors.models[unit.model].ask(
            (obs, AskContext(oracle=oracle(unit, self.view(unit)), seed=self.scn.seed)))
        first = unit.items[0]
        rec = EpisodeRecord(
            episode_id=unit.episode_id, run_id=self.run_id, kind=EPISODE_KIND,
            model=unit.model,
            condition=unit.protocol if unit.protocol != "batch" else f"batch{unit.batch_size}",
            sample_id=f"{unit.group}/o{unit.order}" if unit.group else first.id,
            category=first.category if not unit.group else f"batch{unit.batch_size}",
            status="done", payload={"n_options": len(unit.options) or len(data.classes)},
            n_responses=1, model_prompt_tokens=resp.usage.prompt_tokens,
            model_completion_tokens=resp.usage.completion_tokens, latency_s=resp.latency_s,
            model_retries=resp.usage.retries, simulated=resp.simulated)
        if resp.parse == "error":
            rec.status, rec.error, rec.messages = "failed", resp.error, (obs, resp)
            log.warning("episode.failed", episode=unit.episode_id, reason=resp.error)
            return Played(rec)
        result = self.grade(unit, resp)
        unparsed = sum(o.answer is None for o in result.items)
        rec.n_unparsed = unparsed
        rec.first_unparsed = unparsed > 0
        key = "choice" if unit.protocol.startswith("mc") else (
            next(iter(self.indices)) if unit.protocol == "open" else "mapped")
        ok = all(o.predictions.get(key) == o.label for o in result.items)
        rec.first_correct = rec.solved = ok
        rec.messages = (obs, resp, result)
        return Played(rec)


__all__ = ["ClassificationRun", "build_encoders", "check_labels", "plan_units"]
