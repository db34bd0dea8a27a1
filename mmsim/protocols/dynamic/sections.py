"""The dynamic-evaluation sections of the HTML report: the ability-vector radar (inline
SVG) with its table, and the judge calibration table. Registered in the report's section
registry (:mod:`mmsim.report.sections`; discovered by ``discover_sections``)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from mmsim.protocols.dynamic.metrics import compute
from mmsim.report.sections import Markup, RunContext, esc, pct, section, table
from mmsim.report.svg import MAX_CHART_W, color


def radar_svg(tasks: list[str], codes: dict[str, str], models: list[dict[str, Any]],
              size: int = 360) -> str:
    """An SVG radar of the ability vectors: one axis per task (T0 at the top, clockwise),
    0-100% from the centre, one polygon per model; hovering a vertex shows its figure."""
    n = len(tasks)
    if n < 3 or not models:
        return ""
    cx = cy = size / 2
    r = size / 2 - 60

    def pt(i: int, v: float) -> tuple[float, float]:
        a = -math.pi / 2 + 2 * math.pi * i / n
        return cx + r * v * math.cos(a), cy + r * v * math.sin(a)

    # labels and legend never clip: the canvas grows to hold the longest of them
    char_w = 6.6  # px per character of 11-12 px text, generous
    need_left, right_reach = 0.0, float(size)  # px left of 0 the labels need; right edge
    for i, t in enumerate(tasks):
        lx, _ = pt(i, 1.14)
        w = char_w * len(f"{codes.get(t, t)} {t}")
        if abs(lx - cx) < 5:
            need_left, right_reach = max(need_left, w / 2 - lx), max(right_reach, lx + w / 2)
        elif lx > cx:
            right_reach = max(right_reach, lx + w)
        else:
            need_left = max(need_left, w - lx)
    dx = need_left + 6
    legend_w = 24 + char_w * max(len(m["name"]) for m in models) + 10
    # the legend goes right of the radar, or below it when that would make the chart wider
    # than a narrow page lays out unscaled
    below = dx + right_reach + 10 + legend_w > MAX_CHART_W
    legend_x = 10.0 if below else dx + right_reach + 10
    legend_y = float(size) if below else 20.0
    width = max(dx + right_reach + 10, legend_x + legend_w)
    height = (size + 18 * len(models) + 8) if below else max(size, 30 + 18 * len(models))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot radar" width="{width:.0f}" '
           f'height="{height}" viewBox="0 0 {width:.0f} {height}" role="img" '
           f'aria-label="ability vectors radar"><g transform="translate({dx:.1f},0)">']
    for ring in (0.25, 0.5, 0.75, 1.0):
        ring_pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (pt(i, ring) for i in range(n)))
        out.append(f'<polygon points="{ring_pts}" fill="none" stroke="#ddd"/>')
        x, y = pt(0, ring)
        out.append(f'<text x="{x + 3:.1f}" y="{y:.1f}" font-size="9" fill="#999">'
                   f"{int(ring * 100)}</text>")
    for i, t in enumerate(tasks):
        x, y = pt(i, 1.0)
        lx, ly = pt(i, 1.14)
        out.append(f'<line x1="{cx}" y1="{cy}" x2="{x:.1f}" y2="{y:.1f}" stroke="#ccc"/>')
        anchor = "middle" if abs(lx - cx) < 5 else ("start" if lx > cx else "end")
        out.append(f'<text x="{lx:.1f}" y="{ly + 4:.1f}" font-size="11" '
                   f'text-anchor="{anchor}">{escape(codes.get(t, t))} {escape(t)}</text>')
    for k, m in enumerate(models):
        vals = [m["vector"][t]["value"] for t in tasks]
        poly = " ".join(f"{x:.1f},{y:.1f}" for x, y in
                        (pt(i, v or 0.0) for i, v in enumerate(vals)))
        c = color(k)
        out.append(f'<polygon points="{poly}" fill="{c}" fill-opacity="0.15" stroke="{c}" '
                   'stroke-width="2"/>')
        for i, v in enumerate(vals):
            if v is None:
                continue
            x, y = pt(i, v)
            iv = m["vector"][tasks[i]]
            tip = f"{m['name']} {tasks[i]}: {100 * v:.1f}%"
            if iv.get("lo") is not None:
                tip += f" [95% CI {100 * iv['lo']:.1f}–{100 * iv['hi']:.1f}]"
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{c}">'
                       f"<title>{escape(tip)}</title></circle>")
    out.append("</g>")
    for k, m in enumerate(models):
        out.append(f'<rect x="{legend_x:.1f}" y="{legend_y + 18 * k}" width="12" height="12" '
                   f'fill="{color(k)}"/><text x="{legend_x + 18:.1f}" y="{legend_y + 10 + 18 * k}" '
                   f'font-size="12">{escape(m["name"])}</text>')
    out.append("</svg>")
    return "".join(out)


def _pts(d: dict[str, Any]) -> Markup:
    if d.get("value") is None:
        return Markup("—")
    s = f"{100 * d['value']:+.1f}"
    if d.get("lo") is not None:
        s += f' <span class="ci">[{100 * d["lo"]:+.1f}, {100 * d["hi"]:+.1f}]</span>'
    return Markup(s)


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


@section("dynamic.abilities", title="Dynamic evaluation: ability vectors", order=140)
def abilities_section(ctx: RunContext) -> str | None:
    """The ability vector per model (radar and table), sharpness and worst task."""
    if ctx.manifest.get("kind") != "dynamic":
        return None
    m = ctx.cached("dynamic", lambda: compute(ctx.store))
    tasks: list[str] = m.get("tasks", [])
    codes: dict[str, str] = m.get("task_codes", {})
    if not m["models"]:
        return "<p>No task was scored (see the judge calibration below).</p>"
    rows = []
    for mod in m["models"]:
        w = mod["worst_task"]
        rows.append([mod["name"], *[pct(mod["vector"][t]) for t in tasks],
                     _pts(mod["sharpness"]),
                     "—" if w["task"] is None else f"{codes.get(w['task'], w['task'])} "
                     f"{100 * w['value']:.1f}"])
    head = ["model", *[f"{codes.get(t, t)} {t}" for t in tasks],
            "sharpness (T0 − mean others)", "worst task"]
    return (Markup(radar_svg(tasks, codes, m["models"]))
            + "<p>Score % with 95% bootstrap intervals over items. Open tasks are scored by "
              f"the calibrated judge {esc(m.get('scoring_judge'))}.</p>"
            + table(head, rows))


@section("dynamic.judges", title="Dynamic evaluation: judge calibration", order=141)
def judges_section(ctx: RunContext) -> str | None:
    """Per judge: AUROC of paraphrase vs corruption, calibration error, agreement."""
    if ctx.manifest.get("kind") != "dynamic":
        return None
    m = ctx.cached("dynamic", lambda: compute(ctx.store))
    rows = []
    for name, s in m.get("judges", {}).items():
        ag = s["agreement"]
        rows.append([name, s["n_pairs"], _num(s["auroc"]),
                     " ".join(f"{k} {_num(v)}" for k, v in s["auroc_by_corruption"].items()),
                     _num(s["mean_paraphrase"]), _num(s["mean_corruption"]),
                     _num(s["ece_raw"]), _num(s["ece_calibrated"]),
                     _num(ag["pearson"]), pct(ag["exact"], ci=False),
                     f"{s['n_unparsed']}/{s['n_verdicts']}",
                     s["prompt_tokens"] + s["completion_tokens"]
                     + s.get("scoring_prompt_tokens", 0) + s.get("scoring_completion_tokens", 0),
                     "REFUSED" if s["refused"] else "ok"])
    bar = next((s["min_auroc"] for s in m.get("judges", {}).values()), None)
    return ("<p>Paraphrases of a reference must score high and corruptions (swapped object, "
            "attribute, count, action) low. ECE calibrated is out of sample (2-fold). A judge "
            f"below AUROC {esc(bar)} is refused for scoring.</p>"
            + table(["judge", "pairs", "AUROC", "AUROC by corruption", "mean paraphrase",
                     "mean corruption", "ECE raw", "ECE calibrated", "agreement r",
                     "agreement exact %", "unparsed", "tokens", "status"], rows))


__all__ = ["abilities_section", "judges_section", "radar_svg"]
