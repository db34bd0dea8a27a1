"""The tables of an InterFeedback run, declared once (:mod:`mmsim.report.tabular`): the
terminal, markdown, LaTeX and CSV renderers all read :func:`document`."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from mmsim.report.human import human_tabs
from mmsim.report.tabular import NEVER_COMPACT, Col, Document, Tab, fmt, print_document, sim_note


def _cost_total(c: dict[str, Any] | None) -> str | None:
    return None if not c else f"{c['total']:.4f}"


def headline(metrics: dict[str, Any]) -> str:
    """What the run found, in one line: the cell that corrected most errors (its
    correction rate with its interval, chance-adjusted) and how many episodes failed."""
    cells = [c for c in metrics.get("cells", []) if c.get("n_test")
             and (c.get("correction_rate") or {}).get("value") is not None]
    failed = sum(int(c.get("failed", 0)) for c in metrics.get("cells", [])) + \
        sum(int(a.get("failed", 0)) for a in metrics.get("agents", []))
    sim = " [simulated agents]" if metrics.get("simulated") else ""
    name = metrics.get("name")
    if not cells:
        return (f"{name}: no cell has errors to correct (N_test = 0); {failed} episodes "
                f"failed{sim}")
    best = max(cells, key=lambda c: (c["correction_rate"]["value"], c["n_test"]))
    ci = Col("c", "ci")
    return (f"{name}: best of {len(metrics['cells'])} cells is {best['receiver']} / "
            f"{best['provider']} / {best['policy']}, correcting "
            f"{fmt(ci, best['correction_rate'])}% of {best['n_test']} errors "
            f"(chance-adjusted {fmt(Col('a', 'pct'), best['chance_adjusted_correction'])}%); "
            f"{failed} episodes failed{sim}")


def document(metrics: dict[str, Any]) -> Document:
    """Screening accuracy per agent, the receiver x provider x policy cells (the main
    table), and the human-feedback tables when the run had people."""
    doc = Document(headline(metrics), notes=sim_note(metrics))
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    cost = metrics.get("cost")
    agents = Tab("agents", f"Screening accuracy — {title}", [
        Col("agent", key=True), Col("roles", priority=5), Col("N", "int", priority=1),
        Col("accuracy % [95% CI]", "ci"), Col("unparsed %", "pct", priority=2),
        Col("failed", "int"), Col("retries", "int", priority=4),
        *([Col(f"cost {cost['currency']}", priority=3)] if cost else [])])
    for a in metrics.get("agents", []):
        agents.add(a["name"] + (" (sim)" if a.get("simulated") else ""), ",".join(a["roles"]),
                   a["n"], a["accuracy"], a["parse_failure_rate"], a["failed"],
                   a.get("retries", 0), *([_cost_total(a.get("cost"))] if cost else []))
    if cost:
        agents.caption = "cost by role: " + ", ".join(
            f"{role} {cost[role]:.4f}" for role in ("receiver", "provider", "judge")
            if cost.get(role) is not None) + f"; total {cost['total']:.4f} {cost['currency']}"
    rounds = int(metrics.get("max_rounds", 3))
    cells = Tab("cells", f"InterFeedback per receiver x provider x policy "
                f"(test set: {metrics.get('test_set')})", [
                    Col("receiver", key=True), Col("provider", key=True),
                    Col("policy", key=True), Col("N", "int", priority=3),
                    Col("acc %", "pct", priority=2), Col("N_test", "int"),
                    Col("corr. % [95% CI]", "ci"),
                    *[Col(f"≤r{k} %", "pct", priority=4 + k) for k in range(1, rounds + 1)],
                    Col("chance %", "pct", priority=4), Col("adj. %", "pct"),
                    Col("unparsed %", "pct"), Col("leaks", "int"), Col("failed", "int"),
                    Col("mean rounds", "num", priority=NEVER_COMPACT, digits=2)],
                caption="corr.: errors corrected within the round budget (share of N_test); "
                        "≤rK: by round K; adj.: chance-adjusted; leaks: feedback that gave "
                        "the answer away")
    for c in metrics.get("cells", []):
        cum = [r["cumulative"]["value"] for r in c["correction_by_round"]]
        cum += [None] * (rounds - len(cum))
        cells.add(c["receiver"], c["provider"], c["policy"], c["n"], c["accuracy"]["value"],
                  c["n_test"], c["correction_rate"], *cum[:rounds], c["chance_correction"],
                  c["chance_adjusted_correction"], c["parse_failure_rate"], c["n_leaked"],
                  c["failed"], c.get("mean_rounds"))
    doc.tables = [cells, agents, *human_tabs(metrics)]
    return doc


def render(metrics: dict[str, Any], *, width: int = 200, wide: bool = True) -> Group:
    """The tables as one rich renderable (every column unless ``wide=False``)."""
    console = Console(width=width, record=True, file=io.StringIO())
    print_document(document(metrics), console, wide=wide)
    return Group(Text.from_ansi(console.export_text(styles=True)))


def print_table(metrics: dict[str, Any], console: Console | None = None, *,
                wide: bool = False) -> None:
    print_document(document(metrics), console or Console(), wide=wide)
