"""Terminal tables of a run's metrics."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mmsim.report.human import human_tables


def _pct(iv: dict[str, Any] | float | None, ci: bool = True) -> str:
    if iv is None:
        return "—"
    if isinstance(iv, dict):
        v = iv.get("value")
        if v is None:
            return "—"
        s = f"{100 * v:.1f}"
        if ci and iv.get("lo") is not None:
            s += f" [{100 * iv['lo']:.0f}–{100 * iv['hi']:.0f}]"
        return s
    return f"{100 * iv:.1f}"


def _money(c: dict[str, Any] | None) -> str:
    return "—" if not c else f"{c['total']:.4f}"


def render(metrics: dict[str, Any]) -> Group:
    sim = metrics.get("simulated")
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    banner = Text("SIMULATED AGENTS (sim backend): these figures describe simulated models, "
                  "not real ones.", style="bold yellow") if sim else Text("")
    agents = Table(title=f"Screening accuracy — {title}", title_justify="left")
    cost = metrics.get("cost")
    for col in ("agent", "roles", "N", "accuracy % [95% CI]", "unparsed %", "failed",
                "retries", *([f"cost {cost['currency']}"] if cost else [])):
        agents.add_column(col, justify="left" if col in ("agent", "roles") else "right")
    for a in metrics.get("agents", []):
        name = a["name"] + (" (sim)" if a.get("simulated") else "")
        extra = [_money(a.get("cost"))] if cost else []
        agents.add_row(name, ",".join(a["roles"]), str(a["n"]), _pct(a["accuracy"]),
                       _pct(a["parse_failure_rate"]), str(a["failed"]),
                       str(a.get("retries", 0)), *extra)
    if cost:
        agents.caption = "cost by role: " + ", ".join(
            f"{role} {cost[role]:.4f}" for role in ("receiver", "provider", "judge")
            if cost.get(role) is not None) + f"; total {cost['total']:.4f} {cost['currency']}"
    rounds = int(metrics.get("max_rounds", 3))
    cells = Table(title=f"InterFeedback per receiver x provider x policy "
                        f"(test set: {metrics.get('test_set')})", title_justify="left")
    for col in ("receiver", "provider", "policy", "N", "acc %", "N_test", "corr. % [95% CI]",
                *[f"≤r{k} %" for k in range(1, rounds + 1)], "chance %", "adj. %",
                "unparsed %", "leaks", "failed"):
        cells.add_column(col, justify="left" if col in ("receiver", "provider", "policy")
                         else "right")
    for c in metrics.get("cells", []):
        cum = [_pct(r["cumulative"], ci=False) for r in c["correction_by_round"]]
        cells.add_row(c["receiver"], c["provider"], c["policy"], str(c["n"]),
                      _pct(c["accuracy"], ci=False), str(c["n_test"]),
                      _pct(c["correction_rate"]), *cum, _pct(c["chance_correction"]),
                      _pct(c["chance_adjusted_correction"]), _pct(c["parse_failure_rate"]),
                      str(c["n_leaked"]), str(c["failed"]))
    return Group(banner, agents, cells, *human_tables(metrics))


def print_table(metrics: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(render(metrics))
