"""Terminal tables of a video run: accuracy by level (models side by side), the differences
against the first model, and the rollout statistics."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mmsim.protocols.video.metrics import LEVEL_ORDER
from mmsim.report.cells import interval, pct, points


def render(metrics: dict[str, Any]) -> Group:
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    parts: list[Any] = []
    if metrics.get("simulated"):
        parts.append(Text("SIMULATED AGENTS (sim backend): these figures describe simulated "
                          "models, not real ones.", style="bold yellow"))
    levels_by_model: dict[str, dict[str, Any]] = metrics.get("levels", {})
    present = {lv for cells in levels_by_model.values() for lv in cells if lv != "all"}
    levels = [lv for lv in LEVEL_ORDER if lv in present] + sorted(present - set(LEVEL_ORDER))
    names = {"L1": "L1 in-distribution", "L2": "L2 cross-env", "L3": "L3 cross-env-task"}
    t = Table(title=f"Accuracy by level, % [95% CI] — {title}", title_justify="left")
    t.add_column("model")
    for lv in levels:
        t.add_column(names.get(lv, lv), justify="right")
    t.add_column("all", justify="right")
    t.add_column("format %", justify="right")
    t.add_column("no <answer> %", justify="right")
    t.add_column("n", justify="right")
    for model in metrics.get("models", []):
        cells = levels_by_model.get(model)
        if not cells:
            continue
        a = cells["all"]
        t.add_row(model, *[interval(cells[lv]["accuracy"]) if lv in cells else "—"
                           for lv in levels],
                  interval(a["accuracy"]), pct(a["format"]), pct(a["no_answer_tag"]),
                  str(a["n"]))
    parts.append(t)
    sbs = metrics.get("side_by_side", [])
    if sbs:
        d = Table(title="Side by side: accuracy difference vs the first model, points "
                  "[95% paired bootstrap CI]", title_justify="left")
        d.add_column("model vs base")
        for lv in [*levels, "all"]:
            d.add_column(names.get(lv, lv), justify="right")
        pairs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for r in sbs:
            pairs.setdefault((r["model"], r["base"]), {})[r["level"]] = r
        for (model, base), by_level in pairs.items():
            d.add_row(f"{model} − {base}", *[
                points(by_level[lv]["diff"], by_level[lv]["lo"], by_level[lv]["hi"])
                if lv in by_level else "—" for lv in [*levels, "all"]])
        parts.append(d)
    ro: dict[str, dict[str, Any]] = metrics.get("rollouts", {})
    if ro:
        spec = metrics.get("rollout_spec", {})
        ks = [str(k) for k in spec.get("k", [])]
        r = Table(title=f"Rollouts: G={spec.get('samples')} samples per prompt at "
                  f"temperature {spec.get('temperature')} ({spec.get('split')} prompts); "
                  f"reward = {' + '.join(metrics.get('rewards', []))}", title_justify="left")
        for c in ("model", "groups", "samples", "reward mean", "reward std (in group)",
                  "zero-variance groups %", "all right %", "all wrong %", "accuracy %",
                  "format %", *[f"pass@{k}" for k in ks]):
            r.add_column(c, justify="left" if c == "model" else "right")
        for model, s in ro.items():
            r.add_row(model, str(s["groups"]), str(s["samples"]), f"{s['reward_mean']:.3f}",
                      f"{s['reward_std_mean']:.3f}", pct(s["zero_variance_share"]),
                      pct(s["all_right_share"]), pct(s["all_wrong_share"]),
                      pct(s["accuracy"]), pct(s["format"]),
                      *[pct(s["pass_at_k"].get(k)) for k in ks])
        parts.append(r)
    failed = metrics.get("failed", {})
    n_failed = sum(sum(v.values()) for v in failed.values())
    if n_failed:
        parts.append(Text(f"{n_failed} episodes failed (infrastructure; not scored, played "
                          "again on resume): " + str(failed), style="bold red"))
    return Group(*parts)


def print_table(metrics: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(render(metrics))


__all__ = ["print_table", "render"]
