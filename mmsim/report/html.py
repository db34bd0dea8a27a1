"""The self-contained HTML report: one file, no network, inline CSS, JS and SVG.

``build_html([run_dir, ...])`` renders, per run, every registered section
(:mod:`mmsim.report.sections`), a side-by-side summary when there are several runs, the
transcript viewer (filters driven by the URL hash, e.g. ``report.html#outcome=corrected``)
and the run manifest. See docs/reports.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

from mmsim._version import __version__
from mmsim.metrics.outcomes import classify
from mmsim.report import interfeedback as _interfeedback  # noqa: F401  (registers sections)
from mmsim.report.sections import RunContext, discover_sections, pct, render_sections, slug, table
from mmsim.report.svg import Bar, BarGroup, bar_chart
from mmsim.report.transcripts import ImageBank, episode_view, outcome_counts, stratified_sample
from mmsim.runtime.protocol import protocol_of
from mmsim.store import RunStore

DEFAULT_MAX_EPISODES = 500


def run_metrics(store: RunStore) -> dict[str, Any]:
    """A run's figures for the page: its protocol's own metrics where they feed the generic
    sections (InterFeedback), else its identity and manifest (its protocol's sections
    compute their figures; :mod:`mmsim.report.sections`)."""
    run = store.run()
    manifest = run["manifest"] if run else {}
    proto = protocol_of(manifest.get("kind"))
    if run is not None and not proto.generic_sections:
        return {"schema": None, "kind": proto.name, "run_id": run["run_id"],
                "name": run["name"], "status": run["status"],
                "simulated": bool(manifest.get("simulated")), "manifest": manifest}
    return proto.metrics(store)


@dataclass(frozen=True, slots=True)
class ReportInfo:
    runs: int
    episodes_embedded: int
    episodes_total: int
    images: int
    bytes: int


def _asset(name: str) -> str:
    return files("mmsim.report").joinpath("static", name).read_text(encoding="utf-8")


def _json_for_script(obj: Any) -> str:
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _label(i: int, run_dir: Path, metrics: dict[str, Any]) -> str:
    return f"#{i + 1} {metrics.get('name') or '?'} ({run_dir.name})"


def _summary(ctxs: list[RunContext]) -> str:
    """Side by side: every cell's accuracy, correction rate and parse failures per run."""
    keys: list[tuple[str, str, str]] = []
    by_run: list[dict[tuple[str, str, str], dict[str, Any]]] = []
    for ctx in ctxs:
        d = {}
        for c in ctx.metrics.get("cells") or []:
            k = (c["receiver"], c["provider"], c["policy"])
            d[k] = c
            if k not in keys:
                keys.append(k)
        by_run.append(d)
    runs_rows = [(ctx.label, ctx.metrics.get("run_id"), ctx.metrics.get("status"),
                  "SIMULATED" if ctx.simulated else "real",
                  (ctx.manifest.get("dataset") or {}).get("name"),
                  ctx.metrics.get("test_set"), ctx.metrics.get("max_rounds"))
                 for ctx in ctxs]
    parts: list[str] = [table(("run", "run id", "status", "agents", "dataset", "test set",
                               "rounds"), runs_rows)]
    groups = []
    for k in keys:
        g = BarGroup(" × ".join(k))
        for ctx, d in zip(ctxs, by_run, strict=True):
            c = d.get(k)
            cr = c["correction_rate"] if c else {"value": None, "lo": None, "hi": None}
            g.bars.append(Bar(ctx.label, cr["value"], cr["lo"], cr["hi"]))
        groups.append(g)
    if groups:
        parts.append(bar_chart(groups, title="Correction rate per cell, side by side (95% CI)"))
    headers = ["receiver", "provider", "policy"]
    for ctx in ctxs:
        headers += [f"{ctx.label}: acc %", "corr. % [95% CI]", "unparsed %"]
    rows = []
    for k in keys:
        row: list[object] = list(k)
        for d in by_run:
            c = d.get(k)
            if c is None:
                row += ["—", "—", "—"]
            else:
                row += [pct(c["accuracy"], ci=False), pct(c["correction_rate"]),
                        pct(c["parse_failure_rate"])]
        rows.append(row)
    parts.append(table(headers, rows))
    return "".join(parts)


