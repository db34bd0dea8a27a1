"""Terminal tables for ``mmsim fit`` and ``mmsim plan`` (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mmsim.twins.fit import TwinFit
from mmsim.twins.plan import bar, sparkline
from mmsim.twins.predict import LEVELS, Prediction


def _f(v: float | None, nd: int = 3) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def print_fit(fit: TwinFit, console: Console) -> None:
    t = Table(title=f"Twin parameters — run {fit.run_id} (difficulty: {fit.mode}; "
                    "95% intervals)", title_justify="left")
    for c in ("agent", "parameter", "estimate", "95% interval", "n", "note"):
        t.add_column(c, justify="right" if c in ("estimate", "n") else "left")
    for name, af in fit.agents.items():
        first = True
        for k, e in af.estimates.items():
            ci = "fixed" if e.fixed else f"[{_f(e.lo)}, {_f(e.hi)}]"
            t.add_row(name if first else "", k, _f(e.value), ci, str(e.n) if e.n else "",
                      e.note)
            first = False
        t.add_section()
    console.print(t)
    if fit.mode == "fit":
        console.print(f"item difficulty: {len(fit.difficulty)} items fitted, prior sd "
                      f"(empirical Bayes) {_f(fit.irt.tau)}", highlight=False)


def print_prediction(pred: Prediction, console: Console, title: str,
                     show_all: bool = False) -> None:
    t = Table(title=title, title_justify="left")
    for c in ("figure", "observed", "twin mean", "twin 95% interval", "in 95%"):
        t.add_column(c, justify="left" if c == "figure" else "right")
    for r in pred.rows:
        kind = r["figure"].split("/", 1)[0]
        if not show_all and kind not in ("accuracy", "correction_rate"):
            continue
        nd = 0 if kind == "n_test" else 3
        t.add_row(r["figure"], _f(r["observed"], nd), _f(r["mean"], nd),
                  f"[{_f(r['lo'], nd)}, {_f(r['hi'], nd)}]", "yes" if r["in95"] else "NO")
    console.print(t)
    cal = Table(title="Calibration: share of observed figures inside the twin's central "
                    "predictive intervals", title_justify="left")
    cal.add_column("figures")
    cal.add_column("n", justify="right")
    for lev in LEVELS:
        cal.add_column(f"{int(lev * 100)}%", justify="right")
    for row in pred.calibration:
        cal.add_row(row["figures"], str(row["n"]),
                  *[f"{row[f'in{int(lev * 100)}']:.2f}" for lev in LEVELS])
    console.print(cal)


def print_plan(result: dict[str, Any], console: Console) -> None:
    tgt = result["target"]
    mdd = tgt["kind"] == "mdd"
    console.print("SIMULATED AGENTS: a plan from sim twins, as good as their parameters.",
                  highlight=False)
    if result["rounds"]:
        r = Table(title="Rounds (correction rate of the selected cells, one seed, "
                        f"{min(result['dataset_items'], max(x['items'] for x in result['rows']))}"
                        " items)", title_justify="left")
        for col in ("rounds", "correction rate", "gain", "left to gain"):
            r.add_column(col, justify="right")
        for row in result["rounds"]:
            r.add_row(str(row["rounds"]), f"{row['correction_rate']:.3f}",
                      f"+{row['gain']:.3f}", f"{row['rest']:.3f}")
        console.print(r)
    what = "power" if mdd else "95% CI width"
    t = Table(title=f"Power curve: {result['metric']} — target {tgt['kind']} = {tgt['value']}"
                    + (f" ({' vs '.join(result['compare'])})" if result["compare"] else ""),
              title_justify="left")
    for col in ("seeds", "items", "rounds", "mean", "CI width"):
        t.add_column(col, justify="right")
    if mdd:
        t.add_column("MDD", justify="right")
        t.add_column("power", justify="right")
    t.add_column("calls", justify="right")
    t.add_column(what)
    t.add_column("meets")
    rows = result["rows"]
    top = max((x["ci_width"] for x in rows), default=1.0) or 1.0
    for row in rows:
        frac = row["power"] if mdd else row["ci_width"] / top
        cells = [str(row["seeds"]), f"{row['items']}{'' if row['feasible'] else '*'}",
                 str(row["rounds"]), f"{row['value']:.3f}", f"{row['ci_width']:.3f}"]
        if mdd:
            cells += [f"{row['mdd']:.3f}", f"{row['power']:.2f}"]
        cells += [str(row["calls"]), bar(frac), "yes" if row["meets"] else ""]
        t.add_row(*cells)
    console.print(t)
    for s in sorted({x["seeds"] for x in rows}):
        vals = [x["power"] if mdd else x["ci_width"] for x in rows if x["seeds"] == s]
        console.print(f"  {what} vs items, {s} seed(s): {sparkline(vals)}  "
                      f"({vals[0]:.3f} → {vals[-1]:.3f})", highlight=False)
    if any(not x["feasible"] for x in rows):
        console.print(f"  * more items than the dataset holds ({result['dataset_items']})",
                      highlight=False)
    rec = result["recommendation"]
    if "items" in rec:
        extra = (f", MDD {rec['mdd']:.3f}, power {rec['power']:.2f}" if "mdd" in rec else "")
        console.print(f"Recommendation: {rec['items']} items x {rec['seeds']} seed(s) x "
                      f"{rec['rounds']} rounds -> CI width {rec['ci_width']:.3f}{extra} "
                      f"(~{rec['calls']} model calls)" + (f"; {rec['note']}" if rec["note"]
                                                          else ""), highlight=False)
    else:
        console.print(f"Recommendation: none — {rec['note']}", highlight=False)
