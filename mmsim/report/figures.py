"""The HTML report's charts as files for a paper: ``mmsim report RUN --figures DIR``.

Every chart the report's sections draw (inline SVG, :mod:`mmsim.report.svg` and the
protocols' own) is written as a standalone SVG (its styles inlined, so it looks the same
outside the page) and, when ``cairosvg`` is installed (``pip install 'mmsim[figures]'``),
as a PDF of the same drawing.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmsim.errors import UserError
from mmsim.metrics.outcomes import classify
from mmsim.report.sections import RunContext, discover_sections, render_sections, slug
from mmsim.store import RunStore

_SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)
_LABEL = re.compile(r'aria-label="([^"]*)"')

#: the report's chart styles (report.css), with its colour variables resolved
STYLE = """
.grid { stroke: #e6e9ef; stroke-width: 1; }
.tick { font-size: 10px; fill: #5b6577; }
.axis-label, .legend, .xlabel { font-size: 11px; fill: #1d2430; }
.title { font-size: 12.5px; font-weight: 600; fill: #1d2430; }
.na { font-size: 9px; fill: #5b6577; }
.errbar { stroke: #222; stroke-width: 1.2; fill: none; }
.curve { fill: none; stroke-width: 2; }
.band { opacity: 0.14; stroke: none; }
text { font-family: Helvetica, Arial, sans-serif; }
"""


def standalone(svg: str) -> str:
    """An inline chart as an SVG file: the SVG namespace, a white background and the
    report's chart styles."""
    head_end = svg.index(">") + 1
    head = svg[:head_end]
    if "xmlns=" not in head:
        head = head.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + head
            + f"<style>{STYLE}</style>"
            + '<rect x="0" y="0" width="100%" height="100%" fill="#ffffff"/>'
            + svg[head_end:] + "\n")


def charts(run_dirs: list[Path]) -> list[tuple[str, str]]:
    """(file stem, standalone SVG) for every chart of the report of ``run_dirs``."""
    from mmsim.report.html import _label, run_metrics

    discover_sections()
    out: list[tuple[str, str]] = []
    for i, d in enumerate(run_dirs):
        store = RunStore.open(d, create=False)
        try:
            metrics = run_metrics(store)
            ctx = RunContext(index=i, label=_label(i, Path(d), metrics), run_dir=Path(d),
                             store=store, metrics=metrics, outcomes=classify(store))
            secs = render_sections(ctx)
        finally:
            store.close()
        prefix = f"run{i + 1}-" if len(run_dirs) > 1 else ""
        for spec, html in secs:
            for k, svg in enumerate(_SVG.findall(html), start=1):
                m = _LABEL.search(svg[:svg.index(">") + 1])
                what = re.sub("-+", "-", slug(m.group(1)))[:48].strip("-") if m else ""
                stem = f"{prefix}{slug(spec.name)}-{k}" + (f"-{what}" if what else "")
                out.append((stem, standalone(svg)))
    return out


def write_figures(run_dirs: list[Path], dest: Path) -> tuple[list[Path], str]:
    """Write every chart to ``dest`` as SVG and PDF; returns the files written and a note
    when PDFs could not be made (cairosvg or its libcairo missing)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the figures folder: {exc.strerror}",
                        where=str(dest)) from None
    written: list[Path] = []
    svgs = charts(run_dirs)
    for stem, svg in svgs:
        p = dest / f"{stem}.svg"
        p.write_text(svg, encoding="utf-8")
        written.append(p)
    note = ""
    try:
        import cairosvg  # type: ignore[import-untyped,unused-ignore]
    except (ImportError, OSError) as exc:  # OSError: the package without libcairo
        return written, (f"SVG only: PDFs need pip install 'mmsim[figures]' "
                         f"({type(exc).__name__})")
    for stem, svg in svgs:
        p = dest / f"{stem}.pdf"
        cairosvg.svg2pdf(bytestring=svg.encode(), write_to=str(p))
        written.append(p)
    return written, note


__all__ = ["STYLE", "charts", "standalone", "write_figures"]