def headline(ctx: RunContext) -> str:
    """The run's one-line finding (its protocol's tables' headline), or "" when its
    protocol declares no tables."""
    proto = protocol_of(ctx.manifest.get("kind"))
    metrics = ctx.metrics if proto.generic_sections else \
        ctx.cached(proto.name, lambda: proto.metrics(ctx.store))
    doc = proto.tables(metrics)
    return "" if doc is None else str(doc.headline)


def build_html(run_dirs: list[Path], *, max_episodes: int = DEFAULT_MAX_EPISODES,
               thumb_px: int = 320, title: str | None = None) -> tuple[str, ReportInfo]:
    """The report page for ``run_dirs`` and figures about what it embeds."""
    discover_sections()
    stores = [RunStore.open(d, create=False) for d in run_dirs]
    try:
        ctxs = []
        for i, (d, store) in enumerate(zip(run_dirs, stores, strict=True)):
            metrics = run_metrics(store)
            ctxs.append(RunContext(index=i, label=_label(i, Path(d), metrics),
                                   run_dir=Path(d), store=store, metrics=metrics,
                                   outcomes=classify(store)))
        bank = ImageBank(thumb_px)
        episodes: list[dict[str, Any]] = []
        runs_data: list[dict[str, Any]] = []
        for ctx in ctxs:
            seed = int(ctx.manifest.get("seed") or 0)
            chosen = stratified_sample(ctx.outcomes, max_episodes, seed)
            episodes.extend(episode_view(ctx.store, o, bank, ctx.run_dir, ctx.index)
                            for o in chosen)
            runs_data.append({"label": ctx.label, "run_id": ctx.metrics.get("run_id"),
                              "simulated": ctx.simulated, "total": len(ctx.outcomes),
                              "embedded": len(chosen),
                              "outcomes": outcome_counts(ctx.outcomes),
                              "embedded_outcomes": outcome_counts(chosen)})
        run_sections = [(ctx, render_sections(ctx)) for ctx in ctxs]
        headlines = [headline(ctx) for ctx in ctxs]
    finally:
        for s in stores:
            s.close()

    page_title = title or ("mmsim report — " + ", ".join(
        str(c.metrics.get("name")) for c in ctxs))
    any_sim = any(c.simulated for c in ctxs)
    nav = ['<a href="#top">top</a>']
    body: list[str] = []
    if any_sim:
        sim_runs = ", ".join(c.label for c in ctxs if c.simulated)
        body.append('<div class="banner simulated" id="simulated-banner">SIMULATED AGENTS — '
                    "the figures in this report describe simulated models (sim backend), "
                    f"not real ones. Simulated: {escape(sim_runs)}.</div>")
    if len(ctxs) > 1:
        nav.append('<a href="#summary">summary</a>')
        body.append('<section id="summary" class="summary"><h2>Side-by-side summary</h2>'
                    + _summary(ctxs) + "</section>")
    for ctx, secs in run_sections:
        rid = f"run-{ctx.index}"
        nav.append(f'<a href="#{rid}">{escape(ctx.label)}</a>')
        parts = [f'<section class="run" id="{rid}" data-run="{ctx.index}">'
                 f"<h2>Run {escape(ctx.label)}</h2>"
                 f'<p class="path">run directory: <code>{escape(str(ctx.run_dir))}</code></p>']
        if ctx.simulated:
            parts.append('<div class="banner simulated small">SIMULATED: every agent of this '
                         "run marked simulated is a parametric simulation, not a model.</div>")
        for spec, html in secs:
            sid = f"{rid}-{slug(spec.name)}"
            parts.append(f'<section class="section" id="{sid}" data-section="{escape(spec.name)}">'
                         f"<h3>{escape(spec.title)}</h3>{html}</section>")
        parts.append("</section>")
        body.append("".join(parts))
    nav.append('<a href="#transcripts">transcripts</a>')
    bounded = [f"{escape(r['label'])}: {r['embedded']} of {r['total']} episodes embedded"
               for r in runs_data]
    capped = any(r["embedded"] < r["total"] for r in runs_data)
    note = (f"At most {max_episodes} episodes per run are embedded, sampled deterministically "
            "and stratified by outcome (equal share per outcome)." if capped else
            "Every listed episode is embedded.")
    body.append(
        '<section id="transcripts" class="transcripts"><h2>Transcripts</h2>'
        f'<p class="note" id="transcripts-bound">{"; ".join(bounded)}. {note} '
        "Outcomes: <i>corrected</i> (right within the budget after feedback), <i>never "
        "corrected</i>, <i>regressed</i> (graded correct at a round, wrong at a later one; "
        "InterFeedback episodes stop at the first correct answer, so they cannot regress), "
        "<i>first correct</i> (screening answers right at the first try), <i>failed</i> "
        "(infrastructure errors); single-shot episodes of other protocols are <i>correct</i> or "
        "<i>wrong</i>, or <i>scored</i> when a judge's score has no right or wrong (judged "
        "open answers, judge calibration pairs). Filters are kept in the URL "
        "(e.g. <code>#outcome=corrected&amp;receiver=r1</code>); add <code>view=transcripts"
        "</code> to show the viewer alone (<a href=\"#view=transcripts\">viewer only</a>, "
        "<a href=\"#\">whole report</a>).</p>"
        '<div id="filters" class="filters"></div><p id="viewer-status" class="status"></p>'
        '<div id="episodes" class="episodes"></div>'
        '<button id="more" type="button" hidden>show more</button>'
        '<noscript><p>The transcript viewer needs JavaScript.</p></noscript></section>')
    data = {"runs": runs_data, "images": bank.uris, "episodes": episodes}
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    css, js = _asset("report.css"), _asset("report.js")
    html = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(css, js)}">'
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(page_title)}</title><style>{css}</style></head>"
        f'<body><header id="top"><h1>{escape(page_title)}</h1>'
        + "".join(f'<p class="headline" id="headline-{i}">{escape(h)}</p>'
                  for i, h in enumerate(headlines) if h)
        + f'<p class="meta">generated {escape(generated)} by mmsim {escape(__version__)}'
        f" from {len(ctxs)} run(s)</p>"
        f'<nav>{" · ".join(nav)}</nav></header><main>{"".join(body)}</main>'
        '<pre id="js-errors" class="js-errors"></pre>'
        f'<script type="application/json" id="mmsim-data">{_json_for_script(data)}</script>'
        f"<script>{js}</script></body></html>\n")
    info = ReportInfo(runs=len(ctxs), episodes_embedded=len(episodes),
                      episodes_total=sum(r["total"] for r in runs_data),
                      images=len(bank.uris), bytes=len(html.encode()))
    return html, info


def _csp(css: str, js: str) -> str:
    """The page's Content-Security-Policy: its own style and script (by hash) and embedded
    images only; nothing is loaded from anywhere, no other inline code runs (a transcript
    that holds markup cannot inject a script), no form posts anywhere."""
    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()
                                             ).decode() + "'"

    return (f"default-src 'none'; img-src data:; style-src {sha(css)}; "
            f"script-src {sha(js)}; base-uri 'none'; form-action 'none'")


def write_html(run_dirs: list[Path], out: Path, **kwargs: Any) -> ReportInfo:
    """Write the report page to ``out`` (see :func:`build_html`)."""
    html, info = build_html(run_dirs, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return info


__all__ = ["DEFAULT_MAX_EPISODES", "ReportInfo", "build_html", "run_metrics",
           "write_html"]
