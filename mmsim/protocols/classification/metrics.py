"""Classification metrics from a run's store (schema ``mmsim.classification.v1``; the
definitions and the JSON object are documented in docs/classification.md).

Every accuracy is a pair ``{single, multi}``: ``single`` counts a prediction correct when
it equals the image's original label (over every scored image); ``multi`` when it is in
the image's multilabel set (ReaL / ReGT style; images with an empty set are left out, as
ReaL does). Unparsed answers count as wrong. Infrastructure failures are never scored
(``failed``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from mmsim.metrics.intervals import wilson_bounds
from mmsim.store import RunStore

SCHEMA = "mmsim.classification.v1"
EPISODE_KIND = "classification"


def _acc(outcomes: Iterable[dict[str, Any]], key: str) -> dict[str, Any]:
    n = n_multi = single = multi = 0
    for o in outcomes:
        pred = o["predictions"].get(key)
        n += 1
        single += int(pred is not None and pred == o["label"])
        if o["labels"]:
            n_multi += 1
            multi += int(pred is not None and pred in o["labels"])
    return {"n": n, "single": single / n if n else None,
            "n_multi": n_multi, "multi": multi / n_multi if n_multi else None,
            "single_ci": _bounds(single, n), "multi_ci": _bounds(multi, n_multi)}


def _bounds(k: int, n: int) -> list[float] | None:
    """The 95% Wilson interval of k of n, ``[lo, hi]`` (None when n is 0)."""
    return list(wilson_bounds(k, n)) if n else None


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def load_results(store: RunStore) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Per model, the stored ``cls_result`` messages (dicts); and failed episodes per
    model."""
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for ep in store.episodes(EPISODE_KIND):
        if ep["status"] != "done":
            failed[ep["model"]] += 1
            continue
        for m in store.messages(ep["episode_id"]):
            if m["kind"] == "cls_result":
                m["simulated"] = bool(ep["simulated"])
                results[ep["model"]].append(m)
    return results, failed


def _single_protocol(res: list[dict[str, Any]], key: str) -> dict[str, Any]:
    outs = [o for r in res for o in r["items"]]
    n = len(outs)
    unparsed = sum(o["answer"] is None for o in outs)
    off = sum(o["in_list"] is False for o in outs)
    return {"n": n, "n_unparsed": unparsed, "unparsed_rate": _rate(unparsed, n),
            "n_out_of_list": off, "out_of_list_rate": _rate(off, n),
            "accuracy": _acc(outs, key)}


def _closed(res: list[dict[str, Any]]) -> dict[str, Any]:
    out = _single_protocol(res, "mapped")
    outs = [o for r in res for o in r["items"]]
    out["accuracy_without_mapping"] = _acc(outs, "strict")
    out["mapping_gain"] = _diff(out["accuracy"]["single"],
                                out["accuracy_without_mapping"]["single"])
    off = [o for o in outs if o["in_list"] is False]
    out["out_of_list_mapped_correct"] = _rate(
        sum(o["predictions"].get("mapped") == o["label"] for o in off), len(off))
    out["encoder"] = res[0].get("encoder") if res else None
    return out


def _open(res: list[dict[str, Any]], encoders: list[str]) -> dict[str, Any]:
    out = _single_protocol(res, "strict")
    outs = [o for r in res for o in r["items"]]
    out["accuracy_without_mapping"] = out.pop("accuracy")
    out["by_encoder"] = {e: _acc(outs, e) for e in encoders}
    singles = [v["single"] for v in out["by_encoder"].values() if v["single"] is not None]
    out["encoder_spread"] = max(singles) - min(singles) if len(singles) > 1 else None
    return out


