"""Video-protocol metrics from a run's store (schema ``mmsim.video.v1``; docs/video.md).

* **Levels** (evaluation pass), per model and level L1/L2/L3 and overall: accuracy (the
  accuracy reward's mean), format rate, the share of replies without an ``<answer>`` tag,
  with 95% Wilson score intervals (both rewards are 0/1 per item).
* **Side by side**: every model against the first (the base), per level: the accuracy
  difference on the items both answered, with a paired bootstrap interval.
* **Rollouts**, per model: groups (prompts) and samples, mean reward and accuracy, the mean
  within-group reward standard deviation, the share of groups whose rewards are all equal
  (zero variance: no GRPO signal), the share all right / all wrong, and unbiased pass@k
  (averaged over groups, from each group's accuracy rewards).

Infrastructure failures are never scored; they are counted (``failed``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from mmsim.metrics.intervals import ci_info, keyed_rng, percentile_bounds, proportion
from mmsim.protocols.video.rewards import group_stats, pass_at_k
from mmsim.store import RunStore

#: The episode kinds of a video run: the evaluation pass and the rollouts.
EP_EVAL = "video_eval"
EP_ROLLOUT = "video_rollout"

SCHEMA = "mmsim.video.v1"
LEVEL_ORDER = ("L1", "L2", "L3", "train")


def load_results(store: RunStore, kind: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The stored ``video_result`` messages of one episode kind, and failed episodes per
    model."""
    out: list[dict[str, Any]] = []
    failed: dict[str, int] = defaultdict(int)
    for ep in store.episodes(kind):
        if ep["status"] != "done":
            failed[ep["model"]] += 1
            continue
        for m in store.messages(ep["episode_id"]):
            if m["kind"] == "video_result":
                m["episode_id"] = ep["episode_id"]
                out.append(m)
    return out, failed


def _rate(values: np.ndarray[Any, Any]) -> dict[str, Any]:
    """A 0/1 reward's mean as a proportion with its Wilson interval."""
    return proportion(int((values >= 1.0).sum()), int(values.size))


def _levels(rs: list[dict[str, Any]]) -> list[str]:
    present = {r["level"] for r in rs}
    return [lv for lv in LEVEL_ORDER if lv in present] + sorted(present - set(LEVEL_ORDER))


