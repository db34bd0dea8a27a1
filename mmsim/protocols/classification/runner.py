"""Runs a ``kind: classification`` scenario: every model x protocol x image (or batch x
order) is one episode, committed to the run store when it ends.

The episode list is a pure function of the scenario and the data (seeded distractors,
batches and orders), so a rerun on the same directory plays exactly the episodes that are
not done yet, and the metrics of a resumed run equal those of an uninterrupted one.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import structlog

from mmsim.actors import ActorSystem, ModelActor
from mmsim.actors.roles import AskContext
from mmsim.backends import BACKENDS, Backend
from mmsim.errors import DataError, UserError
from mmsim.messages import Response
from mmsim.protocols.classification.data import (
    CLS_DATASETS,
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
from mmsim.protocols.classification.scenario import ClassificationScenario, LoadedClassification
from mmsim.protocols.classification.sim import ClassifierSim, Mode, SimView, make_classifier_sim
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

log = structlog.get_logger("mmsim.classification")

EPISODE_KIND = "classification"


def load_data(loaded: LoadedClassification, cache_dir: Path) -> ClassificationData:
    spec = loaded.scenario.dataset
    try:
        data = CLS_DATASETS.get(spec.name)(spec.options, base_dir=loaded.base_dir,
                                           cache_dir=cache_dir, limit=loaded.limit)
    except UserError as exc:
        if exc.field in spec.options:  # an option: point at the scenario
            raise type(exc)(exc.message, where=str(loaded.path),
                            field=f"dataset.{exc.field}") from None
        raise
    seen: set[str] = set()
    for s in data.items:
        if s.id in seen:
            raise DataError(f"duplicate item id {s.id!r}", where=str(loaded.path),
                            field="dataset")
        seen.add(s.id)
        unknown = [x for x in (item_label(s), *item_labels(s)) if x not in data.classes]
        if unknown:
            raise DataError(f"item {s.id!r} has label {unknown[0]!r}, not in the class list",
                            where=str(loaded.path), field="dataset")
    if not data.items:
        raise DataError("the dataset is empty", where=str(loaded.path), field="dataset")
    return data


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


def check_agents(loaded: LoadedClassification) -> None:
    """Every model's params as its backend takes them (``mmsim validate``, and the run
    before it builds anything)."""
    check_kind_backends(loaded, {"models": loaded.scenario.models}, ClassifierSim)


def build_backends(scn: ClassificationScenario) -> dict[str, Backend]:
    """``backend: sim`` models get the classification behaviour (:mod:`.sim`)."""
    out: dict[str, Backend] = {}
    for m in scn.models:
        factory = make_classifier_sim if m.backend == "sim" else BACKENDS.get(m.backend)
        out[m.name] = factory(m.name, dict(m.params))
    return out


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


class ClassificationRunner:
    """Plays one classification scenario into one run directory."""

    def __init__(self, loaded: LoadedClassification, run_dir: Path, *,
                 progress: Progress | None = None):
        self.loaded = loaded
        self.scn = loaded.scenario
        self.run_dir = Path(run_dir)
        self.progress = progress or Progress()
        self.run_id = run_id(loaded)
        self.played = self.skipped = self.failed = 0

    async def run(self) -> RunResult:
        t0 = time.perf_counter()
        scn = self.scn
        check_agents(self.loaded)  # names the file and the field, like mmsim validate
        with in_scenario(self.loaded):
            backends = build_backends(scn)
            data = load_data(self.loaded, self.run_dir / "assets")
            indices, skipped = build_encoders(scn, data.classes)
        units = plan_units(scn, data, indices)
        similarity = data.similarity
        if similarity is None:
            similarity = ClassIndex(data.classes, get_encoder("string")).class_similarity()
        manifest = base_manifest("classification", self.loaded, backends, {
            "name": data.name, "n_samples": len(data.items), "n_classes": len(data.classes),
            "fingerprint": dataset_fingerprint(list(data.items))})
        manifest.update({"encoders": {k: v.encoder.describe() for k, v in indices.items()},
                         "encoders_skipped": skipped})
        with run_store(self.run_dir, self.loaded, manifest) as (store, resumed, done):
            todo = [u for u in units if u.episode_id not in done]
            self.skipped = len(units) - len(todo)
            log.info("run.start", run_id=self.run_id, episodes=len(units), todo=len(todo))
            t_play = time.perf_counter()
            with gc_tuned():
                await self._play(todo, backends, data, indices, similarity, store)
            play_s = time.perf_counter() - t_play
            store.finish_run()
            counts = store.counts()
        return RunResult(self.run_dir, self.run_id, resumed, self.played, self.skipped,
                         self.failed, time.perf_counter() - t0, self.played, play_s, counts)

    async def _play(self, todo: list[Unit], backends: dict[str, Backend],
                    data: ClassificationData, indices: dict[str, ClassIndex],
                    similarity: Any, store: RunStore) -> None:
        scn = self.scn
        closed_key = scn.encoder_for("closed")
        closed_index = indices[closed_key]
        mc_key = scn.encoder_for("multiple_choice")

        def view(unit: Unit) -> SimView:
            letters = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:len(unit.options)])
            return SimView(mode=_MODES[unit.protocol], items=unit.items, classes=data.classes,
                           similarity=similarity, synonyms=data.synonyms,
                           options=unit.options, letters=letters)

        def grade(unit: Unit, resp: Response) -> ClassificationResult:
            items: list[ItemOutcome]
            enc: str | None = closed_key
            if unit.protocol == "batch":
                answers = read_numbered_list(resp.text, len(unit.items))
                items = [outcome(it, pos, a, closed_index)
                         for pos, (it, a) in enumerate(zip(unit.items, answers, strict=True))]
            elif unit.protocol == "open":
                enc = None
                items = [outcome(unit.items[0], 0, read_class_answer(resp.text), None,
                                 encoders=indices)]
            elif unit.protocol == "closed":
                items = [outcome(unit.items[0], 0, read_class_answer(resp.text), closed_index)]
            else:
                enc = mc_key if unit.protocol == "mc-hard" else None
                items = [choice_outcome(unit.items[0], resp.answer, unit.options)]
            return ClassificationResult(
                run_id=self.run_id, episode_id=unit.episode_id, turn=0, sender="env",
                protocol=unit.protocol, batch_size=unit.batch_size, order=unit.order,
                group=unit.group, encoder=enc, options=unit.options, items=tuple(items))

        async with ActorSystem() as system, EpisodeSink(store) as sink:
            models = {m.name: system.spawn(ModelActor(m.name, backends[m.name],
                                                      concurrency=m.concurrency))
                      for m in scn.models}
            self.progress.phase("classification", len(todo))

            async def play(unit: Unit) -> None:
                obs = observation(unit, self.run_id, data.classes)
                resp = await models[unit.model].ask(
                    (obs, AskContext(oracle=oracle(unit, view(unit)), seed=scn.seed)))
                first = unit.items[0]
                rec = EpisodeRecord(
                    episode_id=unit.episode_id, run_id=self.run_id, kind=EPISODE_KIND,
                    receiver=unit.model,
                    policy=unit.protocol if unit.protocol != "batch"
                    else f"batch{unit.batch_size}",
                    sample_id=f"{unit.group}/o{unit.order}" if unit.group else first.id,
                    category=first.category if not unit.group else f"batch{unit.batch_size}",
                    status="done", n_options=len(unit.options) or len(data.classes),
                    n_responses=1, prompt_tokens=resp.usage.prompt_tokens,
                    completion_tokens=resp.usage.completion_tokens, latency_s=resp.latency_s,
                    simulated=resp.simulated)
                if resp.parse == "error":
                    self.failed += 1
                    rec.status, rec.error, rec.messages = "failed", resp.error, (obs, resp)
                    log.warning("episode.failed", episode=unit.episode_id, reason=resp.error)
                else:
                    result = grade(unit, resp)
                    self.played += 1
                    unparsed = sum(o.answer is None for o in result.items)
                    rec.n_unparsed = unparsed
                    rec.first_unparsed = unparsed > 0
                    key = "choice" if unit.protocol.startswith("mc") else (
                        next(iter(indices)) if unit.protocol == "open" else "mapped")
                    ok = all(o.predictions.get(key) == o.label for o in result.items)
                    rec.first_correct = rec.solved = ok
                    rec.messages = (obs, resp, result)
                await sink.add(rec)
                self.progress.advance()

            await run_pool(todo, scn.run.concurrency, play)


async def run_classification(loaded: LoadedClassification, run_dir: str | Path, *,
                             progress: Progress | None = None) -> RunResult:
    """Run (or resume) a classification scenario into ``run_dir``."""
    with run_dir_lock(run_dir):  # one writer per run directory
        return await ClassificationRunner(loaded, Path(run_dir), progress=progress).run()


__all__ = ["ClassificationRunner", "build_encoders", "default_run_dir", "load_data",
           "plan_units", "run_classification"]
