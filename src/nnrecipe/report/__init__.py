"""Rendering what a run recorded: the HTML report, findings.json, PNG plots."""

from nnrecipe.report.html import render_html
from nnrecipe.report.write import write_outputs

__all__ = ["render_html", "write_outputs"]
