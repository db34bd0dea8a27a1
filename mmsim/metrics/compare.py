"""Compare two runs cell by cell with paired bootstrap intervals (schema
``mmsim.compare.v1``, documented in docs/metrics.md).

Per receiver x provider x policy cell present in both runs, for each metric:

* ``a``, ``b``: the metric of each run on all its items (as ``mmsim report`` shows it);
* ``diff``: b − a on the **shared items** only (sample ids present in both runs for that
  metric), with a 95% percentile **paired** bootstrap interval (seeded per quantity, so an
  interval does not depend on the other cells: accuracy per receiver, since it is the same
  quantity on the same items in all of a receiver's cells; the other metrics per cell): the
  shared sample ids are resampled with replacement and both runs' outcomes on the same ids
  move together, which removes the item-difficulty variance an unpaired comparison would
  carry.

Items per metric:

* accuracy: items the receiver was screened on (done) in both runs; outcome 0/1;
* correction rate: items in the cell's test set in both runs; outcome solved 0/1;
* parse-failure rate: items screened in both runs; per item, (unparsed replies, replies)
  over the screening reply and, when the item is in the cell's test set, its feedback
  rounds; the rate is a ratio of sums, resampled per item.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from mmsim.metrics.intervals import LEVEL, PAIRED_BOOTSTRAP, keyed_rng, percentile_bounds
from mmsim.store import RunStore

SCHEMA = "mmsim.compare.v1"
Key = tuple[str, str, str]


class _RunItems:
    """Per-item outcomes of one run, keyed by receiver/cell and sample id."""

    def __init__(self, store: RunStore):
        run = store.run()
        self.run = run or {}
        self.screen: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.cells: dict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
        for ep in store.episodes():
            if ep["status"] != "done":
                continue
            if ep["kind"] == "screen":
                self.screen[ep["model"]][ep["sample_id"]] = ep
            elif ep["kind"] == "feedback":
                self.cells[(ep["model"], ep["provider"], ep["condition"])][ep["sample_id"]] = ep
        scenario = self.run.get("scenario") or {}
        self.keys: list[Key] = [
            (r["name"], p["name"], pol["name"])
            for r in scenario.get("receivers", []) for p in scenario.get("providers", [])
            for pol in scenario.get("policies", [])]

    def accuracy(self, key: Key) -> dict[str, float]:
        return {s: float(bool(e["first_correct"])) for s, e in self.screen[key[0]].items()}

    def solved(self, key: Key) -> dict[str, float]:
        return {s: float(bool(e["solved"])) for s, e in self.cells.get(key, {}).items()}

    def parse(self, key: Key) -> dict[str, tuple[float, float]]:
        out = {}
        cell = self.cells.get(key, {})
        for s, e in self.screen[key[0]].items():
            num, den = float(bool(e["first_unparsed"])), 1.0
            f = cell.get(s)
            if f is not None:
                num += f["n_unparsed"] - int(bool(f["first_unparsed"]))
                den += f["n_responses"] - 1
            out[s] = (num, den)
        return out


def _mean(d: dict[str, float]) -> float | None:
    return sum(d.values()) / len(d) if d else None


def _ratio(d: dict[str, tuple[float, float]]) -> float | None:
    den = sum(v[1] for v in d.values())
    return sum(v[0] for v in d.values()) / den if den else None


def _paired_binary(a: dict[str, float], b: dict[str, float], rng: np.random.Generator,
                   resamples: int) -> dict[str, Any]:
    """b - a on the shared items, with a paired bootstrap interval."""
    shared = sorted(set(a) & set(b))
    out: dict[str, Any] = {"a": _mean(a), "b": _mean(b), "n_a": len(a), "n_b": len(b),
                           "n_shared": len(shared), "diff": None, "lo": None, "hi": None}
    if not shared:
        return out
    x = np.array([a[s] for s in shared])
    y = np.array([b[s] for s in shared])
    out["diff"] = float(y.mean() - x.mean())
    if resamples > 0:
        idx = rng.integers(0, len(shared), size=(resamples, len(shared)))
        out["lo"], out["hi"] = percentile_bounds((y[idx] - x[idx]).mean(axis=1))
    return out


def _paired_ratio(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]],
                  rng: np.random.Generator, resamples: int) -> dict[str, Any]:
    shared = sorted(set(a) & set(b))
    out: dict[str, Any] = {"a": _ratio(a), "b": _ratio(b), "n_a": len(a), "n_b": len(b),
                           "n_shared": len(shared), "diff": None, "lo": None, "hi": None}
    if not shared:
        return out
    an, ad = (np.array([a[s][k] for s in shared]) for k in (0, 1))
    bn, bd = (np.array([b[s][k] for s in shared]) for k in (0, 1))
    out["diff"] = float(bn.sum() / bd.sum() - an.sum() / ad.sum())
    if resamples > 0:
        idx = rng.integers(0, len(shared), size=(resamples, len(shared)))
        with np.errstate(divide="ignore", invalid="ignore"):
            d = bn[idx].sum(1) / bd[idx].sum(1) - an[idx].sum(1) / ad[idx].sum(1)
        out["lo"], out["hi"] = percentile_bounds(d)
    return out


def _run_info(run_dir: str, items: _RunItems) -> dict[str, Any]:
    manifest = items.run.get("manifest") or {}
    return {"run_dir": run_dir, "run_id": items.run.get("run_id"),
            "name": items.run.get("name"), "status": items.run.get("status"),
            "simulated": bool(manifest.get("simulated")),
            "dataset_fingerprint": (manifest.get("dataset") or {}).get("fingerprint")}


def compare(store_a: RunStore, store_b: RunStore, *, resamples: int = 1000, seed: int = 0,
            run_dir_a: str = "", run_dir_b: str = "") -> dict[str, Any]:
    """Run B minus run A, per cell and metric (see the module docstring)."""
    a, b = _RunItems(store_a), _RunItems(store_b)
    keys_b = set(b.keys)
    cells = []
    for key in a.keys:
        if key not in keys_b:
            continue
        cells.append({
            "receiver": key[0], "provider": key[1], "policy": key[2],
            # a receiver's accuracy is one quantity on the same items in all its cells:
            # seeded by the receiver, it shows one interval in every row
            "accuracy": _paired_binary(a.accuracy(key), b.accuracy(key),
                                       keyed_rng(seed, key[0], "accuracy"), resamples),
            "correction_rate": _paired_binary(a.solved(key), b.solved(key),
                                              keyed_rng(seed, *key, "correction"), resamples),
            "parse_failure_rate": _paired_ratio(a.parse(key), b.parse(key),
                                                keyed_rng(seed, *key, "parse"), resamples),
        })
    keys_a = set(a.keys)
    return {
        "schema": SCHEMA,
        "a": _run_info(run_dir_a, a), "b": _run_info(run_dir_b, b),
        "same_dataset": (_run_info("", a)["dataset_fingerprint"]
                         == _run_info("", b)["dataset_fingerprint"]),
        "ci": {"method": PAIRED_BOOTSTRAP, "level": LEVEL, "resamples": resamples,
               "seed": seed},
        "metrics": ["accuracy", "correction_rate", "parse_failure_rate"],
        "cells": cells,
        "only_in_a": [list(k) for k in a.keys if k not in keys_b],
        "only_in_b": [list(k) for k in b.keys if k not in keys_a],
    }


def compare_outcomes(store_a: RunStore, store_b: RunStore, *, resamples: int = 1000,
                     seed: int = 0, run_dir_a: str = "", run_dir_b: str = "") -> dict[str, Any]:
    """Run B minus run A for a protocol without a comparison of its own: the share of
    episodes solved (the protocol's verified outcome), per agent x episode kind x condition
    (the stored ``receiver``, ``kind`` and ``policy``), paired over shared sample ids with
    the same bootstrap as :func:`compare`."""
    def outcomes(store: RunStore) -> tuple[dict[str, Any], dict[Key, dict[str, float]]]:
        cells: dict[Key, dict[str, float]] = defaultdict(dict)
        for ep in store.episodes():
            if ep["status"] == "done" and ep["solved"] is not None:
                key = (ep["model"], ep["kind"], ep["condition"] or "")
                cells[key][ep["sample_id"]] = float(bool(ep["solved"]))
        return store.run() or {}, cells

    run_a, cells_a = outcomes(store_a)
    run_b, cells_b = outcomes(store_b)
    keys = sorted(set(cells_a) & set(cells_b))
    fp = [((r.get("manifest") or {}).get("dataset") or {}).get("fingerprint")
          for r in (run_a, run_b)]

    def info(run_dir: str, run: dict[str, Any]) -> dict[str, Any]:
        manifest = run.get("manifest") or {}
        return {"run_dir": run_dir, "run_id": run.get("run_id"), "name": run.get("name"),
                "status": run.get("status"), "simulated": bool(manifest.get("simulated")),
                "dataset_fingerprint": (manifest.get("dataset") or {}).get("fingerprint")}

    return {
        "schema": SCHEMA, "a": info(run_dir_a, run_a), "b": info(run_dir_b, run_b),
        "same_dataset": fp[0] == fp[1],
        "ci": {"method": PAIRED_BOOTSTRAP, "level": LEVEL, "resamples": resamples,
               "seed": seed},
        "key_names": ["agent", "episode kind", "condition"],
        "metrics": ["solved"],
        "cells": [{"receiver": k[0], "provider": k[1], "policy": k[2],
                   "solved": _paired_binary(cells_a[k], cells_b[k], keyed_rng(seed, *k, "solved"),
                                           resamples)}
                  for k in keys],
        "only_in_a": [list(k) for k in sorted(set(cells_a) - set(cells_b))],
        "only_in_b": [list(k) for k in sorted(set(cells_b) - set(cells_a))],
    }


__all__ = ["SCHEMA", "compare", "compare_outcomes"]
