"""The tables of a dynamic-evaluation run, declared once (:mod:`mmsim.report.tabular`):
ability vectors with sharpness and worst task, and the judge calibration table; the
terminal adds a compact text radar."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from mmsim.report.cells import pct
from mmsim.report.tabular import Col, Document, Note, Tab, fmt, print_document, sim_note

_BLOCKS = " ▁▂▃▄▅▆▇█"


def text_radar(metrics: dict[str, Any], width: int = 20) -> str:
    """The ability vectors as text: one line per model (a block per task, T0 first), then
    one bar per task and model."""
    tasks: list[str] = metrics.get("tasks", [])
    models: list[dict[str, Any]] = metrics.get("models", [])
    if not models:
        return ""
    codes = metrics.get("task_codes", {})
    name_w = max(len(m["name"]) for m in models)
    lines = []
    for m in models:
        cells = []
        for t in tasks:
            v = m["vector"][t]["value"]
            block = "·" if v is None else _BLOCKS[min(8, max(0, round(v * 8)))]
            cells.append(f"{codes.get(t, t)}{block}")
        lines.append(f"  {m['name']:<{name_w}}  " + " ".join(cells))
    lines.append("")
    label_w = max(len(f"{codes.get(t, t)} {t}") for t in tasks)
    for t in tasks:
        for i, m in enumerate(models):
            v = m["vector"][t]["value"]
            n = 0 if v is None else round(v * width)
            head = f"{codes.get(t, t)} {t}" if i == 0 else ""
            lines.append(f"  {head:<{label_w}}  {m['name']:<{name_w}} "
                         f"{'█' * n}{'░' * (width - n)} {pct(v)}")
    return "\n".join(lines)


def headline(metrics: dict[str, Any]) -> str:
    """The model whose clean task (T0) stands out most from its perturbed tasks (the
    contamination signal), with its interval, and the scoring judge's status."""
    models = [m for m in metrics.get("models", [])
              if (m.get("sharpness") or {}).get("value") is not None]
    sim = " [simulated agents]" if metrics.get("simulated") else ""
    name = metrics.get("name")
    if metrics.get("status") == "refused":
        return f"{name}: the scoring judge {metrics.get('scoring_judge')!r} was refused: " \
               f"no task was scored{sim}"
    if not models:
        return f"{name}: no ability vector{sim}"
    top = max(models, key=lambda m: m["sharpness"]["value"])
    s = top["sharpness"]
    return (f"{name}: sharpest of {len(metrics['models'])} models is {top['name']}, T0 "
            f"{fmt(Col('p', 'pts_ci'), s)} pts over its perturbed tasks (a contamination "
            f"signal when large){sim}")


def document(metrics: dict[str, Any]) -> Document:
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    tasks: list[str] = metrics.get("tasks", [])
    codes = metrics.get("task_codes", {})
    t = Tab("abilities", f"Ability vectors, score % [95% CI] — {title}", [
        Col("model", key=True),
        *[Col(f"{codes.get(task, task)} {task}", "ci", priority=1 + i)
          for i, task in enumerate(tasks)],
        Col("sharpness pts (T0 − mean others)", "pts_ci"), Col("worst task")])
    for m in metrics.get("models", []):
        w = m["worst_task"]
        worst = None if w["task"] is None else \
            f"{codes.get(w['task'], w['task'])} {pct(w['value'])}"
        t.add(m["name"] + (" (sim)" if m.get("simulated") else ""),
              *[m["vector"][task] for task in tasks], m["sharpness"], worst)
    j = Tab("judges", "Judge calibration (paraphrases must score high, corruptions low)", [
        Col("judge", key=True), Col("pairs", "int", priority=2), Col("AUROC", "num"),
        Col("AUROC by corruption", priority=8), Col("mean para", "num", digits=2, priority=3),
        Col("mean corr", "num", digits=2, priority=3), Col("ECE raw", "num", priority=4),
        Col("ECE calibrated", "num", priority=1), Col("agreement r", "num", digits=2,
                                                      priority=5),
        Col("agreement exact %", "pct", priority=5), Col("unparsed", priority=2),
        Col("tokens", "int", priority=7), Col("status")])
    scoring = metrics.get("scoring_judge")
    for name, s in metrics.get("judges", {}).items():
        ag = s["agreement"]
        by = " ".join(f"{k} {fmt(Col('n', 'num', digits=2), v)}"
                      for k, v in s["auroc_by_corruption"].items())
        tokens = s["prompt_tokens"] + s["completion_tokens"] \
            + s.get("scoring_prompt_tokens", 0) + s.get("scoring_completion_tokens", 0)
        status = "REFUSED" if s["refused"] else "ok"
        if name == scoring:
            status += " (scores open outputs)"
        j.add(name, s["n_pairs"], s["auroc"], by, s["mean_paraphrase"],
              s["mean_corruption"], s["ece_raw"], s["ece_calibrated"], ag["pearson"],
              ag["exact"], f"{s['n_unparsed']}/{s['n_verdicts']}", tokens, status)
    footer = [Note("Ability radar (text):\n" + text_radar(metrics), terminal_only=True)] \
        if metrics.get("models") else []
    if metrics.get("status") == "refused":
        footer.append(Note(f"The scoring judge {scoring!r} was refused: no task was scored.",
                           "error"))
    return Document(headline(metrics), [t, j], sim_note(metrics), footer)


def print_table(metrics: dict[str, Any], console: Console | None = None, *,
                wide: bool = False) -> None:
    print_document(document(metrics), console or Console(), wide=wide)


__all__ = ["document", "headline", "print_table", "text_radar"]
