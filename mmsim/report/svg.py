"""Tiny inline-SVG charts for the HTML report (no plotting dependency).

Values are rates in [0, 1] drawn as percentages; ``None`` values are left out. Every mark
carries a ``<title>`` so hovering shows the exact figure and its interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

#: the widest a multi-panel chart grows: at 800 px a page lays it out unscaled
MAX_CHART_W = 720.0

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass(frozen=True, slots=True)
class Bar:
    series: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    note: str = ""


@dataclass(slots=True)
class BarGroup:
    label: str
    bars: list[Bar] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float | None
    lo: float | None = None
    hi: float | None = None


@dataclass(slots=True)
class Line:
    label: str
    points: list[Point] = field(default_factory=list)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _tip(label: str, v: float | None, lo: float | None, hi: float | None, note: str = "") -> str:
    s = f"{label}: {_pct(v)}"
    if lo is not None and hi is not None:
        s += f" [95% CI {_pct(lo)}–{_pct(hi)}]"
    if note:
        s += f" ({note})"
    return f"<title>{escape(s)}</title>"


def _y_axis(x0: float, y0: float, h: float, w: float, y_max: float, label: str) -> list[str]:
    out = []
    for k in range(5):
        frac = k / 4
        y = y0 + h - frac * h
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w:.1f}" y2="{y:.1f}" '
                   f'class="grid"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                   f"{100 * frac * y_max:.0f}</text>")
    out.append(f'<text x="12" y="{y0 + h / 2:.1f}" transform="rotate(-90 12 {y0 + h / 2:.1f})" '
               f'text-anchor="middle" class="axis-label">{escape(label)}</text>')
    return out


def _legend(series: list[str], x: float, y: float, start: int = 0,
            max_w: float = MAX_CHART_W) -> tuple[list[str], int, float]:
    """Legend entries left to right from (x, y), wrapping onto a new row (16 px down)
    before a row grows past ``max_w``; returns the marks, the rows used and the widest
    row's width (an entry longer than ``max_w`` gets a row of its own)."""
    out: list[str] = []
    cx, row, widest = x, 0, 0.0
    for i, s in enumerate(series):
        w = 24 + 7 * len(s)
        if cx > x and cx - x + w > max_w:
            cx, row = x, row + 1
        ry = y + 16 * row
        out.append(f'<rect x="{cx:.1f}" y="{ry - 9}" width="10" height="10" '
                   f'fill="{color(start + i)}"/>')
        out.append(f'<text x="{cx + 14:.1f}" y="{ry}" class="legend">{escape(s)}</text>')
        cx += w
        widest = max(widest, cx - x)
    return out, row + 1, widest


def _series(groups: list[BarGroup]) -> list[str]:
    """The series of grouped bars, in order of first appearance (one colour each)."""
    return list(dict.fromkeys(b.series for g in groups for b in g.bars))


