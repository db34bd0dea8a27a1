"""A vectorised simulator of the sim agent's generative model (numpy).

It draws the same distribution as running ``backend: sim`` agents through the runner
(screening, test sets, feedback rounds; see :mod:`mmsim.backends.sim`), but for many
replicate runs at once and with parameters that may differ per replicate (posterior
draws). It does not reproduce the runner's random streams, only their distribution; the
twins tests check the two agree. Letters are exchangeable in the sim, so the truth is
letter 0 and wrong letters are 1..k-1; ``k = 0`` marks a free-form item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsim.backends.sim import DEFAULT_UPTAKE, SimParams
from mmsim.twins.data import KINDS

Cell = tuple[str, str, str]  # receiver, provider, policy


@dataclass(slots=True)
class AgentDraws:
    """Sim parameters per replicate (arrays of shape (S,)) and the difficulty of every item
    column (shape (S, N))."""

    skill: np.ndarray
    discrimination: np.ndarray
    memorized: np.ndarray
    format_noise: np.ndarray
    elimination: np.ndarray
    decay: np.ndarray
    feedback_quality: np.ndarray
    uptake: dict[str, np.ndarray]
    difficulty: np.ndarray

    @classmethod
    def point(cls, params: dict[str, Any], difficulty: np.ndarray) -> AgentDraws:
        """Fixed ``params`` (a sim ``params:`` mapping) for every replicate; ``difficulty``
        has shape (S, N) (the data's difficulty, or ``item_difficulty`` already applied)."""
        p = SimParams(**{k: v for k, v in params.items() if k in SimParams.model_fields})
        s = difficulty.shape[0]
        up = {**DEFAULT_UPTAKE, **p.uptake}

        def full(v: float) -> np.ndarray:
            return np.full(s, float(v))

        return cls(skill=full(p.skill), discrimination=full(p.discrimination),
                   memorized=full(p.memorized), format_noise=full(p.format_noise),
                   elimination=full(p.elimination), decay=full(p.uptake_decay),
                   feedback_quality=full(p.feedback_quality),
                   uptake={k: full(up.get(k, up["binary"])) for k in KINDS},
                   difficulty=difficulty)


@dataclass(slots=True)
class Protocol:
    """``policies``: policy name -> feedback kind by round (the last repeats)."""

    max_rounds: int
    test_set: str
    policies: dict[str, list[str]]


@dataclass(slots=True)
class Outcome:
    """Per replicate (rows) and item column: screening correctness per agent, and per cell
    the test set and the round an item was corrected in (0: not corrected)."""

    max_rounds: int
    screen_correct: dict[str, np.ndarray]
    screen_unparsed: dict[str, np.ndarray]
    test: dict[Cell, np.ndarray] = field(default_factory=dict)
    solved_at: dict[Cell, np.ndarray] = field(default_factory=dict)

    def accuracy(self, agent: str) -> np.ndarray:
        return np.asarray(self.screen_correct[agent].mean(axis=1))

    def n_test(self, cell: Cell) -> np.ndarray:
        return np.asarray(self.test[cell].sum(axis=1))

    def corrected(self, cell: Cell, by_round: int | None = None) -> np.ndarray:
        r = self.max_rounds if by_round is None else by_round
        s = self.solved_at[cell]
        return np.asarray(((s > 0) & (s <= r)).sum(axis=1))

    def correction_rate(self, cell: Cell, by_round: int | None = None) -> np.ndarray:
        n = self.n_test(cell)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, self.corrected(cell, by_round) / np.maximum(n, 1), np.nan)


def _col(v: np.ndarray) -> np.ndarray:
    return v[:, None]


