"""Fitting a sim agent (a *digital twin*) to a recorded run, by maximum likelihood.

The likelihood is the sim agent's own generative model (:mod:`mmsim.backends.sim`), term by
term, so simulated data are recovered honestly. It factorises into independent blocks:

* **format noise** (per agent): every reply, screening or feedback, is first unparseable
  with probability ``format_noise`` — a binomial; Jeffreys posterior Beta(k+1/2, n-k+1/2).
* **item response** (screening, parsed replies): correct with probability
  ``sigmoid(a_j (skill_j - b_i))``. ``--difficulty data``: ``b_i`` is the dataset's
  difficulty, skill and discrimination are fitted per agent. ``--difficulty fit``: ``b_i``
  is fitted per item with a N(0, tau^2) prior whose tau is estimated (empirical Bayes) and
  the discrimination is fixed at 1 (with few agents per item the scales of difficulty and
  discrimination are not separately identifiable). Fisher scoring; weakly informative
  priors skill ~ N(0, 3^2), log a ~ N(0, 1).
* **feedback** (per receiver, parsed replies after feedback): the reply after feedback of
  kind *k* in round *r* is correct with probability ``u + (1-u) e / |R|`` on multiple
  choice and ``u`` otherwise, with ``u = uptake[k] * decay^(r-1)``, ``e`` the elimination
  probability and ``R`` the options not yet given as wrong answers; a wrong choice reply
  has probability ``(1-u) [e 1{x in R}/|R| + (1-e)(1/2 1{x = last} + 1/2 1/(k-1))]``
  (``1/(k-1)`` alone when no answer was parsed before) — so the letters themselves inform
  the elimination estimate. Logit uptakes and elimination, log decay (left unbounded so a
  true decay of 1 is an interior point; the twin uses min(decay, 1)); N(0, 3^2) priors on
  logits, N(0, 1) on log decay; damped Newton and a Laplace approximation.
* **provider** (per provider): ``feedback_quality`` from a sim provider's recorded
  helpfulness of detailed feedback, ``leak_rate`` from the leak detector's flags — binomials.

Intervals are 95%: Laplace (normal on the unconstrained scale, mapped back) or Beta
quantiles. Parameters without data keep the sim default and are marked ``fixed``; in
predictions they are drawn from a flat prior, so predictions say what they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsim.backends.sim import DEFAULT_UPTAKE, SimParams
from mmsim.errors import UserError
from mmsim.twins.data import KINDS, Item, RunData, Step
from mmsim.twins.optim import Z95, beta_draws, logit, minimize, sigmoid
from mmsim.twins.simulate import AgentDraws

THETA_SD = 3.0
LOG_A_SD = 1.0
LOGIT_SD = 3.0
LOG_DECAY_SD = 1.0
_DEFAULTS = SimParams()


@dataclass(slots=True)
class Estimate:
    """A fitted parameter: value on the sim's scale, 95% interval, observations behind it."""

    value: float
    lo: float | None = None
    hi: float | None = None
    n: int = 0
    fixed: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}
        if self.fixed:
            d["fixed"] = True
        if self.note:
            d["note"] = self.note
        return d

    def covers(self, truth: float) -> bool:
        return (self.lo is not None and self.hi is not None
                and self.lo - 1e-12 <= truth <= self.hi + 1e-12)


def _gauss_estimate(m: float, sd: float, transform: str, n: int) -> Estimate:
    def f(x: float) -> float:
        if transform == "log":
            return float(np.exp(x))
        return float(sigmoid(x)) if transform == "logit" else float(x)

    return Estimate(f(m), f(m - Z95 * sd), f(m + Z95 * sd), n)


def _beta_estimate(k: int, n: int, rng: np.random.Generator) -> Estimate:
    d = beta_draws(k, n, 20000, rng)
    lo, hi = np.quantile(d, [0.025, 0.975])
    # Jeffreys interval, with the boundary included when it was observed (k = 0 or n)
    return Estimate(k / n if n else 0.0, 0.0 if k == 0 else float(lo),
                    1.0 if k == n else float(hi), n)


