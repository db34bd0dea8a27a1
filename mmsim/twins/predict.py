"""Posterior predictive checks: what a fitted twin predicts for a run, against the run.

For each figure of a run (accuracy per receiver; per cell the test-set size, the
correction rate and the cumulative correction by round) the twin's prediction is the
distribution of that figure over simulated runs of the run's protocol on the run's items,
each with parameters drawn from the fit's posterior: parameter uncertainty and sampling
noise both. Predicting the source run itself is the reproduction check; predicting
another run (more rounds, another feedback policy) is the prediction check. Calibration:
the share of observed figures inside the central 50/80/90/95% predictive intervals.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsim.errors import UserError
from mmsim.twins.data import POLICY_KINDS, RunData
from mmsim.twins.fit import TwinFit
from mmsim.twins.simulate import Cell, Outcome, Protocol, simulate, summarize

LEVELS = (0.5, 0.8, 0.9, 0.95)


def protocol_of(scenario: dict[str, Any], recorded: dict[str, dict[int, str]] | None = None
                ) -> Protocol:
    """The protocol of a scenario (its canonical dict): rounds, test set, and each policy's
    feedback kind by round (built-in policies by name, others as recorded, else binary)."""
    policies: dict[str, list[str]] = {}
    for p in scenario.get("policies", []):
        rounds = p.get("schedule") or [p.get("policy") or p["name"]]
        kinds = []
        for r, name in enumerate(rounds, start=1):
            kind = POLICY_KINDS.get(name)
            if kind is None and recorded:
                kind = recorded.get(p["name"], {}).get(r)
            kinds.append(kind or "binary")
        policies[p["name"]] = kinds
    proto = scenario.get("protocol", {})
    return Protocol(max_rounds=int(proto.get("max_rounds", 3)),
                    test_set=str(proto.get("test_set", "intersection")), policies=policies)


def observed_figures(data: RunData) -> dict[str, float]:
    """The run's figures, keyed ``accuracy/<receiver>``, ``n_test/<cell>``,
    ``correction_rate/<cell>``, ``cumulative_r<k>/<cell>`` (cell: recv/prov/policy)."""
    out: dict[str, float] = {}
    for r in data.receivers:
        scr = data.screen.get(r, {})
        if scr:
            out[f"accuracy/{r}"] = sum(a.correct for a in scr.values()) / len(scr)
    first: dict[tuple[str, str, str, str], int] = {}
    for s in data.steps:
        key = (s.agent, s.provider, s.policy, s.item)
        first.setdefault(key, 0)
        if s.reply.correct and first[key] == 0:
            first[key] = s.round
    per_cell: dict[Cell, list[int]] = defaultdict(list)
    for (r, p, pol, _), k in first.items():
        per_cell[(r, p, pol)].append(k)
    rounds = int(data.scenario.get("protocol", {}).get("max_rounds", 3))
    for cell, ks in per_cell.items():
        name = "/".join(cell)
        out[f"n_test/{name}"] = float(len(ks))
        out[f"correction_rate/{name}"] = sum(k > 0 for k in ks) / len(ks)
        for t in range(1, rounds):
            out[f"cumulative_r{t}/{name}"] = sum(0 < k <= t for k in ks) / len(ks)
    return out


def predicted_figures(out: Outcome, receivers: list[str], cells: list[Cell]
                      ) -> dict[str, np.ndarray]:
    pred: dict[str, np.ndarray] = {}
    for r in receivers:
        pred[f"accuracy/{r}"] = out.accuracy(r)
    for cell in cells:
        name = "/".join(cell)
        pred[f"n_test/{name}"] = out.n_test(cell).astype(float)
        pred[f"correction_rate/{name}"] = out.correction_rate(cell)
        for t in range(1, out.max_rounds):
            pred[f"cumulative_r{t}/{name}"] = out.correction_rate(cell, t)
    return pred


@dataclass(slots=True)
class Prediction:
    rows: list[dict[str, Any]] = field(default_factory=list)
    calibration: list[dict[str, Any]] = field(default_factory=list)
    draws: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"draws": self.draws, "figures": self.rows, "calibration": self.calibration}

    def row(self, key: str) -> dict[str, Any]:
        return next(r for r in self.rows if r["figure"] == key)


def predict(fit: TwinFit, target: RunData, *, draws: int = 200, seed: int = 0) -> Prediction:
    """Predict ``target``'s figures with the twin (posterior predictive), and calibrate."""
    missing = [a for a in target.agents if a not in fit.agents]
    if missing:
        raise UserError(f"the twin has no agent {missing[0]!r} (fitted: "
                        f"{', '.join(fit.agents)})", where=str(target.run_dir))
    rng = np.random.default_rng(seed)
    item_ids = sorted(target.items)
    diff = {i: target.items[i].difficulty for i in item_ids}
    agents = fit.draw(draws, item_ids, diff, rng)
    k = np.tile(np.asarray([target.items[i].n_letters for i in item_ids]), (draws, 1))
    protocol = protocol_of(target.scenario, target.policy_kinds)
    receivers, providers = target.receivers, target.providers
    cells = [(r, p, pol) for r in receivers for p in providers for pol in protocol.policies]
    out = simulate(agents, receivers, providers, protocol, k, rng, cells)
    pred = predicted_figures(out, receivers, cells)
    obs = observed_figures(target)
    res = Prediction(draws=draws)
    for key, values in pred.items():
        if key not in obs:
            continue
        o = obs[key]
        v = values[np.isfinite(values)]
        if v.size == 0:
            continue
        s = summarize(v)
        row: dict[str, Any] = {"figure": key, "observed": o, **s,
                               "pit": float(np.mean(v < o) + 0.5 * np.mean(v == o))}
        for lev in LEVELS:
            lo, hi = np.quantile(v, [(1 - lev) / 2, (1 + lev) / 2])
            row[f"in{int(lev * 100)}"] = bool(lo <= o <= hi)
        row["lo"], row["hi"] = s["q025"], s["q975"]
        res.rows.append(row)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in res.rows:
        kind = row["figure"].split("/", 1)[0]
        kind = "cumulative" if kind.startswith("cumulative") else kind
        groups["all"].append(row)
        groups[kind].append(row)
    for name, rows in groups.items():
        res.calibration.append({"figures": name, "n": len(rows),
                                **{f"in{int(lev * 100)}": sum(r[f"in{int(lev * 100)}"]
                                                              for r in rows) / len(rows)
                                   for lev in LEVELS}})
    return res


__all__ = ["LEVELS", "Prediction", "observed_figures", "predict", "protocol_of"]