def _screen(a: AgentDraws, k: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First answers: (correct, unparsed, letter) with letter -1 when none/free-form."""
    shape = k.shape
    unparsed = rng.random(shape) < _col(a.format_noise)
    eta = _col(a.discrimination) * (_col(a.skill) - a.difficulty)
    p = _col(a.memorized) + (1 - _col(a.memorized)) / (1 + np.exp(-eta))
    correct = ~unparsed & (rng.random(shape) < p)
    wrong = 1 + np.floor(rng.random(shape) * np.maximum(k - 1, 1)).astype(np.int64)
    letter = np.where(~correct & ~unparsed & (k >= 2), wrong, -1)
    return correct, unparsed, letter


def _feedback(rec: AgentDraws, prov: AgentDraws, kinds: list[str], test: np.ndarray,
              letter0: np.ndarray, k: np.ndarray, max_rounds: int,
              rng: np.random.Generator) -> np.ndarray:
    shape = test.shape
    width = max(int(k.max(initial=0)), 1)
    letters = np.arange(width)
    told = np.zeros((*shape, width), dtype=bool)
    rows, cols = np.nonzero(letter0 >= 1)
    told[rows, cols, letter0[rows, cols]] = True
    valid = letters[None, None, :] < k[..., None]
    last = letter0.copy()
    choice = k >= 2
    active = test.copy()
    solved_at = np.zeros(shape, dtype=np.int64)
    for t in range(1, max_rounds + 1):
        if not active.any():
            break
        kind = kinds[min(t, len(kinds)) - 1]
        kind = kind if kind in KINDS else "binary"
        if kind == "detailed":
            helpful = rng.random(shape) < _col(prov.feedback_quality)
            up = np.where(helpful, _col(rec.uptake["detailed"]), _col(rec.uptake["misleading"]))
        else:
            up = np.broadcast_to(_col(rec.uptake[kind]), shape)
        u = up * _col(rec.decay) ** (t - 1)
        unparsed = rng.random(shape) < _col(rec.format_noise)
        take = rng.random(shape) < u
        elim = rng.random(shape) < _col(rec.elimination)
        remaining = valid & ~told
        n_rem = remaining.sum(axis=-1)
        pick = np.floor(rng.random(shape) * np.maximum(n_rem, 1)).astype(np.int64)
        # the pick-th remaining letter (0, the truth, is always remaining)
        rank = np.cumsum(remaining, axis=-1) - 1
        elim_letter = np.argmax(remaining & (rank == pick[..., None]), axis=-1)
        repeat = (last >= 1) & (rng.random(shape) < 0.5)
        wrong = 1 + np.floor(rng.random(shape) * np.maximum(k - 1, 1)).astype(np.int64)
        new = np.where(elim, elim_letter, np.where(repeat, last, wrong))
        correct = active & ~unparsed & (take | (choice & elim & (new == 0)))
        solved_at[correct] = t
        wrong_parsed = active & ~unparsed & ~correct & choice
        r, c = np.nonzero(wrong_parsed)
        told[r, c, new[r, c]] = True
        last = np.where(wrong_parsed, new, last)
        active &= ~correct
    return solved_at


def simulate(agents: dict[str, AgentDraws], receivers: list[str], providers: list[str],
             protocol: Protocol, n_letters: np.ndarray, rng: np.random.Generator,
             cells: list[Cell] | None = None) -> Outcome:
    """Simulate replicate runs. ``n_letters`` (S, N): options per item column (0: free-form).
    ``cells``: only these receiver x provider x policy cells (default: all)."""
    k = np.asarray(n_letters, dtype=np.int64)
    names = list(dict.fromkeys([*receivers, *providers]))
    correct: dict[str, np.ndarray] = {}
    unparsed: dict[str, np.ndarray] = {}
    letter: dict[str, np.ndarray] = {}
    for n in names:
        correct[n], unparsed[n], letter[n] = _screen(agents[n], k, rng)
    out = Outcome(protocol.max_rounds, correct, unparsed)
    want = cells if cells is not None else [(r, p, pol) for r in receivers for p in providers
                                            for pol in protocol.policies]
    all_prov = np.logical_and.reduce([correct[p] for p in providers])
    for r, p, pol in want:
        wrong = ~correct[r]
        if protocol.test_set == "all_wrong":
            test = wrong
        elif protocol.test_set == "shared":
            test = wrong & all_prov
        else:
            test = wrong & correct[p]
        out.test[(r, p, pol)] = test
        out.solved_at[(r, p, pol)] = _feedback(agents[r], agents[p], protocol.policies[pol],
                                               test, letter[r], k, protocol.max_rounds, rng)
    return out


def summarize(values: np.ndarray) -> dict[str, float | None]:
    """Mean and central 50/80/90/95% intervals of replicate values (NaN ignored)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": None}
    q = np.quantile(v, [0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975])
    return {"mean": float(v.mean()), "sd": float(v.std()), "q025": float(q[0]),
            "q05": float(q[1]), "q10": float(q[2]), "q25": float(q[3]), "median": float(q[4]),
            "q75": float(q[5]), "q90": float(q[6]), "q95": float(q[7]), "q975": float(q[8])}
