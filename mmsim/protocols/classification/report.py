"""The tables of a classification run (the same figures as its JSON report), declared
once (:mod:`mmsim.report.tabular`) for the terminal, markdown, LaTeX and CSV."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from mmsim.report.tabular import (
    NEVER_COMPACT,
    Col,
    Document,
    Note,
    Tab,
    fmt,
    print_document,
    sim_note,
)


def _acc(acc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A single-label accuracy as ``{value, lo, hi}`` (the interval when the metrics
    carry one)."""
    if not acc or acc.get("single") is None:
        return None
    ci = acc.get("single_ci") or (None, None)  # the 95% Wilson interval of the metrics
    return {"value": acc["single"], "lo": ci[0], "hi": ci[1]}


def _closed(m: dict[str, Any]) -> float | None:
    cl = m.get("closed")
    return None if not cl else cl["accuracy"].get("single")


def headline(metrics: dict[str, Any]) -> str:
    """The model with the best closed-world accuracy, and the MC inflation."""
    models = [m for m in metrics.get("models", []) if _closed(m) is not None]
    failed = sum(int(m.get("failed", 0)) for m in metrics.get("models", []))
    sim = " [simulated agents]" if metrics.get("simulated") else ""
    name = metrics.get("name")
    if not models:
        return f"{name}: no closed-world accuracy; {failed} episodes failed{sim}"
    best = max(models, key=lambda m: _closed(m) or 0.0)
    s = (f"{name}: best closed-world accuracy of {len(metrics['models'])} models is "
         f"{best['name']} at {fmt(Col('a', 'ci'), _acc(best['closed']['accuracy']))}%")
    mc = best.get("multiple_choice")
    if mc and mc.get("inflation") and mc["inflation"].get("single") is not None:
        s += (f" (MC-{mc['k']} random vs hard distractors: "
              f"{fmt(Col('p', 'pts'), mc['inflation']['single'])} pts)")
    return s + f"; {failed} episodes failed{sim}"


def document(metrics: dict[str, Any]) -> Document:
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    encoders: list[str] = metrics.get("encoders", [])
    models: list[dict[str, Any]] = metrics.get("models", [])
    k = next((m["multiple_choice"]["k"] for m in models if m.get("multiple_choice")), None)
    closed_enc = next((m["closed"]["encoder"] for m in models if m.get("closed")), None)
    mc_enc = next((m["multiple_choice"]["encoder"] for m in models
                   if m.get("multiple_choice")), None)
    t = Tab("accuracy", f"Classification protocols, accuracy % (single label) — {title}", [
        Col("model", key=True), Col(f"closed ({closed_enc})", "ci"),
        Col("closed unmapped", "ci", priority=5), Col("off-list %", "pct", priority=4),
        Col(f"MC-{k} random", "ci", priority=1), Col(f"MC-{k} hard ({mc_enc})", "ci",
                                                    priority=1),
        Col("rand−hard pts", "pts", priority=2),
        *[Col(f"open ({e})", "ci", priority=3) for e in encoders],
        Col("open unmapped", "ci", priority=6), Col("open off-list %", "pct", priority=6),
        Col("unparsed %", "pct"), Col("failed", "int")])
    for m in models:
        cl, mc, op = m.get("closed"), m.get("multiple_choice"), m.get("open")
        parts = [x for x in (cl, op, (mc or {}).get("random"), (mc or {}).get("hard")) if x]
        n = sum(x["n"] for x in parts)
        t.add(m["name"] + (" (sim)" if m.get("simulated") else ""),
              _acc(cl and cl["accuracy"]), _acc(cl and cl["accuracy_without_mapping"]),
              cl and cl["out_of_list_rate"],
              _acc(mc and mc["random"] and mc["random"]["accuracy"]),
              _acc(mc and mc["hard"] and mc["hard"]["accuracy"]),
              mc and mc["inflation"] and mc["inflation"]["single"],
              *[_acc(op and op["by_encoder"].get(e)) for e in encoders],
              _acc(op and op["accuracy_without_mapping"]), op and op["out_of_list_rate"],
              sum(x["n_unparsed"] for x in parts) / n if n else None, m.get("failed", 0))

    b = Tab("batch", "Batch size and image order (closed-world list; mapped answers)", [
        Col("model", key=True), Col("batch", "int", key=True), Col("N", "int"),
        Col("acc %", "ci"), Col("by order %", priority=3), Col("order std pts", "num",
                                                               digits=1, priority=1),
        Col("flip %", "pct", priority=1), Col("off-list %", "pct", priority=2),
        Col("accuracy by position %", priority=NEVER_COMPACT)], compact=False)
    for m in models:
        bt = m.get("batch")
        for s in (bt or {}).get("sizes", []):
            b.add(m["name"], s["size"], s["n"], _acc(s["accuracy"]),
                  " ".join(fmt(Col("p", "pct"), x) for x in s["accuracy_by_order"]),
                  None if s["order_std"] is None else 100 * s["order_std"],
                  s["flip_rate"], s["out_of_list_rate"],
                  " ".join(fmt(Col("p", "pct"), x) for x in s["accuracy_by_position"]))

    keys: list[str] = []
    for m in models:
        keys += [x for x in m.get("single_vs_multi", {}) if x not in keys]
    cols = [Col("model", key=True)]
    for key in keys:
        cols += [Col(f"{key} single", "pct"), Col(f"{key} multi", "pct")]
    ml = Tab("multilabel", "Single-label vs multilabel ground truth (ReaL/ReGT: correct if "
             "in the label set), accuracy %", cols, compact=False)
    for m in models:
        svm = m.get("single_vs_multi", {})
        vals: list[Any] = []
        for key in keys:
            vals += [svm[key]["single"], svm[key]["multi"]] if key in svm else [None, None]
        ml.add(m["name"], *vals)
    footer = [Note(f"encoder {key!r} skipped (optional): {why}", "dim")
              for key, why in (metrics.get("encoders_skipped") or {}).items()]
    return Document(headline(metrics), [t, b, ml], sim_note(metrics), footer)


def print_table(metrics: dict[str, Any], console: Console | None = None, *,
                wide: bool = False) -> None:
    print_document(document(metrics), console or Console(), wide=wide)


__all__ = ["document", "headline", "print_table"]
