"""Judge calibration (numpy only): AUROC of paraphrase vs corruption scores, calibration maps
(isotonic by pool-adjacent-violators, or logistic by Newton's method), expected calibration
error, and agreement between two runs of a judge.

Labels are 1 for a paraphrase of the reference (must score high) and 0 for a corruption
(must score low). A calibration map turns a judge's raw score in [0, 1] into the estimated
probability that the output states the reference's content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Method = Literal["isotonic", "logistic"]


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting 1/2
    (Mann-Whitney). None without both classes."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    # ranks with ties averaged
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = ranks[y == 1].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def ece(probs: Sequence[float], labels: Sequence[int], bins: int = 10) -> float | None:
    """Expected calibration error: the mean over equal-width bins of |mean prob - share of
    positives|, weighted by the bin's size."""
    p = np.clip(np.asarray(probs, dtype=float), 0, 1)
    y = np.asarray(labels, dtype=float)
    if len(p) == 0:
        return None
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / len(p))


@dataclass(frozen=True)
class CalibrationMap:
    """A monotone map raw score -> probability. ``isotonic``: step points (``x``, ``y``),
    interpolated linearly; ``logistic``: ``sigmoid(a * x + b)``."""

    method: Method
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 0.0
    b: float = 0.0

    def __call__(self, raw: float) -> float:
        if self.method == "logistic":
            return float(1 / (1 + np.exp(-(self.a * raw + self.b))))
        if not self.x:
            return raw
        return float(np.interp(raw, self.x, self.y))

    def apply(self, raw: Sequence[float]) -> list[float]:
        return [self(r) for r in raw]

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "a": self.a,
                "b": self.b}


def fit_isotonic(scores: Sequence[float], labels: Sequence[int]) -> CalibrationMap:
    """Non-decreasing least-squares fit of labels on scores (pool adjacent violators)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    if len(s) == 0:
        return CalibrationMap("isotonic")
    xs = np.unique(s)
    means = [float(y[s == v].mean()) for v in xs]
    weights = [float((s == v).sum()) for v in xs]
    blocks: list[list[float]] = []  # [value, weight, x_lo, x_hi]
    for v, w, x in zip(means, weights, xs, strict=True):
        blocks.append([v, w, float(x), float(x)])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, _, hi2 = blocks.pop()
            v1, w1, lo1, _ = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, lo1, hi2])
    px: list[float] = []
    py: list[float] = []
    for v, _, lo, hi in blocks:
        px += [lo, hi] if hi > lo else [lo]
        py += [v, v] if hi > lo else [v]
    return CalibrationMap("isotonic", tuple(px), tuple(py))


def fit_logistic(scores: Sequence[float], labels: Sequence[int], *, l2: float = 1e-3,
                 iters: int = 50) -> CalibrationMap:
    """Platt scaling: ``P(label=1) = sigmoid(a * score + b)``, fitted by Newton's method with
    a small ridge penalty (so perfectly separated data stays finite)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    w = np.zeros(2)
    X = np.column_stack([s, np.ones_like(s)])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + l2 * w
        h = X.T @ (X * (p * (1 - p))[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(h, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return CalibrationMap("logistic", a=float(w[0]), b=float(w[1]))


def fit(method: Method, scores: Sequence[float], labels: Sequence[int]) -> CalibrationMap:
    return fit_isotonic(scores, labels) if method == "isotonic" else fit_logistic(scores, labels)


def cross_fitted(method: Method, scores: Sequence[float], labels: Sequence[int],
                 folds: int = 2) -> list[float]:
    """Calibrated scores where each one comes from a map fitted on the other folds
    (interleaved), so the calibration error is measured out of sample."""
    s, y = list(scores), list(labels)
    out = [0.0] * len(s)
    for k in range(folds):
        train = [i for i in range(len(s)) if i % folds != k]
        m = fit(method, [s[i] for i in train], [y[i] for i in train])
        for i in range(k, len(s), folds):
            out[i] = m(s[i])
    return out


def agreement(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Two runs of a judge on the same pairs: Pearson correlation of the scores and the
    share scored exactly alike."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2:
        return {"pearson": None, "exact": None, "n": float(len(x))}
    r = None
    if x.std() > 0 and y.std() > 0:
        r = float(np.corrcoef(x, y)[0, 1])
    return {"pearson": r, "exact": float(np.mean(np.isclose(x, y))), "n": float(len(x))}


__all__ = ["CalibrationMap", "Method", "agreement", "auroc", "cross_fitted", "ece", "fit",
           "fit_isotonic", "fit_logistic"]
