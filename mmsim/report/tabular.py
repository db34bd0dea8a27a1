"""One structure for a run's tables, four renderers (docs/reports.md).

A protocol declares its tables once, as a :class:`Document` built from its metrics JSON:
each :class:`Tab` has typed :class:`Col` columns (a rate, a rate with its interval, a
difference in points, a count, text) and rows of raw values taken from the metrics. The
renderers only format those values:

* :func:`print_document` — the terminal (rich): a compact summary that fits the console's
  width (columns added by ``priority`` while they fit; one line per row), or every column
  with ``wide=True``;
* :func:`to_markdown` — pipe tables;
* :func:`to_latex` — booktabs ``table`` environments;
* :func:`to_csv` — one CSV per table (intervals as ``lo``/``hi`` columns).

Rates are shown as percentages with one decimal, intervals as ``72.3 [62.6–81.9]``,
differences as signed points.
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

Kind = Literal["text", "int", "pct", "ci", "pts", "pts_ci", "num"]

#: a column of a compact summary is always shown when it fits (priority 0 first)
NEVER_COMPACT = 1_000


@dataclass(frozen=True, slots=True)
class Col:
    """A column: its header, what its values are, and how soon the compact summary shows
    it (lower first; :data:`NEVER_COMPACT`: only in the full table).

    kinds: ``text`` (str), ``int``, ``pct`` (a rate in [0, 1]), ``ci`` (a ``{value, lo,
    hi}`` rate), ``pts`` (a difference of rates, signed points), ``pts_ci`` (a ``{value,
    lo, hi}`` difference), ``num`` (a float with ``digits`` decimals). ``key`` columns
    name the row (left-aligned)."""

    name: str
    kind: Kind = "text"
    key: bool = False
    priority: int = 0
    digits: int = 3


@dataclass(slots=True)
class Tab:
    """One table: ``name`` (a short id: ``--table``, CSV file names), a title, columns,
    rows of raw values (one per column), a caption, and whether the compact terminal
    summary shows it."""

    name: str
    title: str
    columns: list[Col]
    rows: list[list[Any]] = field(default_factory=list)
    caption: str = ""
    compact: bool = True

    def add(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"table {self.name!r}: {len(values)} values for "
                             f"{len(self.columns)} columns")
        self.rows.append(list(values))


@dataclass(slots=True)
class Note:
    text: str
    style: str = ""  # "warning" (bold yellow), "error" (bold red), "dim"
    terminal_only: bool = False


@dataclass(slots=True)
class Document:
    """A run's tables: a one-line ``headline`` (what the run found), notes (e.g. the
    simulated-agents banner) and the tables."""

    headline: str
    tables: list[Tab] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    footer: list[Note] = field(default_factory=list)


SIMULATED = ("SIMULATED AGENTS (sim backend): these figures describe simulated models, "
             "not real ones.")


def sim_note(metrics: dict[str, Any]) -> list[Note]:
    return [Note(SIMULATED, "warning")] if metrics.get("simulated") else []


# -- formatting of one value --------------------------------------------------------------

DASH = "—"


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:.1f}"


def _pts(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:+.1f}"


def _iv(v: Any) -> tuple[float | None, float | None, float | None]:
    if not isinstance(v, dict):
        return (None if v is None else float(v)), None, None
    return v.get("value"), v.get("lo"), v.get("hi")


def fmt(col: Col, v: Any, *, dash: str = DASH, en: str = "–") -> str:
    """A value as text (the same for the terminal and markdown; LaTeX swaps the dashes)."""
    if v is None:
        return dash
    if col.kind == "text":
        return str(v)
    if col.kind == "int":
        return str(int(v))
    if col.kind == "num":
        return f"{float(v):.{col.digits}f}"
    if col.kind == "pct":
        return _pct(float(v))
    value, lo, hi = _iv(v)
    if value is None:
        return dash
    if col.kind == "ci":
        s = _pct(value)
        if lo is not None and hi is not None:
            s += f" [{_pct(lo)}{en}{_pct(hi)}]"
        return s
    if col.kind in ("pts", "pts_ci"):
        s = _pts(value)
        if lo is not None and hi is not None:
            s += f" [{_pts(lo)}, {_pts(hi)}]"
        return s
    raise ValueError(f"unknown column kind {col.kind!r}")


def _numbers(col: Col, v: Any) -> list[str]:
    """A value as CSV fields: rates and differences in percent (points), full precision;
    intervals as value, lo, hi."""
    def p(x: float | None) -> str:
        return "" if x is None else repr(round(100 * float(x), 6))

    if col.kind in ("ci", "pts_ci"):
        value, lo, hi = _iv(v)
        return [p(value), p(lo), p(hi)]
    if v is None:
        return [""]
    if col.kind in ("pct", "pts"):
        return [p(float(v))]
    if col.kind == "num":
        return [repr(float(v))]
    if col.kind == "int":
        return [str(int(v))]
    return [str(v)]


def _csv_headers(col: Col) -> list[str]:
    if col.kind in ("ci", "pts_ci"):
        return [col.name, f"{col.name} lo", f"{col.name} hi"]
    return [col.name]


# -- the terminal -------------------------------------------------------------------------

_STYLES = {"warning": "bold yellow", "error": "bold red", "dim": "dim", "bold": "bold"}


def _text(note: Note) -> Text:
    return Text(note.text, style=_STYLES.get(note.style, note.style))


def _rich_full(tab: Tab) -> Table:
    t = Table(title=tab.title, title_justify="left", box=box.SIMPLE_HEAD,
              caption=tab.caption or None, caption_justify="left")
    for c in tab.columns:
        t.add_column(c.name, justify="left" if c.key or c.kind == "text" else "right",
                     no_wrap=True)
    for row in tab.rows:
        t.add_row(*[Text(fmt(c, v)) for c, v in zip(tab.columns, row, strict=True)])
    return t


def _min_header(name: str) -> int:
    return max((cell_len(w) for w in name.split()), default=1)


def _wrap(name: str, width: int) -> list[str]:
    return textwrap.wrap(name, width=width, break_long_words=True) or [""]


def _cut(s: str, width: int) -> str:
    if cell_len(s) <= width:
        return s
    out = ""
    for ch in s:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def _fit_line(s: str, width: int, right: bool) -> str:
    s = _cut(s, width)
    pad = " " * (width - cell_len(s))
    return pad + s if right else s + pad


SEP = "  "


def _head_part(ws: list[str], d: int, depth: int, width: int, right: bool) -> str:
    """Line ``d`` of a wrapped header (bottom-aligned over ``depth`` lines)."""
    k = d - (depth - len(ws))
    return _fit_line(ws[k] if k >= 0 else "", width, right)


def compact_lines(tab: Tab, width: int) -> list[Text]:
    """The table in ``width`` columns, one line per row: the key columns as one label
    (rows grouped under a heading line of all keys but the last when there are several),
    the other columns added by ``priority`` while they fit; headers wrap, values never."""
    keys = [i for i, c in enumerate(tab.columns) if c.key]
    others = [i for i, c in enumerate(tab.columns) if not c.key
              and c.priority < NEVER_COMPACT]
    texts = [[fmt(c, v) for c, v in zip(tab.columns, row, strict=True)] for row in tab.rows]
    grouped = len(keys) > 1
    if grouped:
        heads = [" · ".join(t[i] for i in keys[:-1]) for t in texts]
        labels = [" " + t[keys[-1]] for t in texts]
    else:
        heads = []
        labels = [" · ".join(t[i] for i in keys) for t in texts]
    label_name = " · ".join(tab.columns[i].name for i in keys) if not grouped \
        else tab.columns[keys[-1]].name
    label_w = max([cell_len(s) for s in labels] + [_min_header(label_name)])
    widths = {i: max([cell_len(t[i]) for t in texts] + [_min_header(tab.columns[i].name)])
              for i in others}
    # the first figures (priority 0) with a label of at least 12 columns; then more
    # figures only while the label keeps its width (up to 24 columns)
    chosen: list[int] = []
    used = 0
    for i in sorted(others, key=lambda i: tab.columns[i].priority):
        need = min(label_w, 12 if tab.columns[i].priority == 0 else 24)
        if need + used + len(SEP) + widths[i] <= width:
            chosen.append(i)
            used += len(SEP) + widths[i]
    shown = sorted(chosen)
    label_w = max(1, min(label_w, width - used))
    total = label_w + sum(len(SEP) + widths[i] for i in shown)
    right = {i: tab.columns[i].kind != "text" for i in shown}
    # headers, bottom-aligned over their columns
    wrapped = {i: _wrap(tab.columns[i].name, widths[i]) for i in shown}
    lab = _wrap(label_name, label_w)
    depth = max([len(w) for w in wrapped.values()] + [len(lab)])
    lines: list[Text] = [Text(x) for x in _wrap(tab.title, max(width, 20))]
    for d in range(depth):
        line = _head_part(lab, d, depth, label_w, False) + "".join(
            SEP + _head_part(wrapped[i], d, depth, widths[i], right[i]) for i in shown)
        lines.append(Text(line.rstrip(), style="bold"))
    lines.append(Text("─" * total))
    last: str | None = None
    for k, row in enumerate(texts):
        if grouped and heads[k] != last:
            last = heads[k]
            lines.append(Text(_cut(heads[k], width), style="bold"))
        line = _fit_line(labels[k], label_w, False) + "".join(
            SEP + _fit_line(row[i], widths[i], right[i]) for i in shown)
        lines.append(Text(line.rstrip()))
    if tab.caption:
        lines += [Text(x, style="dim") for x in _wrap(tab.caption, max(width, 20))]
    hidden = len(tab.columns) - len(keys) - len(shown)
    if hidden:
        lines.append(Text(f"({hidden} more column{'s' if hidden > 1 else ''}: --wide)",
                          style="dim"))
    return lines


def print_natural(console: Console, renderable: Any) -> None:
    """Print ``renderable`` at the width it needs (at least the console's): tables are
    never squeezed or cut; a terminal narrower than that wraps or scrolls them."""
    need = Measurement.get(console, console.options.update_width(100_000),
                           renderable).maximum
    old = console.width  # print(width=) cannot go past the console's width
    console.width = max(old, need)
    try:
        console.print(renderable, crop=False)
    finally:
        console.width = old


def print_document(doc: Document, console: Console, *, wide: bool = False,
                   headline: bool = True) -> None:
    """The run's tables in the terminal: compact (fits ``console.width``) or ``wide``
    (every column and table, at the width they need)."""
    if headline and doc.headline:
        console.print(Text(doc.headline, style="bold"))
    for note in doc.notes:
        console.print(_text(note))
    skipped = 0
    for tab in doc.tables:
        if not tab.rows:
            continue
        if wide:
            print_natural(console, _rich_full(tab))
        elif tab.compact:
            console.print()
            for line in compact_lines(tab, console.width):
                console.print(line, no_wrap=True, overflow="ellipsis", crop=True)
        else:
            skipped += 1
    for note in doc.footer:
        console.print(_text(note))
    if skipped:
        console.print(Text(f"{skipped} more table{'s' if skipped > 1 else ''}: "
                           "mmsim report RUN (or --wide)", style="dim"), soft_wrap=True)


# -- markdown, LaTeX, CSV -----------------------------------------------------------------

def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    """Every table as a GitHub-flavoured pipe table under a bold title."""
    out: list[str] = []
    if doc.headline:
        out += [f"**{_md_cell(doc.headline)}**", ""]
    for note in doc.notes:
        if not note.terminal_only:
            out += [f"> {_md_cell(note.text)}", ""]
    for tab in doc.tables:
        if not tab.rows:
            continue
        out += [f"**{_md_cell(tab.title)}**", ""]
        out.append("| " + " | ".join(_md_cell(c.name) for c in tab.columns) + " |")
        out.append("|" + "|".join(":---" if c.key or c.kind == "text" else "---:"
                                  for c in tab.columns) + "|")
        for row in tab.rows:
            out.append("| " + " | ".join(_md_cell(fmt(c, v)) for c, v in
                                         zip(tab.columns, row, strict=True)) + " |")
        if tab.caption:
            out += ["", f"*{_md_cell(tab.caption)}*"]
        out.append("")
    for note in doc.footer:
        if not note.terminal_only:
            out += [f"> {_md_cell(note.text)}", ""]
    return "\n".join(out).rstrip("\n") + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}", "—": "---", "–": "--", "−": "$-$",
                  "≤": r"$\leq$", "≥": r"$\geq$", "→": r"$\to$", "×": r"$\times$",
                  "·": r"$\cdot$", "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def to_latex(doc: Document) -> str:
    """Every table as a booktabs ``table`` (needs ``\\usepackage{booktabs}``); the
    caption is the table's title (and caption), the label ``tab:<table name>``."""
    out = [f"% {latex_escape(doc.headline)}", "% needs \\usepackage{booktabs}", ""] \
        if doc.headline else ["% needs \\usepackage{booktabs}", ""]
    for tab in doc.tables:
        if not tab.rows:
            continue
        spec = "".join("l" if c.key or c.kind == "text" else "r" for c in tab.columns)
        caption = tab.title + (f" {tab.caption}" if tab.caption else "")
        out += [r"\begin{table}[ht]", r"\centering", r"\small",
                f"\\caption{{{latex_escape(caption)}}}",
                f"\\label{{tab:{tab.name}}}",
                f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
                " & ".join(latex_escape(c.name) for c in tab.columns) + r" \\", r"\midrule"]
        for row in tab.rows:
            out.append(" & ".join(latex_escape(fmt(c, v)) for c, v in
                                  zip(tab.columns, row, strict=True)) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def to_csv(tab: Tab) -> str:
    """One table as CSV: rates and differences in percent (points) at full precision,
    an interval as three columns (``X``, ``X lo``, ``X hi``); empty for no value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([h for c in tab.columns for h in _csv_headers(c)])
    for row in tab.rows:
        w.writerow([x for c, v in zip(tab.columns, row, strict=True) for x in _numbers(c, v)])
    return buf.getvalue()


def pick(doc: Document, name: str | None) -> list[Tab]:
    """The tables named ``name`` (all when None); a KeyError lists the names."""
    if name is None:
        return [t for t in doc.tables if t.rows]
    found = [t for t in doc.tables if t.name == name]
    if not found:
        raise KeyError(", ".join(t.name for t in doc.tables))
    return found


FORMATS: dict[str, Callable[[Document], str]] = {"markdown": to_markdown, "latex": to_latex}


__all__ = ["DASH", "FORMATS", "NEVER_COMPACT", "SIMULATED", "Col", "Document", "Note", "Tab",
           "fmt", "latex_escape", "pick", "print_document", "print_natural",
           "sim_note",
           "to_csv", "to_latex", "to_markdown"]
