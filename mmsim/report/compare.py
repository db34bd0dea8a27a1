"""Terminal table of ``mmsim compare`` (run B minus run A, paired bootstrap intervals)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

_LABELS = {"accuracy": "accuracy", "correction_rate": "correction",
           "parse_failure_rate": "parse failures", "solved": "solved"}


def _p(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _diff(m: dict[str, Any]) -> Text:
    d = m.get("diff")
    if d is None:
        return Text("—")
    s = f"{100 * d:+.1f}"
    lo, hi = m.get("lo"), m.get("hi")
    style = ""
    if lo is not None and hi is not None:
        s += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        if lo > 0 or hi < 0:
            style = "bold"
    return Text(s + f" n={m.get('n_shared', 0)}", style=style)


def render_compare(result: dict[str, Any]) -> Group:
    a, b = result["a"], result["b"]
    head = Text(f"B − A: A = {a.get('name')} ({a.get('run_dir')}), "
                f"B = {b.get('name')} ({b.get('run_dir')}). Differences in points with 95% "
                "paired bootstrap intervals over shared items; bold: the interval excludes 0.")
    banner = Text("")
    if a.get("simulated") or b.get("simulated"):
        banner = Text("SIMULATED AGENTS in at least one run: these figures describe simulated "
                      "models, not real ones.", style="bold yellow")
    warn = Text("" if result.get("same_dataset") else
                "note: the runs' dataset fingerprints differ; only shared sample ids are paired.",
                style="yellow")
    t = Table(title="Per-cell differences (percentage points)", title_justify="left")
    for col in result.get("key_names", ("receiver", "provider", "policy")):
        t.add_column(col)
    for m in result.get("metrics", []):
        t.add_column(f"{_LABELS.get(m, m)} A→B %", justify="right")
        t.add_column(f"Δ {_LABELS.get(m, m)} [95% CI]", justify="right")
    for c in result.get("cells", []):
        row: list[str | Text] = [c["receiver"], c["provider"], c["policy"]]
        for m in result.get("metrics", []):
            row += [f"{_p(c[m]['a'])} → {_p(c[m]['b'])}", _diff(c[m])]
        t.add_row(*row)
    extra = []
    for side in ("a", "b"):
        only = result.get(f"only_in_{side}") or []
        if only:
            extra.append(Text(f"only in {side.upper()}: " + ", ".join("/".join(k) for k in only)))
    return Group(banner, head, warn, t, *extra)


def print_compare(result: dict[str, Any], console: Console | None = None) -> None:
    from mmsim.report.tabular import print_natural

    # every column at the width it needs (a terminal of 80 columns would squeeze them)
    print_natural(console or Console(), render_compare(result))


__all__ = ["print_compare", "render_compare"]
