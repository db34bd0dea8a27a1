"""Dynamic-evaluation metrics from a run's store (schema ``mmsim.dynamic.v1``; definitions
in docs/dynamic.md).

* **Judge calibration**, per judge: AUROC of its raw scores on paraphrases (label 1) vs
  corruptions (label 0) of references (run 1), per corruption kind too; the expected
  calibration error (10 bins) of the raw score and of the calibrated score (2-fold
  cross-fitted, out of sample); agreement between runs 1 and 2 (Pearson r, share of
  identical scores); verdicts left unparsed after retries; tokens and cost. The map fitted
  on all of run 1 (isotonic or logistic) calibrates the scoring judge's scores of open
  outputs.
* **Ability vector**, per model: per task family, the mean score over the items the family
  applies to — verifiable families score 1/0 (an unparsed reply is 0), judged ones the
  calibrated judge score in [0, 1] (a verdict left unparsed leaves the item out of that
  family, and is counted). 95% percentile bootstrap intervals resample items (the same
  resampled items for every family, so the vector's figures are joint).
* **sharpness** = T0 − mean(other families); **worst task** = the family with the lowest
  score. Both with bootstrap intervals from the same resamples.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from mmsim.protocols.dynamic.calibration import (
    CalibrationMap,
    Method,
    agreement,
    auroc,
    cross_fitted,
    ece,
    fit,
)
from mmsim.store import RunStore

SCHEMA = "mmsim.dynamic.v1"
EP_TASK = "dyn_task"
EP_CALIB = "dyn_calibration"


def load_results(store: RunStore, kind: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The stored ``dyn_result`` messages of one episode kind, and failed episodes per
    agent."""
    out: list[dict[str, Any]] = []
    failed: dict[str, int] = defaultdict(int)
    for ep in store.episodes(kind):
        if ep["status"] != "done":
            failed[ep["model"] or ep["judge"]] += 1
            continue
        for m in store.messages(ep["episode_id"]):
            if m["kind"] == "dyn_result":
                m["simulated"] = bool(ep["simulated"])
                out.append(m)
    return out, failed


def _cost(prices: dict[str, Any] | None, prompt: int, completion: int) -> float | None:
    if not prices:
        return None
    return (prompt * float(prices["input"]) + completion * float(prices["output"])) / 1e6


def judge_calibration(results: list[dict[str, Any]], method: Method, min_auroc: float
                      ) -> dict[str, dict[str, Any]]:
    """Per judge: AUROC, calibration errors, agreement, unparsed verdicts and its map."""
    by_judge: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_judge[r["agent"]].append(r)
    out: dict[str, dict[str, Any]] = {}
    for judge, rs in sorted(by_judge.items()):
        runs: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for r in rs:
            runs[int(r["judge_run"])][r["pair_id"]] = r
        first = runs[min(runs)]
        pairs = sorted(p for p, r in first.items() if r["score"] is not None)
        s = [float(first[p]["score"]) for p in pairs]
        y = [int(first[p]["label"]) for p in pairs]
        by_kind = {}
        for kind in sorted({first[p]["perturbation"] for p in pairs} - {"paraphrase"}):
            sel = [i for i, p in enumerate(pairs)
                   if first[p]["perturbation"] in (kind, "paraphrase")]
            by_kind[kind] = auroc([s[i] for i in sel], [y[i] for i in sel])
        a = auroc(s, y)
        cmap = fit(method, s, y) if s else CalibrationMap(method)
        agree: dict[str, float | None] = {"pearson": None, "exact": None, "n": 0.0}
        if len(runs) > 1:
            second = runs[sorted(runs)[1]]
            both = [p for p in pairs if p in second and second[p]["score"] is not None]
            agree = agreement([first[p]["score"] for p in both],
                              [second[p]["score"] for p in both])
        pt = sum(int(r["judge_prompt_tokens"]) for r in rs)
        ct = sum(int(r["judge_completion_tokens"]) for r in rs)
        pos = [v for v, lab in zip(s, y, strict=True) if lab == 1]
        neg = [v for v, lab in zip(s, y, strict=True) if lab == 0]
        out[judge] = {
            "n_pairs": len(pairs), "n_paraphrase": sum(y), "n_corruption": len(y) - sum(y),
            "n_unparsed": sum(r["score"] is None for r in rs), "n_verdicts": len(rs),
            "runs": len(runs),
            "auroc": a, "auroc_by_corruption": by_kind,
            "mean_paraphrase": float(np.mean(pos)) if pos else None,
            "mean_corruption": float(np.mean(neg)) if neg else None,
            "ece_raw": ece(s, y), "ece_calibrated": ece(cross_fitted(method, s, y), y)
            if len(s) >= 4 else None,
            "agreement": agree,
            "refused": a is None or a < min_auroc, "min_auroc": min_auroc,
            "method": method, "map": cmap.to_json(),
            "prompt_tokens": pt, "completion_tokens": ct,
            "simulated": any(r["simulated"] for r in rs),
        }
    return out