def level_table(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_model[r["model"]].append(r)
    out: dict[str, dict[str, Any]] = {}
    for model, rs in by_model.items():
        cells: dict[str, Any] = {}
        for level in [*_levels(rs), "all"]:
            sel = rs if level == "all" else [r for r in rs if r["level"] == level]
            acc = np.array([r["rewards"]["accuracy"] for r in sel], dtype=float)
            fmt = np.array([r["rewards"]["format"] for r in sel], dtype=float)
            cells[level] = {"n": len(sel), "accuracy": _rate(acc),
                            "format": float(fmt.mean()) if sel else None,
                            "format_rate": _rate(fmt),
                            "no_answer_tag": (sum(r["answer"] is None for r in sel) / len(sel)
                                              if sel else None),
                            "with_video": sum(bool(r["with_video"]) for r in sel)}
        out[model] = cells
    return out


def side_by_side(results: list[dict[str, Any]], models: list[str], seed: int,
                 b: int) -> list[dict[str, Any]]:
    """Each model after the first against the first, per level (paired on items)."""
    acc: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        acc[r["model"]][r["level"]][r["item_id"]] = r["rewards"]["accuracy"]
        acc[r["model"]]["all"][r["item_id"]] = r["rewards"]["accuracy"]
    out: list[dict[str, Any]] = []
    if not models:
        return out
    base = models[0]
    for other in models[1:]:
        for level in [*_levels(results), "all"]:
            a, o = acc[base][level], acc[other][level]
            shared = sorted(set(a) & set(o))
            row: dict[str, Any] = {"base": base, "model": other, "level": level,
                                   "n": len(shared), "diff": None, "lo": None, "hi": None}
            if shared:
                x = np.array([a[s] for s in shared])
                y = np.array([o[s] for s in shared])
                row["diff"] = float(y.mean() - x.mean())
                if b > 0:
                    rng = keyed_rng(seed, base, other, level)
                    idx = rng.integers(0, len(shared), size=(b, len(shared)))
                    row["lo"], row["hi"] = percentile_bounds((y[idx] - x[idx]).mean(axis=1))
            out.append(row)
    return out


def rollout_groups(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rollout results by group (model/item), samples in order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[r["group_id"]].append(r)
    for g in groups.values():
        g.sort(key=lambda r: r["sample_index"])
    return groups


def rollout_stats(results: list[dict[str, Any]], ks: list[int], ddof: int
                  ) -> dict[str, dict[str, Any]]:
    by_model: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for g in rollout_groups(results).values():
        by_model[g[0]["model"]].append(g)
    out: dict[str, dict[str, Any]] = {}
    for model, groups in sorted(by_model.items()):
        stds, zero, all_right, all_wrong, means = [], 0, 0, 0, []
        pass_k: dict[int, list[float]] = {k: [] for k in ks}
        sizes = [len(g) for g in groups]
        for g in groups:
            rewards = [float(r["reward"]) for r in g]
            mean, std = group_stats(rewards, ddof)
            means.append(mean)
            stds.append(std)
            zero += int(max(rewards) == min(rewards))
            correct = sum(r["rewards"]["accuracy"] >= 1.0 for r in g)
            all_right += int(correct == len(g))
            all_wrong += int(correct == 0)
            for k in ks:
                if k <= len(g):
                    pass_k[k].append(pass_at_k(len(g), correct, k))
        samples = [r for g in groups for r in g]
        n = len(groups)
        out[model] = {
            "groups": n, "samples": len(samples), "min_group": min(sizes),
            "max_group": max(sizes),
            "reward_mean": float(np.mean(means)),
            "reward_std_mean": float(np.mean(stds)),
            "accuracy": float(np.mean([r["rewards"]["accuracy"] for r in samples])),
            "format": float(np.mean([r["rewards"]["format"] for r in samples])),
            "zero_variance_share": zero / n, "all_right_share": all_right / n,
            "all_wrong_share": all_wrong / n,
            "pass_at_k": {str(k): (float(np.mean(v)) if v else None)
                          for k, v in pass_k.items()},
        }
    return out


def compute(store: RunStore) -> dict[str, Any]:
    """The metrics object of a video run (``mmsim report``, the run summary)."""

    run = store.run()
    if run is None:
        return {"schema": SCHEMA, "kind": "video", "run_id": None, "models": []}
    scenario, manifest = run["scenario"], run["manifest"]
    models = [m["name"] for m in scenario.get("models", [])]
    seed = int(scenario.get("seed", 0))
    resamples = int(scenario.get("run", {}).get("bootstrap", 1000))
    ev, failed_eval = load_results(store, EP_EVAL)
    ro, failed_ro = load_results(store, EP_ROLLOUT)
    ro_spec = scenario.get("rollouts") or {}
    return {
        "schema": SCHEMA, "kind": "video", "run_id": run.get("run_id"),
        "name": run.get("name"), "status": run.get("status"),
        "simulated": bool(manifest.get("simulated")), "models": models,
        "rewards": scenario.get("rewards", ["accuracy", "format"]),
        "levels": level_table(ev),
        "side_by_side": side_by_side(ev, models, seed, resamples),
        "ci": ci_info(resamples, seed),
        "rollouts": rollout_stats(ro, list(ro_spec.get("k", [1])), int(ro_spec.get("ddof", 1)))
        if ro else {},
        "rollout_spec": ro_spec,
        "failed": {"eval": dict(failed_eval), "rollout": dict(failed_ro)},
        "frames": manifest.get("frames"),
        "dataset": manifest.get("dataset"),
    }


__all__ = ["SCHEMA", "compute", "level_table", "load_results", "rollout_groups",
           "rollout_stats", "side_by_side"]
