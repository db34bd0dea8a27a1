"""The section registry of the HTML report.

A section is a function ``(RunContext) -> str | None`` that returns an HTML fragment for
one run, or ``None`` when the run has nothing for it (e.g. a classification section on an
InterFeedback run). Protocols register their own sections::

    from mmsim.report.sections import RunContext, section

    @section("classification.accuracy", title="Classification accuracy", order=200)
    def classification_accuracy(ctx: RunContext) -> str | None:
        m = ctx.cached("classification", lambda: compute_classification(ctx.store))
        if not m:
            return None
        return "<p>...</p>"

Sections run in ``order`` (then name). A section that raises is shown as an error box; the
rest of the report still renders. A protocol package registers its sections in
``mmsim/protocols/<name>/sections.py`` (imported by :func:`discover_sections` when a report
is built); plugins (``--plugin`` files, ``mmsim.plugins`` entry points) may register sections
too. ``ctx.metrics`` holds the InterFeedback metrics, or for a run of another protocol only
``{schema: None, kind, run_id, name, status, simulated, manifest}``.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, TypeVar

from mmsim.metrics.outcomes import EpisodeOutcome
from mmsim.registry import Registry
from mmsim.store import RunStore

T = TypeVar("T")


class Markup(str):
    """A string that is already HTML (not escaped again)."""

    __slots__ = ()


def esc(value: object) -> Markup:
    """HTML for ``value``: Markup as is, ``None`` as a dash, anything else escaped."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("—")
    return Markup(escape(str(value)))


def pct(iv: dict[str, Any] | float | None, ci: bool = True) -> Markup:
    """A rate (or a ``{value, lo, hi}`` interval) as a percentage."""
    if isinstance(iv, dict):
        v = iv.get("value")
        if v is None:
            return Markup("—")
        s = f"{100 * v:.1f}"
        if ci and iv.get("lo") is not None and iv.get("hi") is not None:
            s += f' <span class="ci">[{100 * iv["lo"]:.1f}–{100 * iv["hi"]:.1f}]</span>'
        return Markup(s)
    if iv is None:
        return Markup("—")
    return Markup(f"{100 * iv:.1f}")


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], *,
          css_class: str = "data") -> Markup:
    """An HTML table; cells are escaped unless they are :class:`Markup`."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return Markup(f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
                  f"<tbody>{body}</tbody></table>")


@dataclass(slots=True)
class RunContext:
    """What a section may look at for one run."""

    index: int
    label: str
    run_dir: Path
    store: RunStore
    metrics: dict[str, Any]
    outcomes: list[EpisodeOutcome] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> dict[str, Any]:
        m = self.metrics.get("manifest")
        return m if isinstance(m, dict) else {}

    @property
    def simulated(self) -> bool:
        return bool(self.metrics.get("simulated"))

    def cached(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` once per run and key (share a protocol's metrics between sections)."""
        if key not in self.cache:
            self.cache[key] = make()
        value: T = self.cache[key]
        return value


SectionFn = Callable[[RunContext], str | None]


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    title: str
    fn: SectionFn
    order: int = 100


SECTIONS: Registry[Section] = Registry("report section")


def section(name: str, *, title: str, order: int = 100,
            replace: bool = False) -> Callable[[SectionFn], SectionFn]:
    """Register ``fn`` as the report section ``name`` (see the module docstring)."""

    def deco(fn: SectionFn) -> SectionFn:
        doc = (fn.__doc__ or title).strip().split("\n")[0]
        SECTIONS.register(name, Section(name, title, fn, order), doc=doc, replace=replace)
        return fn

    return deco


def discover_sections() -> None:
    """Load every protocol (the registry imports mmsim's own packages; plugins come through
    ``--plugin`` files or the ``mmsim.plugins`` entry points), so each has registered its
    report sections, without the report importing any protocol by name."""
    from mmsim.runtime.protocol import PROTOCOLS

    PROTOCOLS.names()


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def render_sections(ctx: RunContext) -> list[tuple[Section, str]]:
    """Every registered section that has something for this run, in order."""
    out: list[tuple[Section, str]] = []
    specs = [SECTIONS.get(n) for n in SECTIONS.names()]
    for spec in sorted(specs, key=lambda s: (s.order, s.name)):
        try:
            body = spec.fn(ctx)
        except Exception as exc:  # one broken section must not hide the others
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            body = f'<div class="error-box">This section failed: {escape(tb)}</div>'
        if body is None:
            continue
        out.append((spec, body))
    return out


@section("manifest", title="Run manifest", order=900)
def manifest_section(ctx: RunContext) -> str | None:
    """The run manifest: what was run, with which code, models, seeds and data."""
    m = ctx.manifest
    if not m:
        return None
    keys = [("scenario file", m.get("scenario_file")),
            ("scenario sha256", m.get("scenario_sha256")),
            ("run fingerprint", m.get("fingerprint")),
            ("mmsim version", m.get("mmsim_version")),
            ("git commit", m.get("git_commit") or "not available"),
            ("python", m.get("python")),
            ("seed", m.get("seed")),
            ("limit", m.get("limit")),
            ("dataset", (m.get("dataset") or {}).get("name")),
            ("dataset samples", (m.get("dataset") or {}).get("n_samples")),
            ("dataset fingerprint", (m.get("dataset") or {}).get("fingerprint")),
            ("simulated", m.get("simulated"))]
    rows = [(k, Markup(f"<code>{escape(str(v))}</code>")) for k, v in keys]
    agents = m.get("agents") or {}
    arows = []
    for name, a in agents.items():
        a = a if isinstance(a, dict) else {}
        arows.append((name, a.get("backend"), a.get("model"), a.get("endpoint"),
                      Markup(f"<code>{escape(json.dumps(a.get('sampling', {})))}</code>"),
                      "yes" if a.get("simulated") else "no"))
    templates = m.get("prompt_templates") or {}
    trows = [(k, Markup(f"<code>{escape(str(v))}</code>")) for k, v in templates.items()]
    parts: list[str] = [table(("field", "value"), rows, css_class="data kv")]
    if arows:
        parts.append("<h4>Agents</h4>")
        parts.append(table(("agent", "backend", "model", "endpoint", "sampling", "simulated"),
                           arows))
    if trows:
        parts.append("<h4>Prompt templates (sha256)</h4>")
        parts.append(table(("template", "sha256"), trows, css_class="data kv"))
    full = escape(json.dumps(m, indent=2, sort_keys=True, default=str))
    parts.append(f"<details><summary>Full manifest (JSON)</summary><pre>{full}</pre></details>")
    return "".join(parts)


__all__ = ["SECTIONS", "Markup", "RunContext", "Section", "discover_sections", "esc", "pct",
           "render_sections", "section", "slug", "table"]
