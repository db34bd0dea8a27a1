"""Terminal tables of a dynamic-evaluation run: ability vectors (with a compact text radar),
sharpness and worst task, and the judge calibration table."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mmsim.report.cells import interval, pct, points

_BLOCKS = " ▁▂▃▄▅▆▇█"


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


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


def render(metrics: dict[str, Any]) -> Group:
    title = f"{metrics.get('name')} — {metrics.get('run_id')}"
    banner = Text("SIMULATED AGENTS (sim backend): these figures describe simulated models, "
                  "not real ones.", style="bold yellow") if metrics.get("simulated") else Text("")
    tasks: list[str] = metrics.get("tasks", [])
    codes = metrics.get("task_codes", {})
    t = Table(title=f"Ability vectors, score % [95% CI] — {title}", title_justify="left")
    t.add_column("model")
    for task in tasks:
        t.add_column(f"{codes.get(task, task)} {task}", justify="right")
    t.add_column("sharpness pts (T0 − mean others)", justify="right")
    t.add_column("worst task", justify="right")
    for m in metrics.get("models", []):
        w = m["worst_task"]
        worst = "—" if w["task"] is None else \
            f"{codes.get(w['task'], w['task'])} {pct(w['value'])}"
        sharp = m["sharpness"]
        t.add_row(m["name"] + (" (sim)" if m.get("simulated") else ""),
                  *[interval(m["vector"][task]) for task in tasks],
                  points(sharp["value"], sharp.get("lo"), sharp.get("hi")), worst)
    j = Table(title="Judge calibration (paraphrases must score high, corruptions low)",
              title_justify="left")
    for c in ("judge", "pairs", "AUROC", "AUROC by corruption", "mean para", "mean corr",
              "ECE raw", "ECE calibrated", "agreement r / exact", "unparsed", "tokens",
              "status"):
        j.add_column(c, justify="left" if c in ("judge", "AUROC by corruption", "status")
                     else "right")
    scoring = metrics.get("scoring_judge")
    for name, s in metrics.get("judges", {}).items():
        ag = s["agreement"]
        by = " ".join(f"{k} {_num(v, 2)}" for k, v in s["auroc_by_corruption"].items())
        tokens = s["prompt_tokens"] + s["completion_tokens"] \
            + s.get("scoring_prompt_tokens", 0) + s.get("scoring_completion_tokens", 0)
        status = "REFUSED" if s["refused"] else "ok"
        if name == scoring:
            status += " (scores open outputs)"
        j.add_row(name, str(s["n_pairs"]), _num(s["auroc"]), by,
                  _num(s["mean_paraphrase"], 2), _num(s["mean_corruption"], 2),
                  _num(s["ece_raw"]), _num(s["ece_calibrated"]),
                  f"{_num(ag['pearson'], 2)} / {pct(ag['exact'])}",
                  f"{s['n_unparsed']}/{s['n_verdicts']}", str(tokens), status)
    parts: list[Any] = [banner, t, Text("Ability radar (text):", style="bold"),
                        Text(text_radar(metrics)), j]
    if metrics.get("status") == "refused":
        parts.append(Text(f"The scoring judge {scoring!r} was refused: no task was scored.",
                          style="bold red"))
    return Group(*parts)


def print_table(metrics: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(render(metrics))


__all__ = ["print_table", "render", "text_radar"]
