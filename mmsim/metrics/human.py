"""Figures of human feedback (docs/human.md): corrections by round, as in the human study of
InterFeedback, who answered and how, and the annotator-assist shares.

``feedback`` cells (receiver x human provider x policy), with N_test the test set:

* ``by_round``: per round, the policy of that round, the errors corrected in it (share of
  N_test) and the share of the errors still open when the round began (conditional rate);
* ``sources``/``verdicts``/``persons``: counts over the feedback a human channel gave
  (``human``, ``persona``, ``replay``; ``fallback`` for replay misses answered by a policy);
* ``mean_feedback_chars``, ``leak_rate``: length and leak rate of that feedback;
  ``disputed``: answers a person marked correct although the automatic check said wrong.

``annotate`` cells (receiver x provider): shares of proposals confirmed, edited (integrated
into a corrected label) and rejected; ``confirmed_or_integrated`` = confirmed + edited;
``proposal_accuracy`` (the model's) and ``final_accuracy`` (the labels after review).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from mmsim.store import RunStore

HUMAN_SOURCES = ("human", "persona", "replay", "fallback")


def _rounds(scenario: dict[str, Any]) -> dict[str, list[str]]:
    out = {}
    for p in scenario.get("policies", []):
        out[p["name"]] = p.get("schedule") or [p.get("policy") or p["name"]]
    return out


def _share(n: int, d: int) -> float | None:
    return n / d if d else None


def human_metrics(store: RunStore, scenario: dict[str, Any]) -> dict[str, Any] | None:
    """The ``human`` section of the metrics, or None when the run has no human proxy and
    no annotate episodes."""
    humans = {p["name"]: p for p in scenario.get("providers", []) if p.get("kind") == "human"}
    annotate = list(store.episodes("annotate"))
    if not humans and not annotate:
        return None
    max_rounds = int(scenario.get("protocol", {}).get("max_rounds", 3))
    schedules = _rounds(scenario)
    providers = [{"name": n, "channel": p.get("channel"),
                  "persona": (p.get("human") or {}).get("persona")
                  if p.get("channel") == "persona" else None} for n, p in humans.items()]

    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    failed: Counter[tuple[str, str, str]] = Counter()
    for ep in store.episodes("feedback"):
        if ep["provider"] not in humans:
            continue
        key = (ep["model"], ep["provider"], ep["condition"])
        if ep["status"] == "done":
            cells[key].append(ep)
        else:
            failed[key] += 1
    feedback_out = []
    for key in sorted(set(cells) | set(failed)):
        receiver, provider, pol = key
        eps = cells.get(key, [])
        n_test = len(eps)
        sched = schedules.get(pol, [pol])
        by_round = []
        open_ = n_test
        for k in range(1, max_rounds + 1):
            at = sum(1 for e in eps if e["corrected_round"] == k)
            by_round.append({"round": k, "policy": sched[min(k, len(sched)) - 1],
                             "corrected": at, "rate": _share(at, n_test), "open": open_,
                             "conditional_rate": _share(at, open_)})
            open_ -= at
        sources: Counter[str] = Counter()
        verdicts: Counter[str] = Counter()
        persons: Counter[str] = Counter()
        chars = n_fb = leaked = misses = 0
        for e in eps:
            for m in store.messages(e["episode_id"]):
                if m["kind"] != "feedback":
                    continue
                meta = m.get("meta") or {}
                src = meta.get("source")
                if src not in HUMAN_SOURCES:
                    continue  # a rule (reveal, binary) in a schedule with human rounds
                sources[src] += 1
                if meta.get("verdict"):
                    verdicts[str(meta["verdict"])] += 1
                if meta.get("person"):
                    persons[str(meta["person"])] += 1
                misses += int("replay_miss" in meta)
                n_fb += 1
                chars += len(m.get("text", ""))
                leaked += int(bool(m.get("leaked")))
        feedback_out.append({
            "receiver": receiver, "provider": provider, "policy": pol, "n_test": n_test,
            "n_corrected": sum(bool(e["solved"]) for e in eps),
            "correction_rate": _share(sum(bool(e["solved"]) for e in eps), n_test),
            "not_corrected": n_test - sum(bool(e["solved"]) for e in eps),
            "by_round": by_round, "n_feedback": n_fb, "sources": dict(sources),
            "verdicts": dict(verdicts), "persons": dict(persons),
            "mean_feedback_chars": chars / n_fb if n_fb else None,
            "n_leaked": leaked, "leak_rate": _share(leaked, n_fb),
            "disputed": verdicts.get("correct", 0), "replay_misses": misses,
            "failed": failed.get(key, 0)})

    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    a_failed: Counter[tuple[str, str]] = Counter()
    for ep in annotate:
        if ep["status"] == "done":
            groups[(ep["model"], ep["provider"])].append(ep)
        else:
            a_failed[(ep["model"], ep["provider"])] += 1
    annotate_out = []
    for pair in sorted(set(groups) | set(a_failed)):
        eps = groups.get(pair, [])
        n = len(eps)
        counts: Counter[str] = Counter()
        persons = Counter()
        sources = Counter()
        for e in eps:
            for m in store.messages(e["episode_id"]):
                if m["kind"] == "feedback":
                    meta = m.get("meta") or {}
                    counts[str(meta.get("verdict", "reject"))] += 1
                    if meta.get("person"):
                        persons[str(meta["person"])] += 1
                    sources[str(meta.get("source", ""))] += 1
        c, ed, rj = counts["confirm"], counts["edit"], counts["reject"]
        annotate_out.append({
            "receiver": pair[0], "provider": pair[1], "n": n,
            "n_confirmed": c, "n_edited": ed, "n_rejected": rj,
            "confirmed": _share(c, n), "edited": _share(ed, n), "rejected": _share(rj, n),
            "confirmed_or_integrated": _share(c + ed, n),
            "proposal_accuracy": _share(sum(bool(e["first_correct"]) for e in eps), n),
            "final_accuracy": _share(sum(bool(e["solved"]) for e in eps), n),
            "persons": dict(persons), "sources": dict(sources),
            "failed": a_failed.get(pair, 0)})
    return {"providers": providers, "feedback": feedback_out, "annotate": annotate_out}
