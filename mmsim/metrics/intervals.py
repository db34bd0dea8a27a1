"""Confidence intervals, one method per kind of quantity (docs/metrics.md, "Intervals").

* **Proportions** (accuracy, correction rate, cumulative correction by round, parse-failure,
  leak and format rates: k successes out of n independent items) get the **Wilson score
  interval**. It is closed-form and deterministic, so one quantity on the same items has one
  interval wherever it is shown; it never has zero width at 0% or 100% (0 of 12 gives
  [0.0, 24.2]); and its coverage stays close to the nominal level at small n (Brown, Cai and
  DasGupta, *Statistical Science* 2001), where the percentile bootstrap collapses to [0, 0]
  and Wald's interval undercovers badly. Clopper-Pearson is guaranteed never to undercover
  but is conservative (about 98-99% actual coverage at n = 10-30), which makes honest
  differences look insignificant; Wilson's average coverage over p is close to 95% at every n
  (tests/test_intervals.py checks it by simulation).
* **Differences** between cells and runs, and means of non-binary scores (judge scores,
  rewards), keep the **paired percentile bootstrap over items**, seeded (the seed is in the
  report's ``ci`` and the run's manifest).
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist
from typing import Any

import numpy as np

#: The level of every interval mmsim reports.
LEVEL = 0.95
WILSON = "wilson score"
PAIRED_BOOTSTRAP = "paired percentile bootstrap over shared items"


def z_value(level: float = LEVEL) -> float:
    """The two-sided standard-normal quantile of ``level`` (1.96 for 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_bounds(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials.

    Raises:
        ValueError: when ``n < 1`` or ``k`` is not in ``[0, n]``.
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    z = z_value(level)
    p = k / n
    z2n = z * z / n
    denom = 1 + z2n
    center = (p + z2n / 2) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    lo, hi = center - half, center + half
    # exact at the edges (rounding could leave 1e-17 below 0 or a hair under k/n)
    lo = 0.0 if k == 0 else max(0.0, min(lo, p))
    hi = 1.0 if k == n else min(1.0, max(hi, p))
    return lo, hi


def proportion(k: int, n: int, level: float = LEVEL) -> dict[str, Any]:
    """``{value, lo, hi, k, n}`` for ``k`` of ``n`` with the Wilson interval (all None but
    ``k``/``n`` when ``n == 0``)."""
    if n == 0:
        return {"value": None, "lo": None, "hi": None, "k": 0, "n": 0}
    lo, hi = wilson_bounds(k, n, level)
    return {"value": k / n, "lo": lo, "hi": hi, "k": int(k), "n": int(n)}


def percentile_bounds(draws: np.ndarray[Any, Any], level: float = LEVEL
                      ) -> tuple[float | None, float | None]:
    """The central ``level`` percentile interval of bootstrap draws (non-finite draws, from
    resamples where a ratio's denominator was 0, are left out)."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return None, None
    tail = round(100 * (1 - level) / 2, 10)
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def keyed_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash of ``parts`` (a cell's key and metric):
    a bootstrap interval then depends only on its own items and the seed, not on which other
    cells were computed before it, so the same quantity shows the same interval everywhere."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def ci_info(resamples: int, seed: int, level: float = LEVEL) -> dict[str, Any]:
    """The ``ci`` block of a report: which method serves which quantity, level and seed."""
    return {"method": WILSON, "level": level, "proportions": WILSON,
            "differences": PAIRED_BOOTSTRAP, "resamples": resamples, "seed": seed}


__all__ = ["LEVEL", "PAIRED_BOOTSTRAP", "WILSON", "ci_info", "keyed_rng", "percentile_bounds",
           "proportion", "wilson_bounds", "z_value"]
