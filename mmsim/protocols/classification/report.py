"""Terminal tables of a classification run (the same figures as its JSON report)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _pts(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:+.1f}"


def _s(acc: dict[str, Any] | None) -> float | None:
    return None if not acc else acc.get("single")


def _ci(acc: dict[str, Any] | None) -> str:
    """Single-label accuracy with its 95% Wilson interval, "58.3 [46.7–71.7]"."""
    s = _pct(_s(acc))
    ci = (acc or {}).get("single_ci")
    return f"{s} [{_pct(ci[0])}–{_pct(ci[1])}]" if ci and s != "—" else s


def render(metrics: dict[str, Any]) -> Group:
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    banner = Text("SIMULATED AGENTS (sim backend): these figures describe simulated models, "
                  "not real ones.", style="bold yellow") if metrics.get("simulated") else Text("")
    encoders: list[str] = metrics.get("encoders", [])
    models: list[dict[str, Any]] = metrics.get("models", [])
    k = next((m["multiple_choice"]["k"] for m in models if m.get("multiple_choice")), None)
    closed_enc = next((m["closed"]["encoder"] for m in models if m.get("closed")), None)
    mc_enc = next((m["multiple_choice"]["encoder"] for m in models
                   if m.get("multiple_choice")), None)

    t = Table(title=f"Classification protocols, accuracy % (single label) [95% Wilson CI] — "
                    f"{title}",
              title_justify="left")
    cols = ["model", f"closed ({closed_enc})", "closed unmapped", "off-list %",
            f"MC-{k} random", f"MC-{k} hard ({mc_enc})", "rand−hard pts",
            *[f"open ({e})" for e in encoders], "open unmapped", "open off-list %",
            "unparsed %", "failed"]
    for c in cols:
        t.add_column(c, justify="left" if c == "model" else "right")
    for m in models:
        cl, mc, op = m.get("closed"), m.get("multiple_choice"), m.get("open")
        unparsed = [x for x in (cl, op, (mc or {}).get("random"), (mc or {}).get("hard"))
                    if x]
        n = sum(x["n"] for x in unparsed)
        t.add_row(
            m["name"] + (" (sim)" if m.get("simulated") else ""),
            _ci(cl and cl["accuracy"]), _pct(_s(cl and cl["accuracy_without_mapping"])),
            _pct(cl and cl["out_of_list_rate"]),
            _ci(mc and mc["random"] and mc["random"]["accuracy"]),
            _ci(mc and mc["hard"] and mc["hard"]["accuracy"]),
            _pts(mc and mc["inflation"] and mc["inflation"]["single"]),
            *[_ci(op and op["by_encoder"].get(e)) for e in encoders],
            _pct(_s(op and op["accuracy_without_mapping"])),
            _pct(op and op["out_of_list_rate"]),
            _pct(sum(x["n_unparsed"] for x in unparsed) / n if n else None),
            str(m.get("failed", 0)))

    b = Table(title="Batch size and image order (closed-world list; mapped answers)",
              title_justify="left")
    for c in ("model", "batch", "N", "acc %", "by order %", "order std pts", "flip %",
              "off-list %", "accuracy by position %"):
        b.add_column(c, justify="left" if c in ("model", "by order %",
                                                 "accuracy by position %") else "right")
    for m in models:
        bt = m.get("batch")
        if not bt:
            continue
        for s in bt["sizes"]:
            b.add_row(m["name"], str(s["size"]), str(s["n"]), _pct(_s(s["accuracy"])),
                      " ".join(_pct(x) for x in s["accuracy_by_order"]),
                      "—" if s["order_std"] is None else f"{100 * s['order_std']:.1f}",
                      _pct(s["flip_rate"]), _pct(s["out_of_list_rate"]),
                      " ".join(_pct(x) for x in s["accuracy_by_position"]))

    ml = Table(title="Single-label vs multilabel ground truth (ReaL/ReGT: correct if in the "
                     "label set), accuracy %", title_justify="left")
    keys: list[str] = []
    for m in models:
        keys += [x for x in m.get("single_vs_multi", {}) if x not in keys]
    ml.add_column("model")
    for key in keys:
        ml.add_column(f"{key} single→multi", justify="right")
    for m in models:
        svm = m.get("single_vs_multi", {})
        ml.add_row(m["name"], *[
            f"{_pct(svm[key]['single'])} → {_pct(svm[key]['multi'])}" if key in svm else "—"
            for key in keys])
    parts: list[Any] = [banner, t, b, ml]
    skipped = metrics.get("encoders_skipped") or {}
    for key, why in skipped.items():
        parts.append(Text(f"encoder {key!r} skipped (optional): {why}", style="dim"))
    return Group(*parts)


def print_table(metrics: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(render(metrics))


__all__ = ["print_table", "render"]
