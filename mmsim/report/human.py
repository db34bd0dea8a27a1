"""Terminal tables of the ``human`` metrics section (docs/human.md)."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "—"


def human_tables(metrics: dict[str, Any]) -> list[RenderableType]:
    """The human-feedback and annotator-assist tables (nothing when the run has neither)."""
    human = metrics.get("human")
    if not human:
        return []
    out: list[RenderableType] = []
    cells = human.get("feedback", [])
    if cells:
        rounds = max(len(c["by_round"]) for c in cells)
        t = Table(title="Human feedback — errors corrected by round (share of N_test; "
                        "in brackets: of the errors still open that round)",
                  title_justify="left")
        for col in ("receiver", "provider", "policy", "N_test",
                    *[f"r{k}" for k in range(1, rounds + 1)], "not corr. %", "feedback",
                    "sources", "persons", "mean chars", "leak %", "disputed", "failed"):
            t.add_column(col, justify="left" if col in ("receiver", "provider", "policy",
                                                        "sources", "persons") else "right")
        for c in cells:
            per = [f"{_pct(r['rate'])} [{_pct(r['conditional_rate'])}] {r['policy']}"
                   for r in c["by_round"]]
            per += [""] * (rounds - len(per))
            mean = c["mean_feedback_chars"]
            t.add_row(c["receiver"], c["provider"], c["policy"], str(c["n_test"]), *per,
                      _pct(c["not_corrected"] / c["n_test"] if c["n_test"] else None),
                      str(c["n_feedback"]), _counts(c["sources"]),
                      str(len(c["persons"])), "—" if mean is None else f"{mean:.0f}",
                      _pct(c["leak_rate"]), str(c["disputed"]), str(c["failed"]))
        out.append(t)
    ann = human.get("annotate", [])
    if ann:
        t = Table(title="Annotator assist — proposals confirmed, edited (integrated), rejected",
                  title_justify="left")
        for col in ("receiver", "annotator", "N", "confirmed %", "edited %", "rejected %",
                    "confirmed or integrated %", "proposal acc. %", "final acc. %",
                    "persons", "failed"):
            t.add_column(col, justify="left" if col in ("receiver", "annotator") else "right")
        for a in ann:
            t.add_row(a["receiver"], a["provider"], str(a["n"]), _pct(a["confirmed"]),
                      _pct(a["edited"]), _pct(a["rejected"]),
                      _pct(a["confirmed_or_integrated"]), _pct(a["proposal_accuracy"]),
                      _pct(a["final_accuracy"]), str(len(a["persons"])), str(a["failed"]))
        out.append(t)
    return out
