"""``mmsim plan``: how many items, seeds and rounds a study needs, by simulating its twins.

Every agent of the scenario must be a sim agent (a fitted twin, or hand-set params). Each
replicate study draws ``n`` items with replacement from the scenario's dataset (their
difficulty and number of options), plays ``s`` independent seeds on them and pools the
seeds; one simulation of the largest design gives every smaller one (prefixes of
independent draws). Per design:

* ``ci_width``: 2 x 1.96 x the standard deviation of the figure over replicate studies —
  the width a 95% interval must have to cover the truth (for correction rates, the
  widest selected cell);
* ``mdd``: the minimum detectable difference between two receivers (``--compare A,B``) at
  a two-sided 5% level with 80% power, ``(1.96 + 0.84) x sd(A - B)``; ``power`` is the
  power to detect the target difference;
* rounds: the smallest round budget after which the remaining rounds add less than half
  the target (a CI width or a difference) to the correction rate.

The recommendation is the cheapest design (items x seeds) that meets the target with at
most as many items as the dataset holds; more seeds stand in for more items when the
dataset is too small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsim.data.sample import Sample
from mmsim.errors import UserError
from mmsim.protocols.interfeedback.scenario import Scenario
from mmsim.twins.predict import protocol_of
from mmsim.twins.simulate import AgentDraws, Cell, simulate

Z = 1.959963984540054
Z80 = 0.8416212335729143
DEFAULT_ITEMS = (25, 50, 100, 200, 400, 800)
DEFAULT_SEEDS = (1, 2, 4)


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # ci_width | mdd
    value: float

    @classmethod
    def parse(cls, text: str) -> Target:
        key, _, val = text.partition("=")
        key = key.strip()
        if key not in ("ci_width", "mdd") or not val:
            raise UserError("expected ci_width=W or mdd=D (e.g. ci_width=0.03)",
                            where="--target")
        try:
            v = float(val)
        except ValueError:
            raise UserError(f"not a number: {val!r}", where="--target") from None
        if not 0 < v < 1:
            raise UserError("must be between 0 and 1", where="--target")
        return cls(key, v)


def _power(delta: float, sd: float) -> float:
    if sd <= 0:
        return 1.0
    from math import erf, sqrt

    def phi(x: float) -> float:
        return 0.5 * (1 + erf(x / sqrt(2)))

    return phi(delta / sd - Z) + phi(-delta / sd - Z)


def plan(scn: Scenario, samples: list[Sample], target: Target, *,
         metric: str = "correction_rate", compare: tuple[str, str] | None = None,
         cells: list[Cell] | None = None, items: tuple[int, ...] = DEFAULT_ITEMS,
         seeds: tuple[int, ...] = DEFAULT_SEEDS, max_rounds: int | None = None,
         reps: int = 100, seed: int = 0) -> dict[str, Any]:
    """Simulate designs and recommend one (see the module docstring). Returns a JSON-able
    dict: ``rows`` (the power curve), ``rounds``, ``recommendation``."""
    if metric not in ("correction_rate", "accuracy"):
        raise UserError("must be correction_rate or accuracy", where="--metric")
    agents = scn.agents()
    real = [n for n, a in agents.items() if a.backend != "sim"]
    if real:
        raise UserError(f"agent {real[0]!r} is not a sim agent: plan simulates, so fit a "
                        "twin of it first (mmsim fit RUN_DIR -o twin.yaml)", where="SCENARIO")
    receivers = [r.name for r in scn.receivers]
    providers = [p.name for p in scn.providers]
    if target.kind == "mdd" and compare is None:
        if len(receivers) < 2:
            raise UserError("a minimum detectable difference needs two receivers",
                            where="--compare")
        compare = (receivers[0], receivers[1])
    if compare is not None:
        for c in compare:
            if c not in receivers:
                raise UserError(f"{c!r} is not a receiver ({', '.join(receivers)})",
                                where="--compare")
    protocol = protocol_of(scn.model_dump(mode="json"))
    r_max = max(max_rounds or 0, protocol.max_rounds)
    protocol.max_rounds = r_max
    if cells is None:
        cells = [(r, p, pol) for r in receivers for p in providers for pol in protocol.policies]
    if compare is not None and metric == "correction_rate":
        p0, pol0 = cells[0][1], cells[0][2]
        cells = [(compare[0], p0, pol0), (compare[1], p0, pol0)]
    items = tuple(sorted(set(items)))
    seeds = tuple(sorted(set(seeds)))
    n_max, s_max = items[-1], seeds[-1]
    pool = len(samples)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, pool, size=(reps, n_max))
    cols = np.tile(idx, (1, s_max))  # seed-major: column = seed * n_max + item
    k_pool = np.asarray([s.answer_format.letters.__len__() if s.answer_format.kind == "choice"
                         else 0 for s in samples])
    draws: dict[str, AgentDraws] = {}
    for name, spec in agents.items():
        over = dict(spec.params.get("item_difficulty") or {})
        d_pool = np.asarray([float(over.get(s.id, s.difficulty if s.difficulty is not None
                                            else 0.0)) for s in samples])
        draws[name] = AgentDraws.point(spec.params, d_pool[cols])
    out = simulate(draws, receivers, providers, protocol, k_pool[cols], rng, cells)

    def prefix(a: np.ndarray) -> np.ndarray:
        """Cumulative sums over items then seeds: [rep, s-1, n-1] = sum over the design."""
        a3 = a.reshape(reps, s_max, n_max).astype(float)
        return np.cumsum(np.cumsum(a3, axis=2), axis=1)

    series: dict[str, dict[int, np.ndarray]] = {}  # figure -> rounds -> prefix sums
    base: dict[str, np.ndarray] = {}
    if metric == "accuracy":
        for r in receivers if compare is None else list(compare):
            series[r] = {0: prefix(out.screen_correct[r])}
            base[r] = prefix(np.ones_like(out.screen_correct[r]))
    else:
        for cell in cells:
            name = "/".join(cell)
            s_at = out.solved_at[cell]
            series[name] = {t: prefix((s_at > 0) & (s_at <= t)) for t in range(1, r_max + 1)}
            base[name] = prefix(out.test[cell])

    def values(name: str, t: int, n: int, s: int) -> np.ndarray:
        num = series[name][t if metric != "accuracy" else 0][:, s - 1, n - 1]
        den = base[name][:, s - 1, n - 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1), np.nan)

    names = list(series)

    def figure(t: int, n: int, s: int) -> dict[str, Any]:
        vals = {nm: values(nm, t, n, s) for nm in names}
        widths = {nm: 2 * Z * float(np.nanstd(v)) for nm, v in vals.items()}
        worst = max(widths, key=lambda nm: widths[nm])
        row: dict[str, Any] = {"items": n, "seeds": s, "rounds": t, "feasible": n <= pool,
                               "figure": worst, "value": float(np.nanmean(vals[worst])),
                               "ci_width": widths[worst]}
        if compare is not None:
            a, b = names[0], names[1]
            diff = vals[a] - vals[b]
            sd = float(np.nanstd(diff))
            row["difference"] = float(np.nanmean(diff))
            row["mdd"] = (Z + Z80) * sd
            row["power"] = _power(target.value, sd)
        row["meets"] = (row["ci_width"] <= target.value if target.kind == "ci_width"
                        else row["mdd"] <= target.value)
        # model calls: screening of every agent, then the receivers' feedback rounds
        extra = float(used_rounds(t)[:, s - 1, n - 1].mean()) if metric != "accuracy" else 0.0
        row["calls"] = round(n * s * len(agents) + extra)
        return row

    used_cache: dict[int, np.ndarray] = {}

    def used_rounds(t: int) -> np.ndarray:
        if t not in used_cache:
            tot = np.zeros((reps, s_max * n_max))
            for cell in cells:
                s_at = out.solved_at[cell]
                tot += np.where((s_at > 0) & (s_at <= t), s_at, t) * out.test[cell]
            used_cache[t] = prefix(tot)
        return used_cache[t]

    # rounds: at the dataset's size (or the largest design), one seed
    n_ref = min(max(n for n in items if n <= max(pool, items[0])), n_max)
    rounds_rows: list[dict[str, Any]] = []
    rec_rounds = protocol.max_rounds if metric == "accuracy" else r_max
    if metric != "accuracy":
        means = [float(np.nanmean([np.nanmean(values(nm, t, n_ref, 1)) for nm in names]))
                 for t in range(1, r_max + 1)]
        half = target.value / 2
        rec_rounds = r_max
        for t in range(1, r_max + 1):
            rest = means[-1] - means[t - 1]
            rounds_rows.append({"rounds": t, "correction_rate": means[t - 1],
                                "gain": means[t - 1] - (means[t - 2] if t > 1 else 0.0),
                                "rest": rest})
        for t in range(1, r_max + 1):
            if means[-1] - means[t - 1] < half:
                rec_rounds = t
                break
    rows = [figure(rec_rounds, n, s) for s in seeds for n in items]
    ok = [r for r in rows if r["meets"] and r["feasible"]]
    best = min(ok, key=lambda r: (r["items"] * r["seeds"], r["seeds"])) if ok else None
    note = ""
    if best is None:
        anyok = [r for r in rows if r["meets"]]
        if anyok:
            best = min(anyok, key=lambda r: (r["items"] * r["seeds"], r["seeds"]))
            note = (f"needs more items than the dataset holds ({pool}): enlarge it "
                    "(synthetic: dataset.size) or add seeds")
        else:  # extrapolate the largest design by 1/sqrt(items)
            big = max((r for r in rows if r["seeds"] == 1), key=lambda r: r["items"])
            got = big["ci_width"] if target.kind == "ci_width" else big["mdd"]
            need = int(np.ceil(big["items"] * (got / target.value) ** 2))
            best = {**big, "items": need, "ci_width": big["ci_width"] * np.sqrt(
                big["items"] / need), "calls": int(big["calls"] * need / big["items"])}
            if "mdd" in big:
                best["mdd"] = big["mdd"] * np.sqrt(big["items"] / need)
                best["power"] = _power(target.value, best["mdd"] / (Z + Z80))
            note = (f"extrapolated from {big['items']} items by 1/sqrt(items): no design in "
                    "the grid meets the target" + (f"; the dataset holds {pool} items"
                                                   if need > pool else ""))
    rec: dict[str, Any] = {"met": best is not None and not note, "note": note,
                           "extrapolated": note.startswith("extrapolated"),
                           "rounds": rec_rounds}
    if best is not None:
        rec.update({k: best[k] for k in ("items", "seeds", "ci_width", "calls")})
        if "mdd" in best:
            rec.update(mdd=best["mdd"], power=best["power"])
    return {
        "schema": "mmsim.plan.v1", "simulated": True, "scenario": scn.name,
        "target": {"kind": target.kind, "value": target.value}, "metric": metric,
        "compare": list(compare) if compare else None, "replicates": reps, "seed": seed,
        "dataset_items": pool, "max_rounds": r_max, "rows": rows, "rounds": rounds_rows,
        "recommendation": rec,
    }


BARS = " ▏▎▍▌▋▊▉█"
SPARK = "▁▂▃▄▅▆▇█"


def bar(frac: float, width: int = 24) -> str:
    frac = min(max(frac, 0.0), 1.0)
    full, rem = divmod(round(frac * width * 8), 8)
    return ("█" * full + (BARS[rem] if rem else "")).ljust(width)


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(7, int((v - lo) / span * 7.999))] for v in values)


__all__ = ["Target", "bar", "plan", "sparkline"]
