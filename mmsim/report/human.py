"""Tables of the ``human`` metrics section (docs/human.md), declared once
(:mod:`mmsim.report.tabular`)."""

from __future__ import annotations

from typing import Any

from mmsim.report.tabular import Col, Tab


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "—"


def human_tabs(metrics: dict[str, Any]) -> list[Tab]:
    """The human-feedback and annotator-assist tables (none when the run has neither)."""
    human = metrics.get("human")
    if not human:
        return []
    out: list[Tab] = []
    cells = human.get("feedback", [])
    if cells:
        rounds = max(len(c["by_round"]) for c in cells)
        t = Tab("human", "Human feedback — errors corrected by round (share of N_test; "
                "in brackets: of the errors still open that round)", [
                    Col("receiver", key=True), Col("provider", key=True),
                    Col("policy", key=True), Col("N_test", "int"),
                    *[Col(f"r{k}", priority=k) for k in range(1, rounds + 1)],
                    Col("not corr. %", "pct"), Col("feedback", "int", priority=5),
                    Col("sources", priority=6), Col("persons", "int", priority=4),
                    Col("mean chars", "num", priority=7, digits=0),
                    Col("leak %", "pct"), Col("disputed", "int", priority=3),
                    Col("failed", "int")])
        for c in cells:
            per: list[str | None] = [
                f"{_pct(r['rate'])} [{_pct(r['conditional_rate'])}] {r['policy']}"
                for r in c["by_round"]]
            per += [None] * (rounds - len(per))
            t.add(c["receiver"], c["provider"], c["policy"], c["n_test"], *per,
                  c["not_corrected"] / c["n_test"] if c["n_test"] else None,
                  c["n_feedback"], _counts(c["sources"]), len(c["persons"]),
                  c["mean_feedback_chars"], c["leak_rate"], c["disputed"], c["failed"])
        out.append(t)
    ann = human.get("annotate", [])
    if ann:
        t = Tab("annotate", "Annotator assist — proposals confirmed, edited (integrated), "
                "rejected", [
                    Col("receiver", key=True), Col("annotator", key=True),
                    Col("N", "int"), Col("confirmed %", "pct"), Col("edited %", "pct"),
                    Col("rejected %", "pct"),
                    Col("confirmed or integrated %", "pct", priority=1),
                    Col("proposal acc. %", "pct", priority=2),
                    Col("final acc. %", "pct", priority=2), Col("persons", "int", priority=3),
                    Col("failed", "int")])
        for a in ann:
            t.add(a["receiver"], a["provider"], a["n"], a["confirmed"], a["edited"],
                  a["rejected"], a["confirmed_or_integrated"], a["proposal_accuracy"],
                  a["final_accuracy"], len(a["persons"]), a["failed"])
        out.append(t)
    return out
