"""Small numerical helpers (numpy only): a damped Newton minimiser with finite-difference
derivatives for the few-parameter factors, and interval helpers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Z95 = 1.959963984540054


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    out: np.ndarray = np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=float)))
    return out


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def num_grad(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def num_hess(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    n = len(x)
    hm = np.zeros((n, n))
    f0 = f(x)
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = h
        hm[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h**2
        for j in range(i + 1, n):
            ej = np.zeros(n)
            ej[j] = h
            v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h * h)
            hm[i, j] = hm[j, i] = v
    return hm


def _pd_inverse(hm: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric matrix made positive definite (eigenvalues floored)."""
    w, v = np.linalg.eigh((hm + hm.T) / 2)
    w = np.maximum(w, 1e-8 * max(1.0, float(np.max(np.abs(w)))))
    out: np.ndarray = (v / w) @ v.T
    return out


def minimize(f: Callable[[np.ndarray], float], x0: np.ndarray, *, max_iter: int = 100,
             tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Minimise a smooth ``f`` by damped Newton steps; returns (argmin, inverse Hessian
    at the minimum) — the Laplace approximation's mean and covariance when ``f`` is a
    negative log posterior."""
    x = np.asarray(x0, dtype=float).copy()
    if len(x) == 0:
        return x, np.zeros((0, 0))
    fx = f(x)
    for _ in range(max_iter):
        g = num_grad(f, x)
        if np.max(np.abs(g)) < tol:
            break
        step = -_pd_inverse(num_hess(f, x)) @ g
        t = 1.0
        while t > 1e-8:
            cand = x + t * step
            fc = f(cand)
            if np.isfinite(fc) and fc <= fx + 1e-4 * t * float(g @ step):
                break
            t /= 2
        else:  # Newton direction failed: a small gradient step
            cand = x - 1e-3 * g
            fc = f(cand)
            if not np.isfinite(fc) or fc >= fx:
                break
        done = abs(fx - fc) < 1e-12 and np.max(np.abs(cand - x)) < 1e-9
        x, fx = cand, fc
        if done:
            break
    return x, _pd_inverse(num_hess(f, x))


def beta_draws(k: int, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Posterior draws of a binomial proportion under the Jeffreys prior Beta(1/2, 1/2)."""
    return rng.beta(k + 0.5, n - k + 0.5, size=size)