def bar_chart(groups: list[BarGroup], *, title: str, y_label: str = "%",
              y_max: float = 1.0, css_class: str = "plot bar-chart") -> str:
    """Grouped bars with 95% interval whiskers; one colour per series."""
    series = _series(groups)
    n_series = max(1, len(series))
    bar_w = max(8.0, min(26.0, 160.0 / n_series))
    group_w = n_series * bar_w + 18
    left, top, h = 52.0, 34.0, 200.0
    legend, legend_rows, legend_w = _legend(series, left, 28, max_w=MAX_CHART_W - left - 10)
    top += 16 * (legend_rows - 1)
    longest = max((len(g.label) for g in groups), default=0)
    rotate = longest * 6.5 > group_w
    wrapped = {g.label: _wrap_label(g.label, 40) for g in groups}  # rotated labels: whole
    n_lines = max((len(v) for v in wrapped.values()), default=1)
    bottom = 30 + (min(longest, 40) * 5.2 + 14 * (n_lines - 1) if rotate else 0)
    if rotate:  # a slanted first label reaches left of its bar: keep it inside the canvas
        reach = min(longest, 40) * 6.0 * 0.82  # label width x cos(35 deg)
        left = max(left, reach - 9 - n_series * bar_w / 2 + 4)
    width = max(left + max(1, len(groups)) * group_w + 20, left + legend_w + 10,
                left + 7.8 * len(title))
    height = top + h + bottom + 10
    parts = [f'<svg class="{css_class}" role="img" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" class="title">{escape(title)}</text>']
    parts += legend
    parts += _y_axis(left, top, h, width - left - 10, y_max, y_label)

    def y_of(v: float) -> float:
        return top + h - min(max(v / y_max, 0.0), 1.0) * h

    for gi, g in enumerate(groups):
        gx = left + gi * group_w + 9
        for b in g.bars:
            si = series.index(b.series)
            x = gx + si * bar_w
            if b.value is None:
                parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + h - 3}" '
                             f'text-anchor="middle" class="na">n/a</text>')
                continue
            y = y_of(b.value)
            parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{top + h - y:.1f}" fill="{color(si)}">'
                         f"{_tip(f'{g.label} / {b.series}', b.value, b.lo, b.hi, b.note)}"
                         f"</rect>")
            if b.lo is not None and b.hi is not None:
                cx = x + bar_w / 2
                y1, y2 = y_of(b.lo), y_of(b.hi)
                parts.append(f'<path class="errbar" d="M{cx:.1f} {y1:.1f}V{y2:.1f}'
                             f'M{cx - 3:.1f} {y1:.1f}h6M{cx - 3:.1f} {y2:.1f}h6"/>')
        lx = gx + n_series * bar_w / 2
        ly = top + h + 14
        if rotate:
            lines = wrapped[g.label]
            spans = "".join(f'<tspan x="{lx:.1f}" dy="{0 if k == 0 else 13}">{escape(t)}'
                            "</tspan>" for k, t in enumerate(lines))
            parts.append(f'<text x="{lx:.1f}" y="{ly}" transform="rotate(-35 {lx:.1f} {ly})" '
                         f'text-anchor="end" class="xlabel"><title>{escape(g.label)}</title>'
                         f"{spans}</text>")
        else:
            parts.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="middle" class="xlabel">'
                         f"{escape(g.label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(groups: list[BarGroup], *, title: str, x_label: str = "%",
               x_max: float = 1.0, label_chars: int = 30,
               css_class: str = "plot hbar-chart") -> str:
    """Horizontal grouped bars, one row per group: the group's label wrapped whole on the
    left in full-size text, one bar per series with its 95% whisker and its figure printed
    at its end. Grows downwards with the number of groups instead of widening (and being
    scaled down until the labels cannot be read), so long names stay legible."""
    series = _series(groups)
    n_series = max(1, len(series))
    wrapped = {g.label: _wrap_label(g.label, label_chars) for g in groups}
    longest = max((len(t) for v in wrapped.values() for t in v), default=0)
    label_w = max(60.0, longest * 6.4 + 14)
    plot_w, value_w, bar_h, gap = 300.0, 70.0, 12.0, 3.0
    legend, legend_rows, legend_w = _legend(series, 10, 30, max_w=MAX_CHART_W - 20)
    left = label_w
    top = 60.0 + 16 * (legend_rows - 1)  # title, legend, axis ticks
    rows = [max(n_series * (bar_h + gap) + 10, 13 * len(wrapped[g.label]) + 10)
            for g in groups]
    width = max(left + plot_w + value_w, 10 + legend_w, 10 + 7.8 * len(title))
    height = top + sum(rows) + 10
    parts = [f'<svg class="{css_class}" role="img" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" aria-label="{escape(title)}">',
             f'<text x="10" y="14" class="title">{escape(title)}</text>']
    parts += legend
    axis_y = top - 8
    body_h = sum(rows)
    for k in range(5):
        x = left + k / 4 * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" '
                     f'y2="{top + body_h:.1f}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y:.1f}" text-anchor="middle" class="tick">'
                     f'{round(100 * k / 4 * x_max, 1):g}{escape(x_label) if k == 4 else ""}'
                     '</text>')

    def x_of(v: float) -> float:
        return left + min(max(v / x_max, 0.0), 1.0) * plot_w

    y = top
    for g, row_h in zip(groups, rows, strict=True):
        lines = wrapped[g.label]
        ly = y + row_h / 2 - 13 * (len(lines) - 1) / 2 + 4
        spans = "".join(f'<tspan x="{left - 8:.1f}" dy="{0 if k == 0 else 13}">{escape(t)}'
                        "</tspan>" for k, t in enumerate(lines))
        parts.append(f'<text x="{left - 8:.1f}" y="{ly:.1f}" text-anchor="end" '
                     f'class="ylabel"><title>{escape(g.label)}</title>{spans}</text>')
        by = y + (row_h - n_series * (bar_h + gap)) / 2
        for b in g.bars:
            si = series.index(b.series)
            yy = by + si * (bar_h + gap)
            if b.value is None:
                parts.append(f'<text x="{left + 4:.1f}" y="{yy + bar_h - 2:.1f}" '
                             f'class="value na">n/a</text>')
                continue
            xe = x_of(b.value)
            parts.append(f'<rect class="bar" x="{left:.1f}" y="{yy:.1f}" '
                         f'width="{max(xe - left, 0.5):.1f}" height="{bar_h:.1f}" '
                         f'fill="{color(si)}">'
                         f"{_tip(f'{g.label} / {b.series}', b.value, b.lo, b.hi, b.note)}"
                         "</rect>")
            end = xe
            if b.lo is not None and b.hi is not None:
                x1, x2, cy = x_of(b.lo), x_of(b.hi), yy + bar_h / 2
                parts.append(f'<path class="errbar" d="M{x1:.1f} {cy:.1f}H{x2:.1f}'
                             f'M{x1:.1f} {cy - 3:.1f}v6M{x2:.1f} {cy - 3:.1f}v6"/>')
                end = max(end, x2)
            parts.append(f'<text x="{end + 4:.1f}" y="{yy + bar_h - 2:.1f}" class="value">'
                         f"{_pct(b.value)}</text>")
        y += row_h
        parts.append(f'<line x1="10" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" '
                     'class="grid"/>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(lines: list[Line], *, title: str, x_label: str = "round",
               y_label: str = "%", y_max: float = 1.0,
               css_class: str = "plot line-chart") -> str:
    """Curves over integer x (rounds) with shaded 95% interval bands."""
    xs = sorted({p.x for ln in lines for p in ln.points})
    x_min, x_max = (xs[0], xs[-1]) if xs else (0.0, 1.0)
    if x_max == x_min:
        x_max = x_min + 1
    left, w, h = 52.0, 340.0, 200.0
    legend, legend_rows, legend_w = _legend([ln.label for ln in lines], left, 30,
                                            max_w=MAX_CHART_W - left - 10)
    top = 34.0 + 16 * (legend_rows - 1)
    width = max(left + w + 20, left + legend_w + 10, left + 7.8 * len(title))
    height = top + h + 46
    parts = [f'<svg class="{css_class}" role="img" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" class="title">{escape(title)}</text>']
    parts += legend
    parts += _y_axis(left, top, h, w, y_max, y_label)

    def px(x: float) -> float:
        return left + (x - x_min) / (x_max - x_min) * w

    def py(v: float) -> float:
        return top + h - min(max(v / y_max, 0.0), 1.0) * h

    for x in xs:
        parts.append(f'<text x="{px(x):.1f}" y="{top + h + 16}" text-anchor="middle" '
                     f'class="tick">{x:g}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{top + h + 34}" text-anchor="middle" '
                 f'class="axis-label">{escape(x_label)}</text>')
    for i, ln in enumerate(lines):
        pts = [p for p in ln.points if p.y is not None]
        band = [p for p in pts if p.lo is not None and p.hi is not None]
        if len(band) >= 2:
            upper = " ".join(f"{px(p.x):.1f},{py(p.hi or 0):.1f}" for p in band)
            lower = " ".join(f"{px(p.x):.1f},{py(p.lo or 0):.1f}" for p in reversed(band))
            parts.append(f'<polygon class="band" points="{upper} {lower}" '
                         f'fill="{color(i)}"/>')
        if pts:
            d = " ".join(f"{px(p.x):.1f},{py(p.y or 0):.1f}" for p in pts)
            parts.append(f'<polyline class="curve" points="{d}" stroke="{color(i)}"/>')
        for p in pts:
            parts.append(f'<circle class="dot" cx="{px(p.x):.1f}" cy="{py(p.y or 0):.1f}" r="3" '
                         f'fill="{color(i)}">'
                         f"{_tip(f'{ln.label}, {x_label} {p.x:g}', p.y, p.lo, p.hi)}</circle>")
    parts.append("</svg>")
    return "".join(parts)