# -- item response block ----------------------------------------------------------------
@dataclass(slots=True)
class IrtFit:
    agents: list[str]
    items: list[str]
    mode: str  # data | fit
    x: np.ndarray  # theta (A), log a (A, data mode), b (I, fit mode)
    cov: np.ndarray
    tau: float | None
    b_data: np.ndarray | None
    n_obs: dict[str, int]

    def theta_index(self, j: int) -> int:
        return j

    def draws(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.multivariate_normal(self.x, self.cov, size=size, method="eigh")


def fit_irt(agents: list[str], items: list[str], obs: list[tuple[int, int, int]],
            b_data: np.ndarray | None) -> IrtFit:
    """Fit the item-response block (Fisher scoring, empirical Bayes tau in fit mode)."""
    n_a, n_i = len(agents), len(items)
    o = np.asarray(obs, dtype=np.int64).reshape(-1, 3)
    aj, ii, y = o[:, 0], o[:, 1], o[:, 2].astype(float)
    data_mode = b_data is not None
    n_l = n_a if data_mode else 0
    n_b = 0 if data_mode else n_i
    p_dim = n_a + n_l + n_b
    x = np.zeros(p_dim)
    tau2 = 1.0

    def parts(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta = v[:n_a]
        a = np.exp(v[n_a:n_a + n_l]) if data_mode else np.ones(n_a)
        b = b_data if b_data is not None else v[n_a + n_l:]
        return theta, a, b

    def prior_prec() -> np.ndarray:
        return np.concatenate([np.full(n_a, THETA_SD**-2), np.full(n_l, LOG_A_SD**-2),
                               np.full(n_b, 1 / tau2)])

    def logpost(v: np.ndarray) -> float:
        theta, a, b = parts(v)
        eta = a[aj] * (theta[aj] - b[ii])
        ll = float(np.sum(y * eta - np.logaddexp(0, eta)))
        return ll - 0.5 * float(np.sum(prior_prec() * v * v))

    def grad_info(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta, a, b = parts(v)
        eta = a[aj] * (theta[aj] - b[ii])
        p = 1 / (1 + np.exp(-eta))
        w, r = p * (1 - p), y - p
        idx = [aj]
        val = [a[aj]]
        if data_mode:
            idx.append(n_a + aj)
            val.append(a[aj] * (theta[aj] - b[ii]))
        else:
            idx.append(n_a + ii)
            val.append(-a[aj])
        g = -prior_prec() * v
        h = np.diag(prior_prec())
        for ia, va in zip(idx, val, strict=True):
            g += np.bincount(ia, weights=va * r, minlength=p_dim)
            for ib, vb in zip(idx, val, strict=True):
                np.add.at(h, (ia, ib), w * va * vb)
        return g, h

    cov = np.eye(p_dim)
    for _outer in range(1 if data_mode else 60):
        lp = logpost(x)
        for _ in range(200):
            g, h = grad_info(x)
            step = np.linalg.solve(h, g)
            t = 1.0
            while t > 1e-6:
                cand = x + t * step
                lc = logpost(cand)
                if lc >= lp - 1e-10:
                    break
                t /= 2
            x, lp_old, lp = cand, lp, lc
            if np.max(np.abs(t * step)) < 1e-8 or abs(lp - lp_old) < 1e-10:
                break
        _, h = grad_info(x)
        cov = np.linalg.inv(h)
        if data_mode:
            break
        b = x[n_a:]
        new = float(np.mean(b * b + np.diag(cov)[n_a:]))
        new = max(new, 0.05**2)
        if abs(new - tau2) < 1e-5:
            tau2 = new
            break
        tau2 = new
    n_obs = {a: int(np.sum(aj == j)) for j, a in enumerate(agents)}
    return IrtFit(agents, items, "data" if data_mode else "fit", x, cov,
                  None if data_mode else float(np.sqrt(tau2)), b_data, n_obs)


# -- feedback block ------------------------------------------------------------------------
@dataclass(slots=True)
class FeedbackFit:
    agent: str
    names: list[str]  # "uptake.<kind>", "decay", "elimination"
    x: np.ndarray
    cov: np.ndarray
    counts: dict[str, int]
    loglik: float = 0.0

    def draws(self, size: int, rng: np.random.Generator) -> np.ndarray:
        if not self.names:
            return np.zeros((size, 0))
        return rng.multivariate_normal(self.x, self.cov, size=size, method="eigh")


def _feedback_arrays(steps: list[Step], items: dict[str, Item]) -> dict[str, np.ndarray]:
    rows: list[tuple[int, int, int, int, int, int, int, int, int, int]] = []
    for s in steps:
        if s.reply.answer is None:
            continue
        it = items[s.item]
        k = it.n_letters
        choice = k >= 2
        n_rem = in_rem = is_prev = known = 0
        if choice:
            told = {a for a in s.previous if a != it.answer}
            remaining = [x for x in it.letters if x not in told]
            n_rem = max(1, len(remaining))
            in_rem = int(s.reply.answer in remaining)
            is_prev = int(bool(s.previous) and s.reply.answer == s.previous[-1])
            known = int(s.reply.answer in it.letters)
        rows.append((KINDS.index(s.kind), s.round, int(choice), int(s.reply.correct), n_rem,
                     in_rem, is_prev, int(bool(s.previous)), max(k, 2), known))
    arr = np.asarray(rows, dtype=float).reshape(-1, 10)
    keys = ("kind", "round", "choice", "correct", "n_rem", "in_rem", "is_prev", "has_prev",
            "k", "known")
    return {k: arr[:, i] for i, k in enumerate(keys)}


def fit_feedback(agent: str, steps: list[Step], items: dict[str, Item]) -> FeedbackFit:
    """Fit uptake by kind, decay by round and elimination for one receiver."""
    a = _feedback_arrays(steps, items)
    kinds_idx = sorted({int(k) for k in a["kind"]})
    names = [f"uptake.{KINDS[k]}" for k in kinds_idx]
    has_decay = bool(np.any(a["round"] >= 2))
    has_elim = bool(np.any(a["choice"] > 0))
    if has_decay:
        names.append("decay")
    if has_elim:
        names.append("elimination")
    counts = {f"uptake.{KINDS[k]}": int(np.sum(a["kind"] == k)) for k in kinds_idx}
    counts["decay"] = int(np.sum(a["round"] >= 2))
    counts["elimination"] = int(np.sum(a["choice"] > 0))
    if not names:
        return FeedbackFit(agent, [], np.zeros(0), np.zeros((0, 0)), counts)
    pos = {k: i for i, k in enumerate(kinds_idx)}
    kcol = np.asarray([pos[int(k)] for k in a["kind"]], dtype=np.int64)
    n_k = len(kinds_idx)
    choice = a["choice"] > 0
    correct = a["correct"] > 0
    known = a["known"] > 0
    wrong_base = np.where(a["has_prev"] > 0, 0.5 * a["is_prev"] + 0.5 / (a["k"] - 1),
                          1 / (a["k"] - 1))
    prior_sd = np.asarray([LOGIT_SD] * n_k + ([LOG_DECAY_SD] if has_decay else [])
                          + ([LOGIT_SD] if has_elim else []))

    def nll(v: np.ndarray) -> float:
        u = sigmoid(v[:n_k])[kcol]
        if has_decay:
            u = u * np.exp(np.clip(v[n_k] * (a["round"] - 1), -50.0, 50.0))
        u = np.clip(u, 1e-9, 1 - 1e-9)
        e = float(sigmoid(v[-1])) if has_elim else 0.0
        pc = np.where(choice, u + (1 - u) * e / np.maximum(a["n_rem"], 1), u)
        pw = (1 - u) * (e * a["in_rem"] / np.maximum(a["n_rem"], 1) + (1 - e) * wrong_base)
        p = np.where(correct, pc, np.where(choice & known, pw, 1 - pc))
        return float(-np.sum(np.log(np.maximum(p, 1e-300))) + 0.5 * np.sum((v / prior_sd) ** 2))

    x0 = np.zeros(len(names))
    x, cov = minimize(nll, x0)
    return FeedbackFit(agent, names, x, cov, counts, loglik=-nll(x))


# -- the twin -----------------------------------------------------------------------------
@dataclass(slots=True)
class AgentFit:
    name: str
    roles: list[str]
    estimates: dict[str, Estimate] = field(default_factory=dict)
    source_backend: str = ""

    def params(self) -> dict[str, Any]:
        """The sim ``params:`` of the twin (point estimates)."""
        e = self.estimates
        out: dict[str, Any] = {"skill": round(e["skill"].value, 4),
                               "discrimination": round(e["discrimination"].value, 4),
                               "format_noise": round(e["format_noise"].value, 5)}
        if "receiver" in self.roles:
            out["uptake"] = {k: round(min(max(e[f"uptake.{k}"].value, 0.0), 1.0), 4)
                             for k in KINDS}
            out["uptake_decay"] = round(min(max(e["uptake_decay"].value, 1e-4), 1.0), 4)
            out["elimination"] = round(e["elimination"].value, 4)
        if "provider" in self.roles:
            out["feedback_quality"] = round(e["feedback_quality"].value, 4)
            out["leak_rate"] = round(e["leak_rate"].value, 4)
        return out


@dataclass(slots=True)
class TwinFit:
    """A fitted twin of every agent of a run, with the blocks needed to draw from its
    (approximate) posterior."""

    run_id: str
    run_dir: str
    scenario: dict[str, Any]
    mode: str
    agents: dict[str, AgentFit]
    irt: IrtFit
    feedback: dict[str, FeedbackFit]
    binomials: dict[tuple[str, str], tuple[int, int]]  # (agent, param) -> (k, n)
    items: dict[str, Item]
    difficulty: dict[str, Estimate] = field(default_factory=dict)  # fit mode

    def agent_params(self) -> dict[str, dict[str, Any]]:
        return {n: a.params() for n, a in self.agents.items()}

    def draw(self, size: int, item_ids: list[str], data_difficulty: dict[str, float | None],
             rng: np.random.Generator) -> dict[str, AgentDraws]:
        """Posterior draws of every agent's parameters, with the difficulty of ``item_ids``
        (shape (size, len(item_ids)); fit mode: fitted items drawn from their posterior,
        new items from N(0, tau^2))."""
        irt = self.irt
        xs = irt.draws(size, rng)
        n_a = len(irt.agents)
        n_i = len(item_ids)
        if irt.mode == "data":
            diff = np.tile(np.asarray([data_difficulty.get(i) or 0.0 for i in item_ids]),
                           (size, 1))
        else:
            index = {it: k for k, it in enumerate(irt.items)}
            diff = rng.normal(0.0, irt.tau or 1.0, size=(size, n_i))
            for col, it in enumerate(item_ids):
                if it in index:
                    diff[:, col] = xs[:, n_a + index[it]]
        out: dict[str, AgentDraws] = {}
        for j, name in enumerate(irt.agents):
            theta = xs[:, j]
            a = np.exp(xs[:, n_a + j]) if irt.mode == "data" else np.ones(size)
            fb = self.feedback.get(name)
            fx = fb.draws(size, rng) if fb is not None else np.zeros((size, 0))
            names = fb.names if fb is not None else []

            def take(key: str, transform: str, prior: tuple[float, float],
                     fx: np.ndarray = fx, names: list[str] = names) -> np.ndarray:
                if key in names:
                    v = fx[:, names.index(key)]
                    return np.asarray(sigmoid(v) if transform == "logit" else np.exp(v))
                return rng.uniform(prior[0], prior[1], size=size)

            up = {k: take(f"uptake.{k}", "logit", (0.0, 1.0)) for k in KINDS}
            decay = take("decay", "log", (0.5, 1.0))
            elim = take("elimination", "logit", (0.0, 1.0))

            def binom(param: str, name: str = name) -> np.ndarray:
                k, n = self.binomials.get((name, param), (0, 0))
                return beta_draws(k, n, size, rng)

            out[name] = AgentDraws(skill=theta, discrimination=a, memorized=np.zeros(size),
                                   format_noise=binom("format_noise"), elimination=elim,
                                   decay=decay, feedback_quality=binom("feedback_quality"),
                                   uptake=up, difficulty=diff)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "mmsim.twin-fit.v1",
            "source": {"run_id": self.run_id, "run_dir": self.run_dir},
            "difficulty_mode": self.mode,
            "difficulty_prior_sd": self.irt.tau,
            "agents": {n: {"roles": a.roles, "source_backend": a.source_backend,
                           "params": a.params(),
                           "estimates": {k: v.to_dict() for k, v in a.estimates.items()}}
                       for n, a in self.agents.items()},
            "item_difficulty": {k: v.to_dict() for k, v in self.difficulty.items()},
        }


def fit_run(data: RunData, *, difficulty: str = "auto", seed: int = 0) -> TwinFit:
    """Fit twins of every agent of ``data``. ``difficulty``: ``data`` (the items'
    ``difficulty``, which must be set, see :func:`~mmsim.twins.data.attach_difficulty`),
    ``fit`` (estimated per item) or ``auto`` (data when every item has one)."""
    rng = np.random.default_rng(seed)
    items = data.items
    item_ids = sorted(items)
    have = all(items[i].difficulty is not None for i in item_ids)
    if difficulty == "auto":
        difficulty = "data" if have else "fit"
    if difficulty == "data" and not have:
        raise UserError("the dataset gives no difficulty for some items; use --difficulty fit",
                        where="--difficulty")
    agents = data.agents
    index = {it: k for k, it in enumerate(item_ids)}
    obs = [(j, index[sid], int(ans.correct)) for j, a in enumerate(agents)
           for sid, ans in sorted(data.screen.get(a, {}).items()) if ans.answer is not None]
    b_data = (np.asarray([float(items[i].difficulty or 0.0) for i in item_ids])
              if difficulty == "data" else None)
    irt = fit_irt(agents, item_ids, obs, b_data)
    sd = np.sqrt(np.diag(irt.cov))
    specs = {a["name"]: a for role in ("receivers", "providers")
             for a in data.scenario.get(role, [])}
    out: dict[str, AgentFit] = {}
    feedback: dict[str, FeedbackFit] = {}
    binomials: dict[tuple[str, str], tuple[int, int]] = {}
    n_a = len(agents)
    for j, name in enumerate(agents):
        roles = [r for r in ("receiver", "provider")
                 if name in (data.receivers if r == "receiver" else data.providers)]
        af = AgentFit(name, roles, source_backend=str(specs.get(name, {}).get("backend", "")))
        e = af.estimates
        e["skill"] = _gauss_estimate(irt.x[j], sd[j], "id", irt.n_obs[name])
        if irt.mode == "data":
            e["discrimination"] = _gauss_estimate(irt.x[n_a + j], sd[n_a + j], "log",
                                                  irt.n_obs[name])
        else:
            e["discrimination"] = Estimate(1.0, fixed=True, note="Rasch form in fit mode")
        k, n = data.responses(name)
        binomials[(name, "format_noise")] = (k, n)
        e["format_noise"] = _beta_estimate(k, n, rng)
        if "receiver" in roles:
            steps = [s for s in data.steps if s.agent == name]
            fb = fit_feedback(name, steps, items)
            feedback[name] = fb
            fsd = np.sqrt(np.diag(fb.cov)) if fb.names else np.zeros(0)
            for kind in KINDS:
                key = f"uptake.{kind}"
                if key in fb.names:
                    i = fb.names.index(key)
                    e[key] = _gauss_estimate(fb.x[i], fsd[i], "logit", fb.counts[key])
                else:
                    e[key] = Estimate(DEFAULT_UPTAKE[kind], fixed=True, note="no data")
            if "decay" in fb.names:
                i = fb.names.index("decay")
                est = _gauss_estimate(fb.x[i], fsd[i], "log", fb.counts["decay"])
                if est.value > 1:
                    est.note = "estimate above 1; the twin uses 1"
                e["uptake_decay"] = est
            else:
                e["uptake_decay"] = Estimate(1.0, fixed=True, note="no round >= 2")
            if "elimination" in fb.names:
                i = fb.names.index("elimination")
                e["elimination"] = _gauss_estimate(fb.x[i], fsd[i], "logit",
                                                   fb.counts["elimination"])
            else:
                e["elimination"] = Estimate(_DEFAULTS.elimination, fixed=True, note="no data")
        if "provider" in roles:
            given = data.feedback.get(name, [])
            detailed = [g for g in given if g[0] == "detailed"]
            rated = [g for g in detailed if g[1] is not None]
            if rated:
                k = sum(bool(g[1]) for g in rated)
                binomials[(name, "feedback_quality")] = (k, len(rated))
                e["feedback_quality"] = _beta_estimate(k, len(rated), rng)
            elif detailed:  # a real provider: its effect is all in the receivers' uptake
                binomials[(name, "feedback_quality")] = (len(detailed), len(detailed))
                e["feedback_quality"] = Estimate(
                    1.0, fixed=True, n=len(detailed),
                    note="helpfulness not recorded: receivers' detailed uptake holds it")
            else:
                e["feedback_quality"] = Estimate(_DEFAULTS.feedback_quality, fixed=True,
                                                 note="no detailed feedback")
            if detailed:
                k = sum(g[2] for g in detailed)
                binomials[(name, "leak_rate")] = (k, len(detailed))
                e["leak_rate"] = _beta_estimate(k, len(detailed), rng)
            else:
                e["leak_rate"] = Estimate(_DEFAULTS.leak_rate, fixed=True, note="no data")
        out[name] = af
    diff: dict[str, Estimate] = {}
    if irt.mode == "fit":
        off = n_a
        for i, it in enumerate(item_ids):
            diff[it] = _gauss_estimate(irt.x[off + i], sd[off + i], "id",
                                       sum(1 for o in obs if o[1] == i))
    return TwinFit(run_id=data.run_id, run_dir=str(data.run_dir), scenario=data.scenario,
                   mode=irt.mode, agents=out, irt=irt, feedback=feedback,
                   binomials=binomials, items=items, difficulty=diff)


__all__ = ["AgentFit", "Estimate", "TwinFit", "fit_run", "logit"]
