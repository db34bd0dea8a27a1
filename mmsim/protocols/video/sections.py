"""The video sections of the HTML report: accuracy by level (bars with 95% intervals, models
side by side), the differences against the first model, and the rollout statistics with a
pass@k curve. Registered in the report's section registry (:mod:`mmsim.report.sections`;
discovered by ``discover_sections``)."""

from __future__ import annotations

from typing import Any

from mmsim.protocols.video.metrics import LEVEL_ORDER, compute
from mmsim.report.cells import points
from mmsim.report.sections import Markup, RunContext, pct, section, table
from mmsim.report.svg import Bar, BarGroup, Line, Point, bar_chart, line_chart

_NAMES = {"L1": "L1 in-distribution", "L2": "L2 cross-env", "L3": "L3 cross-env-task"}


@section("video.levels", title="Video: accuracy by generalization level", order=150)
def levels_section(ctx: RunContext) -> str | None:
    """Accuracy per level L1/L2/L3 with intervals, models side by side."""
    if ctx.manifest.get("kind") != "video":
        return None
    m = ctx.cached("video", lambda: compute(ctx.store))
    by_model: dict[str, dict[str, Any]] = m.get("levels", {})
    if not by_model:
        return "<p>No evaluation episodes yet.</p>"
    present = {lv for cells in by_model.values() for lv in cells if lv != "all"}
    levels = [lv for lv in LEVEL_ORDER if lv in present]
    groups = []
    for lv in [*levels, "all"]:
        g = BarGroup(_NAMES.get(lv, lv))
        for model in m["models"]:
            cell = by_model.get(model, {}).get(lv)
            if cell:
                a = cell["accuracy"]
                g.bars.append(Bar(model, a["value"], a["lo"], a["hi"], f"n={a['n']}"))
        groups.append(g)
    rows = [[model, *[pct(cells[lv]["accuracy"]) if lv in cells else "—"
                      for lv in [*levels, "all"]],
             pct(cells["all"]["format"], ci=False), pct(cells["all"]["no_answer_tag"], ci=False)]
            for model, cells in by_model.items()]
    parts = [bar_chart(groups, title="Accuracy by level (95% Wilson CI)"),
             table(["model", *[_NAMES.get(lv, lv) for lv in [*levels, "all"]], "format %",
                    "no <answer> %"], rows)]
    sbs = m.get("side_by_side", [])
    if sbs:
        pairs: dict[str, dict[str, dict[str, Any]]] = {}
        for r in sbs:
            pairs.setdefault(f"{r['model']} − {r['base']}", {})[r["level"]] = r
        parts += ["<h4>Side by side: accuracy difference, points [95% paired CI]</h4>",
                  table(["model − base", *[_NAMES.get(lv, lv) for lv in [*levels, "all"]]],
                        [[k, *[points(v[lv]["diff"], v[lv]["lo"], v[lv]["hi"]) if lv in v
                               else "—" for lv in [*levels, "all"]]]
                         for k, v in pairs.items()])]
    return "".join(parts)


@section("video.rollouts", title="Video: rollouts (verifiable rewards)", order=151)
def rollouts_section(ctx: RunContext) -> str | None:
    """pass@k, group reward statistics, zero-variance groups."""
    if ctx.manifest.get("kind") != "video":
        return None
    m = ctx.cached("video", lambda: compute(ctx.store))
    ro: dict[str, dict[str, Any]] = m.get("rollouts", {})
    if not ro:
        return None
    spec = m.get("rollout_spec", {})
    ks = [str(k) for k in spec.get("k", [])]
    lines = [Line(model, [Point(float(k), s["pass_at_k"].get(k)) for k in ks])
             for model, s in ro.items()]
    rows = [[model, s["groups"], s["samples"], f"{s['reward_mean']:.3f}",
             f"{s['reward_std_mean']:.3f}", pct(s["zero_variance_share"], ci=False),
             pct(s["all_right_share"], ci=False), pct(s["all_wrong_share"], ci=False),
             *[pct(s["pass_at_k"].get(k), ci=False) for k in ks]] for model, s in ro.items()]
    head = (f"<p>G={spec.get('samples')} samples per prompt at temperature "
            f"{spec.get('temperature')} ({spec.get('split')} prompts); reward = "
            f"{' + '.join(m.get('rewards', []))}. A zero-variance group gives a GRPO trainer "
            "no signal.</p>")
    return Markup(head) + line_chart(lines, title="pass@k", x_label="k") + table(
        ["model", "groups", "samples", "reward mean", "reward std (in group)",
         "zero-variance %", "all right %", "all wrong %", *[f"pass@{k}" for k in ks]], rows)


__all__ = ["levels_section", "rollouts_section"]
