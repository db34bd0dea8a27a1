"""Reports: terminal tables and JSON."""

from mmsim.report.table import print_table, render

__all__ = ["print_table", "render"]