def _wrap_label(text: str, width: int) -> list[str]:
    """A label in lines of at most ``width`` characters, broken after "/", " " or "-"
    where it can be (a name is never cut: the last resort is a hard break)."""
    out: list[str] = []
    rest = text
    while len(rest) > width:
        cut = max(rest.rfind(ch, 0, width) for ch in "/ -×")
        cut = width if cut <= 0 else cut + 1
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [*out, rest] if rest else out or [""]


def small_multiples(lines: list[Line], *, title: str, x_label: str = "round",
                    y_max: float = 1.0, columns: int = 4,
                    css_class: str = "plot small-multiples") -> str:
    """One small panel per curve (its 95% band shaded, the other curves in light grey
    behind it for comparison) in a grid, each panel titled with its full label (wrapped,
    never clipped): readable where overlaid bands are not."""
    xs = sorted({p.x for ln in lines for p in ln.points})
    x_min, x_max = (xs[0], xs[-1]) if xs else (0.0, 1.0)
    if x_max == x_min:
        x_max = x_min + 1
    wrap = 34
    labels = [_wrap_label(ln.label, wrap) for ln in lines]
    label_lines = max((len(x) for x in labels), default=1)
    longest = max((len(x) for lab in labels for x in lab), default=0)
    pw = max(150.0, 6.6 * longest + 36)  # panel width: the longest label line fits
    ph = 110.0
    head = 14.0 * label_lines + 6
    cell_w, cell_h = pw + 46, head + ph + 30
    # as many columns as fit a narrow page unscaled (text stays full size at 800 px)
    ncol = max(1, min(columns, len(lines), int((MAX_CHART_W - 10) // cell_w)))
    nrow = (len(lines) + ncol - 1) // ncol
    title_lines = _wrap_label(title, max(20, int((max(ncol * cell_w, MAX_CHART_W) - 20) / 7.8)))
    width = max(ncol * cell_w + 10, 7.8 * max(len(t) for t in title_lines) + 20)
    y0 = 10 + 16 * len(title_lines)
    height = y0 + nrow * cell_h
    parts = [f'<svg class="{css_class}" role="img" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" aria-label="{escape(title)}">']
    parts += [f'<text x="10" y="{16 + 16 * k}" class="title">{escape(t)}</text>'
              for k, t in enumerate(title_lines)]

    for i, (ln, lab) in enumerate(zip(lines, labels, strict=True)):
        ox = 40 + (i % ncol) * cell_w
        oy = y0 + (i // ncol) * cell_h
        top = oy + head

        def px(x: float, ox: float = ox) -> float:
            return ox + (x - x_min) / (x_max - x_min) * pw

        def py(v: float, top: float = top) -> float:
            return top + ph - min(max(v / y_max, 0.0), 1.0) * ph

        for k, text in enumerate(lab):
            parts.append(f'<text x="{ox}" y="{oy + 12 + 14 * k}" class="legend" '
                         f'fill="{color(i)}">{escape(text)}</text>')
        for frac in (0.0, 0.5, 1.0):
            y = top + ph - frac * ph
            parts.append(f'<line x1="{ox}" y1="{y:.1f}" x2="{ox + pw:.1f}" y2="{y:.1f}" '
                         f'class="grid"/>')
            parts.append(f'<text x="{ox - 4}" y="{y + 3:.1f}" text-anchor="end" '
                         f'class="tick">{100 * frac * y_max:.0f}</text>')
        for x in xs:
            parts.append(f'<text x="{px(x):.1f}" y="{top + ph + 13}" text-anchor="middle" '
                         f'class="tick">{x:g}</text>')
        for j, other in enumerate(lines):  # the others, faint, for comparison
            if j == i:
                continue
            opts = [p for p in other.points if p.y is not None]
            if opts:
                d = " ".join(f"{px(p.x):.1f},{py(p.y or 0):.1f}" for p in opts)
                parts.append(f'<polyline class="curve other" points="{d}" stroke="#d5d9e0" '
                             'stroke-width="1"/>')
        pts = [p for p in ln.points if p.y is not None]
        band = [p for p in pts if p.lo is not None and p.hi is not None]
        if len(band) >= 2:
            upper = " ".join(f"{px(p.x):.1f},{py(p.hi or 0):.1f}" for p in band)
            lower = " ".join(f"{px(p.x):.1f},{py(p.lo or 0):.1f}" for p in reversed(band))
            parts.append(f'<polygon class="band" points="{upper} {lower}" fill="{color(i)}" '
                         'style="opacity:0.22"/>')
        if pts:
            d = " ".join(f"{px(p.x):.1f},{py(p.y or 0):.1f}" for p in pts)
            parts.append(f'<polyline class="curve" points="{d}" stroke="{color(i)}"/>')
        for p in pts:
            parts.append(f'<circle class="dot" cx="{px(p.x):.1f}" cy="{py(p.y or 0):.1f}" '
                         f'r="2.5" fill="{color(i)}">'
                         f"{_tip(f'{ln.label}, {x_label} {p.x:g}', p.y, p.lo, p.hi)}</circle>")
        last = pts[-1] if pts else None
        if last is not None and last.y is not None:
            parts.append(f'<text x="{px(last.x) + 4:.1f}" y="{py(last.y) - 4:.1f}" '
                         f'class="tick" text-anchor="end">{100 * last.y:.0f}%</text>')
    parts.append(f'<text x="10" y="{height - 4:.0f}" class="axis-label">{escape(x_label)} '
                 "(x) · % (y) · shaded: 95% CI · grey: the other curves</text>")
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["PALETTE", "Bar", "BarGroup", "Line", "Point", "bar_chart", "color", "line_chart",
           "small_multiples"]
