"""``replay``: feedback recorded in an earlier run, served again.

Every feedback message a human proxy gave in the earlier run (``meta.source`` set:
``human``, ``persona``, or a replay of those) is indexed by ``(mode, sample id, round, the
model's answer)``. A request with the same key gets the same reply (verdict, text, person
and meta), preferring the recording of the same episode id. A miss either fails the
episode with a clear reason (``on_miss: fail``, the default) or falls back to the named
policy (``on_miss: binary``) and is counted as a replay miss in the report.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from mmsim.errors import UserError
from mmsim.human.base import (
    ANNOTATE_VERDICTS,
    FEEDBACK_VERDICTS,
    HumanItem,
    HumanOptions,
    HumanReply,
    ReplayMiss,
)
from mmsim.human.channel import HumanChannel
from mmsim.store import RunStore

UNPARSED = "<unparsed>"
ReplayKey = tuple[str, str, int, str]

_RESERVED = {"source", "person", "verdict", "label", "original_source", "replayed_from"}


def replay_key(mode: str, sample_id: str, round_: int, answer: str | None) -> ReplayKey:
    return (mode, sample_id, round_, UNPARSED if answer is None else answer)


def load_recordings(run_dir: Path, provider: str | None = None
                    ) -> dict[ReplayKey, list[tuple[str, HumanReply]]]:
    """Index the human feedback of the run in ``run_dir`` (see the module docstring)."""
    store = RunStore.open(run_dir, create=False)
    out: dict[ReplayKey, list[tuple[str, HumanReply]]] = defaultdict(list)
    try:
        for ep in store.episodes():
            if ep["kind"] not in ("feedback", "annotate"):
                continue
            if provider is not None and ep["provider"] != provider:
                continue
            mode = "annotate" if ep["kind"] == "annotate" else "feedback"
            answer: str | None = None
            for m in store.messages(ep["episode_id"]):
                if m["kind"] == "grade":
                    answer = m.get("answer")
                elif m["kind"] == "feedback":
                    meta: dict[str, Any] = dict(m.get("meta") or {})
                    source = meta.get("original_source") or meta.get("source")
                    verdict = meta.get("verdict")
                    if not source or verdict not in (*FEEDBACK_VERDICTS, *ANNOTATE_VERDICTS):
                        continue  # not from a human proxy (a rule or a model provider)
                    if source == "fallback":
                        continue  # a replay miss answered by a policy: nothing recorded
                    round_ = 0 if mode == "annotate" else int(m["turn"]) + 1
                    reply = HumanReply(
                        verdict=verdict, text=str(m.get("text", "")),
                        person=str(meta.get("person", "")), source="replay",
                        label=meta.get("label"),
                        meta={**{k: v for k, v in meta.items() if k not in _RESERVED},
                              "original_source": source, "replayed_from": ep["episode_id"]})
                    out[replay_key(mode, ep["sample_id"], round_, answer)].append(
                        (ep["episode_id"], reply))
    finally:
        store.close()
    return dict(out)


class ReplayChannel(HumanChannel):
    """Serves recorded feedback (see the module docstring)."""

    source = "replay"

    def __init__(self, name: str, options: HumanOptions):
        super().__init__(name, options)
        if not options.replay_from:
            raise UserError("the replay channel needs human.replay_from: the run directory "
                            "whose feedback to replay", field=f"{name}.human.replay_from")
        self.run_dir = Path(options.replay_from)
        self.fallback = None if options.on_miss == "fail" else options.on_miss
        try:
            self.index = load_recordings(self.run_dir, options.replay_provider)
        except UserError as exc:
            raise UserError(f"cannot replay from it: {exc.message}",
                            where=str(self.run_dir), field=f"{name}.human.replay_from") from None
        self.hits = self.misses = 0

    def describe(self) -> dict[str, Any]:
        return {"backend": "human", "channel": "replay", "source": self.source,
                "simulated": False, "replay_from": str(self.run_dir),
                "recordings": sum(len(v) for v in self.index.values()),
                "on_miss": self.options.on_miss}

    async def ask(self, item: HumanItem) -> HumanReply:
        key = replay_key(item.mode, item.sample.id, item.round, item.proposal)
        found = self.index.get(key)
        if not found:
            self.misses += 1
            raise ReplayMiss(
                f"replay miss: no recorded feedback in {self.run_dir} for sample "
                f"{item.sample.id!r}, round {item.round}, answer {key[3]!r}"
                + ("" if self.fallback else " (set human.on_miss to a policy name to fall "
                                            "back instead of failing)"),
                fallback=self.fallback)
        self.hits += 1
        for eid, reply in found:
            if eid == item.episode_id:
                return reply
        return found[0][1]
