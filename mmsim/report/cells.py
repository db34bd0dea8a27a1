"""Terminal-table cells shared by the protocol reports: rates as percentages, intervals
and differences in points."""

from __future__ import annotations

from typing import Any


def pct(v: float | None) -> str:
    """A rate as a percentage with one decimal ("—" for None)."""
    return "—" if v is None else f"{100 * v:.1f}"


def interval(d: dict[str, Any]) -> str:
    """A ``{value, lo, hi}`` rate as "58.3 [46.7–71.7]" (the interval when known)."""
    if d.get("value") is None:
        return "—"
    s = pct(d["value"])
    if d.get("lo") is not None and d.get("hi") is not None:
        s += f" [{pct(d['lo'])}–{pct(d['hi'])}]"
    return s


def points(v: float | None, lo: float | None = None, hi: float | None = None) -> str:
    """A difference of rates in signed points, "+28.3 [+16.7, +41.7]"."""
    if v is None:
        return "—"
    s = f"{100 * v:+.1f}"
    if lo is not None and hi is not None:
        s += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return s


__all__ = ["interval", "pct", "points"]
