"""Verifiable rewards and rollout statistics of the video protocol (SEED-Bench-R1 recipe,
docs/video.md).

* **accuracy**: 1 when the first character inside the reply's first ``<answer>…</answer>``
  equals the gold letter, else 0 (no ``<answer>`` tag: 0). This is the published rule:
  ``<answer>B. open the drawer</answer>`` and ``<answer>B.</answer>`` both read as B.
* **format**: 1 when the reply *starts* with ``<think>…</think>`` followed (after optional
  whitespace) by ``<answer>…</answer>`` (``re.match``, DOTALL), else 0.
* **pass@k** (unbiased, from ``n`` samples with ``c`` correct): ``1 - C(n-c, k) / C(n, k)``.
* **GRPO advantage** of sample i in its group: ``(r_i - mean) / (std + 1e-4)``, where std is
  the group's unbiased standard deviation (``ddof=1``, what ``torch.std`` computes in the
  published trainer; ``ddof=0`` is offered). A group whose rewards are all equal has
  advantages 0: it teaches a GRPO trainer nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
ADV_EPS = 1e-4


def answer_tag(text: str) -> str | None:
    """The stripped content of the first ``<answer>`` tag, or None."""
    m = ANSWER_RE.search(text)
    return m.group(1).strip() if m else None


def answer_letter(text: str) -> str | None:
    """The first character inside ``<answer>`` (what the accuracy reward compares)."""
    inner = answer_tag(text)
    return inner[0] if inner else None


def accuracy_reward(text: str, gold: str) -> float:
    letter = answer_letter(text)
    return 1.0 if letter is not None and letter == gold[:1] else 0.0


def format_reward(text: str) -> float:
    return 1.0 if FORMAT_RE.match(text) else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (``k <= n``)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): numerically stable for large n
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def group_stats(rewards: Sequence[float], ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation (``ddof``: 1 unbiased, 0 population) of a group."""
    n = len(rewards)
    if n == 0:
        raise ValueError("an empty group has no statistics")
    mean = sum(rewards) / n
    if n - ddof <= 0:
        return mean, 0.0
    var = sum((r - mean) ** 2 for r in rewards) / (n - ddof)
    return mean, math.sqrt(var)


def advantages(rewards: Sequence[float], ddof: int = 1) -> list[float]:
    """GRPO advantages ``(r - mean) / (std + 1e-4)`` of one group (all 0 when the group's
    rewards are all equal: such a group teaches a GRPO trainer nothing)."""
    mean, std = group_stats(rewards, ddof)
    return [(r - mean) / (std + ADV_EPS) for r in rewards]


__all__ = ["ADV_EPS", "accuracy_reward", "advantages", "answer_letter", "answer_tag",
           "format_reward", "group_stats", "pass_at_k"]