def _map(d: dict[str, Any]) -> CalibrationMap:
    return CalibrationMap(d["method"], tuple(d["x"]), tuple(d["y"]), d["a"], d["b"])


def ability_vectors(results: list[dict[str, Any]], tasks: list[str], codes: dict[str, str],
                    cmap: CalibrationMap | None, *, resamples: int, seed: int
                    ) -> list[dict[str, Any]]:
    """Per model: the ability vector with bootstrap intervals, sharpness and worst task."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_model[r["agent"]].append(r)
    out = []
    for model in sorted(by_model):
        rs = by_model[model]
        items = sorted({r["item_id"] for r in rs})
        idx = {it: i for i, it in enumerate(items)}
        # score matrix: items x tasks (nan where the family does not apply / unscored)
        mat = np.full((len(items), len(tasks)), np.nan)
        unparsed = dict.fromkeys(tasks, 0)
        judge_unparsed = dict.fromkeys(tasks, 0)
        n_judged = dict.fromkeys(tasks, 0)
        for r in rs:
            if r["family"] not in tasks:
                continue
            t = tasks.index(r["family"])
            unparsed[r["family"]] += int(bool(r["unparsed"]))
            if r["scoring"] == "judge":
                n_judged[r["family"]] += 1
                if r["score"] is None:
                    judge_unparsed[r["family"]] += 1
                    continue
                mat[idx[r["item_id"]], t] = cmap(float(r["score"])) if cmap else r["score"]
            else:
                mat[idx[r["item_id"]], t] = float(r["score"])

        def summary(m: np.ndarray) -> tuple[np.ndarray, float, float, int]:
            with np.errstate(all="ignore"):
                means = np.array([np.nanmean(m[:, j]) if np.isfinite(m[:, j]).any()
                                  else np.nan for j in range(m.shape[1])])
            others = [j for j in range(len(tasks)) if tasks[j] != "qa"
                      and np.isfinite(means[j])]
            t0 = tasks.index("qa") if "qa" in tasks else None
            sharp = float(means[t0] - np.mean(means[others])) \
                if t0 is not None and others and np.isfinite(means[t0]) else np.nan
            finite = [j for j in range(len(tasks)) if np.isfinite(means[j])]
            worst_j = min(finite, key=lambda j: means[j]) if finite else -1
            worst = float(means[worst_j]) if finite else np.nan
            return means, sharp, worst, worst_j

        means, sharp, worst, worst_j = summary(mat)
        lo = hi = np.full(len(tasks), np.nan)
        sharp_iv: tuple[float | None, float | None] = (None, None)
        worst_iv: tuple[float | None, float | None] = (None, None)
        if resamples > 0 and len(items) > 1:
            rng = np.random.default_rng([seed, len(items), sum(map(ord, model))])
            draws_m = np.empty((resamples, len(tasks)))
            draws_s = np.empty(resamples)
            draws_w = np.empty(resamples)
            for b in range(resamples):
                pick = rng.integers(0, len(items), len(items))
                m_b, s_b, w_b, _ = summary(mat[pick])
                draws_m[b], draws_s[b], draws_w[b] = m_b, s_b, w_b
            with np.errstate(all="ignore"):
                lo = np.nanpercentile(draws_m, 2.5, axis=0)
                hi = np.nanpercentile(draws_m, 97.5, axis=0)
            if np.isfinite(draws_s).any():
                sharp_iv = (float(np.nanpercentile(draws_s, 2.5)),
                            float(np.nanpercentile(draws_s, 97.5)))
            if np.isfinite(draws_w).any():
                worst_iv = (float(np.nanpercentile(draws_w, 2.5)),
                            float(np.nanpercentile(draws_w, 97.5)))

        def f(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        vector = {}
        for j, task in enumerate(tasks):
            vector[task] = {"code": codes.get(task, task), "value": f(means[j]),
                            "lo": f(lo[j]), "hi": f(hi[j]),
                            "n": int(np.isfinite(mat[:, j]).sum()),
                            "n_unparsed": unparsed[task],
                            "n_judge_unparsed": judge_unparsed[task],
                            "judged": n_judged[task] > 0}
        out.append({
            "name": model, "simulated": any(r["simulated"] for r in rs), "items": len(items),
            "vector": vector,
            "sharpness": {"value": f(sharp), "lo": sharp_iv[0], "hi": sharp_iv[1]},
            "worst_task": {"task": tasks[worst_j] if worst_j >= 0 else None,
                           "value": f(worst), "lo": worst_iv[0], "hi": worst_iv[1]},
            "prompt_tokens": sum(int(r.get("prompt_tokens", 0)) for r in rs),
            "completion_tokens": sum(int(r.get("completion_tokens", 0)) for r in rs),
            "judge_prompt_tokens": sum(int(r["judge_prompt_tokens"]) for r in rs),
            "judge_completion_tokens": sum(int(r["judge_completion_tokens"]) for r in rs),
        })
    return out


def compute(store: RunStore) -> dict[str, Any]:
    """All figures of a dynamic-evaluation run as one JSON-serialisable object."""
    run = store.run()
    if run is None:
        return {"schema": SCHEMA, "run_id": None, "models": []}
    scenario, manifest = run["scenario"], run["manifest"]
    settings = scenario.get("judge", {})
    method: Method = settings.get("method", "isotonic")
    min_auroc = float(settings.get("min_auroc", 0.75))
    calib_results, calib_failed = load_results(store, EP_CALIB)
    judges = judge_calibration(calib_results, method, min_auroc)
    scoring = settings.get("use") or (scenario.get("judges") or [{}])[0].get("name")
    prices = {a["name"]: a.get("prices") for role in ("models", "judges")
              for a in scenario.get(role, [])}
    task_results, task_failed = load_results(store, EP_TASK)
    tasks: list[str] = scenario.get("tasks", [])
    codes: dict[str, str] = manifest.get("task_codes", {})
    cmap = _map(judges[scoring]["map"]) if scoring in judges else None
    run_cfg = scenario.get("run", {})
    models = ability_vectors(task_results, tasks, codes, cmap,
                             resamples=int(run_cfg.get("bootstrap", 1000)),
                             seed=int(scenario.get("seed", 0)))
    # the scoring judge's work on open outputs counts towards its tokens and cost
    judge_task_pt = sum(m["judge_prompt_tokens"] for m in models)
    judge_task_ct = sum(m["judge_completion_tokens"] for m in models)
    for name, j in judges.items():
        j["calibration_cost"] = _cost(prices.get(name), j["prompt_tokens"],
                                      j["completion_tokens"])
        if name == scoring:
            j["scoring_prompt_tokens"], j["scoring_completion_tokens"] = \
                judge_task_pt, judge_task_ct
            j["scoring_cost"] = _cost(prices.get(name), judge_task_pt, judge_task_ct)
        j["failed"] = calib_failed.get(name, 0)
    for m in models:
        m["cost"] = _cost(prices.get(m["name"]), m["prompt_tokens"], m["completion_tokens"])
        m["failed"] = task_failed.get(m["name"], 0)
    return {
        "schema": SCHEMA, "kind": "dynamic",
        "run_id": run["run_id"], "name": run["name"], "status": run["status"],
        "simulated": bool(manifest.get("simulated")),
        "dataset": manifest.get("dataset", {}), "tasks": tasks,
        "task_codes": codes, "scoring_judge": scoring,
        "judges": judges, "models": models, "counts": store.counts(),
        "manifest": manifest,
    }


__all__ = ["EP_CALIB", "EP_TASK", "SCHEMA", "ability_vectors", "compute",
           "judge_calibration", "load_results"]