def _mc(by_proto: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    if not by_proto.get("mc-random") and not by_proto.get("mc-hard"):
        return None
    out: dict[str, Any] = {}
    k = None
    for kind in ("random", "hard"):
        res = by_proto.get(f"mc-{kind}", [])
        if not res:
            out[kind] = None
            continue
        k = len(res[0]["options"])
        d = _single_protocol(res, "choice")
        del d["n_out_of_list"], d["out_of_list_rate"]
        out[kind] = d
    out["k"] = k
    out["chance"] = 1 / k if k else None
    out["encoder"] = next((r.get("encoder") for r in by_proto.get("mc-hard", [])), None)
    r, h = out.get("random"), out.get("hard")
    out["inflation"] = {
        "single": _diff(r["accuracy"]["single"], h["accuracy"]["single"]),
        "multi": _diff(r["accuracy"]["multi"], h["accuracy"]["multi"]),
    } if r and h else None
    return out


def _batch(res: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not res:
        return None
    sizes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in res:
        sizes[int(r["batch_size"])].append(r)
    out_sizes = []
    pooled_pos: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for size in sorted(sizes):
        rs = sizes[size]
        outs = [o for r in rs for o in r["items"]]
        d = _single_protocol(rs, "mapped")
        by_order: dict[int, list[dict[str, Any]]] = defaultdict(list)
        by_pos: dict[int, list[dict[str, Any]]] = defaultdict(list)
        per_item: dict[str, set[bool]] = defaultdict(set)
        for r in rs:
            for o in r["items"]:
                by_order[int(r["order"])].append(o)
                by_pos[int(o["position"])].append(o)
                per_item[o["sample_id"]].add(o["predictions"].get("mapped") == o["label"])
                if size > 1:
                    pooled_pos[int(o["position"])].append(o)
        order_acc = [_acc(by_order[j], "mapped")["single"] for j in sorted(by_order)]
        vals = np.array([a for a in order_acc if a is not None], dtype=float)
        shown_more = [v for v in per_item.values()] if len(by_order) > 1 else []
        d.update({
            "size": size, "n_batches": len({r["group"] for r in rs}),
            "n_orders": len(by_order),
            "accuracy_by_order": order_acc,
            "order_variance": float(vals.var()) if len(vals) > 1 else None,
            "order_std": float(vals.std()) if len(vals) > 1 else None,
            "flip_rate": _rate(sum(len(v) > 1 for v in shown_more), len(shown_more)),
            "accuracy_by_position": [_acc(by_pos[p], "mapped")["single"]
                                     for p in sorted(by_pos)],
        })
        d["accuracy_without_mapping"] = _acc(outs, "strict")
        out_sizes.append(d)
    pos = [_acc(pooled_pos[p], "mapped")["single"] for p in sorted(pooled_pos)]
    return {"encoder": res[0].get("encoder"), "sizes": out_sizes,
            "accuracy_by_position": pos,
            "position_drop": _diff(pos[0], pos[-1]) if len(pos) > 1 else None}


def compute(store: RunStore) -> dict[str, Any]:
    """All figures of a classification run as one JSON-serialisable object."""
    run = store.run()
    if run is None:
        return {"schema": SCHEMA, "run_id": None, "models": []}
    scenario, manifest = run["scenario"], run["manifest"]
    results, failed = load_results(store)
    available = manifest.get("encoders", {})
    encoders = [k for k in (e.get("id") or e["name"] for e in scenario.get("encoders", []))
                if k in available]
    models_out = []
    for m in scenario.get("models", []):
        name = m["name"]
        res = results.get(name, [])
        by_proto: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in res:
            by_proto[r["protocol"]].append(r)
        closed = _closed(by_proto["closed"]) if by_proto.get("closed") else None
        opened = _open(by_proto["open"], encoders) if by_proto.get("open") else None
        mc = _mc(by_proto)
        batch = _batch(by_proto.get("batch", []))
        side = {}
        if closed:
            side["closed"] = closed["accuracy"]
        if opened and encoders:
            side[f"open ({encoders[0]})"] = opened["by_encoder"][encoders[0]]
        if batch:
            for s in batch["sizes"]:
                side[f"batch{s['size']}"] = s["accuracy"]
        models_out.append({
            "name": name, "simulated": any(r["simulated"] for r in res),
            "episodes": len(res), "failed": failed.get(name, 0),
            "closed": closed, "multiple_choice": mc, "open": opened, "batch": batch,
            "single_vs_multi": {k: {"single": v["single"], "multi": v["multi"],
                                    "gain": _diff(v["multi"], v["single"])}
                                for k, v in side.items()},
        })
    return {
        "schema": SCHEMA, "kind": "classification",
        "run_id": run["run_id"], "name": run["name"], "status": run["status"],
        "simulated": bool(manifest.get("simulated")),
        "dataset": manifest.get("dataset", {}),
        "encoders": encoders, "encoders_skipped": manifest.get("encoders_skipped", {}),
        "counts": store.counts(),
        "models": models_out,
        "manifest": manifest,
    }


__all__ = ["SCHEMA", "compute", "load_results"]
