"""Reports: terminal tables, JSON, and the self-contained HTML report (docs/reports.md)."""

from mmsim.report.sections import SECTIONS, RunContext, section
from mmsim.report.table import print_table, render

__all__ = ["SECTIONS", "RunContext", "print_table", "render", "section"]
