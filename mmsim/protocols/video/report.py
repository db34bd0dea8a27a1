"""The tables of a video run, declared once (:mod:`mmsim.report.tabular`): accuracy by
level (models side by side), the differences against the first model, and the rollout
statistics."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from mmsim.protocols.video.metrics import LEVEL_ORDER
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

_NAMES = {"L1": "L1 in-distribution", "L2": "L2 cross-env", "L3": "L3 cross-env-task"}


def _levels(metrics: dict[str, Any]) -> list[str]:
    present = {lv for cells in metrics.get("levels", {}).values() for lv in cells
               if lv != "all"}
    return [lv for lv in LEVEL_ORDER if lv in present] + sorted(present - set(LEVEL_ORDER))


def headline(metrics: dict[str, Any]) -> str:
    """The most accurate model over every level, with its interval, and its hardest
    level."""
    levels = _levels(metrics)
    by_model: dict[str, dict[str, Any]] = metrics.get("levels", {})
    scored = [(m, c) for m, c in by_model.items()
              if c.get("all", {}).get("accuracy", {}).get("value") is not None]
    sim = " [simulated agents]" if metrics.get("simulated") else ""
    name = metrics.get("name")
    if not scored:
        return f"{name}: no scored episode{sim}"
    model, cells = max(scored, key=lambda mc: mc[1]["all"]["accuracy"]["value"])
    s = (f"{name}: most accurate of {len(scored)} models is {model} at "
         f"{fmt(Col('a', 'ci'), cells['all']['accuracy'])}% over every level")
    lv = [(x, cells[x]["accuracy"]["value"]) for x in levels if x in cells
          and cells[x]["accuracy"].get("value") is not None]
    if len(lv) > 1:
        low = min(lv, key=lambda t: t[1])
        s += f", lowest on {_NAMES.get(low[0], low[0])} ({fmt(Col('p', 'pct'), low[1])}%)"
    return s + sim


def document(metrics: dict[str, Any]) -> Document:
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    levels = _levels(metrics)
    by_model: dict[str, dict[str, Any]] = metrics.get("levels", {})
    t = Tab("levels", f"Accuracy by level, % [95% CI] — {title}", [
        Col("model", key=True), *[Col(_NAMES.get(lv, lv), "ci", priority=1) for lv in levels],
        Col("all", "ci"), Col("format %", "pct", priority=2),
        Col("no <answer> %", "pct", priority=3), Col("n", "int")])
    for model in metrics.get("models", []):
        cells = by_model.get(model)
        if not cells:
            continue
        a = cells["all"]
        t.add(model, *[cells[lv]["accuracy"] if lv in cells else None for lv in levels],
              a["accuracy"], a["format"], a["no_answer_tag"], a["n"])
    tabs = [t]
    sbs = metrics.get("side_by_side", [])
    if sbs:
        d = Tab("side_by_side", "Side by side: accuracy difference vs the first model, "
                "points [95% paired bootstrap CI]", [
                    Col("model vs base", key=True),
                    *[Col(_NAMES.get(lv, lv), "pts_ci", priority=1) for lv in levels],
                    Col("all", "pts_ci")])
        pairs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for r in sbs:
            pairs.setdefault((r["model"], r["base"]), {})[r["level"]] = r
        for (model, base), by_level in pairs.items():
            d.add(f"{model} − {base}", *[
                {"value": by_level[lv]["diff"], "lo": by_level[lv]["lo"],
                 "hi": by_level[lv]["hi"]} if lv in by_level else None
                for lv in [*levels, "all"]])
        tabs.append(d)
    ro: dict[str, dict[str, Any]] = metrics.get("rollouts", {})
    if ro:
        spec = metrics.get("rollout_spec", {})
        ks = [str(k) for k in spec.get("k", [])]
        r = Tab("rollouts", f"Rollouts: G={spec.get('samples')} samples per prompt at "
                f"temperature {spec.get('temperature')} ({spec.get('split')} prompts); "
                f"reward = {' + '.join(metrics.get('rewards', []))}", [
                    Col("model", key=True), Col("groups", "int", priority=3),
                    Col("samples", "int", priority=3), Col("reward mean", "num"),
                    Col("reward std (in group)", "num"),
                    Col("zero-variance groups %", "pct"), Col("all right %", "pct",
                                                              priority=1),
                    Col("all wrong %", "pct", priority=1), Col("accuracy %", "pct",
                                                               priority=2),
                    Col("format %", "pct", priority=NEVER_COMPACT),
                    *[Col(f"pass@{k}", "pct", priority=4) for k in ks]])
        for model, s in ro.items():
            r.add(model, s["groups"], s["samples"], s["reward_mean"], s["reward_std_mean"],
                  s["zero_variance_share"], s["all_right_share"], s["all_wrong_share"],
                  s["accuracy"], s["format"], *[s["pass_at_k"].get(k) for k in ks])
        tabs.append(r)
    failed = metrics.get("failed", {})
    n_failed = sum(sum(v.values()) for v in failed.values())
    footer = [Note(f"{n_failed} episodes failed (infrastructure; not scored, played again "
                   f"on resume): {failed}", "error")] if n_failed else []
    return Document(headline(metrics), tabs, sim_note(metrics), footer)


def print_table(metrics: dict[str, Any], console: Console | None = None, *,
                wide: bool = False) -> None:
    print_document(document(metrics), console or Console(), wide=wide)


__all__ = ["document", "headline", "print_table"]
