"""One self-contained HTML page: the report's tables and its plots embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from hpo.errors import UserError
from hpo.report.formatting import sections
from hpo.report.plots import Plot
from hpo.report.tables import RunReport

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
img { max-width: 100%; display: block; margin: 0.5em 0 2em; }
p.note { color: #555; }
"""


def render_html(reports: list[RunReport], plots: list[Plot]) -> str:
    names = ", ".join(report.name for report in reports)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>hpo-report: {html.escape(names)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    for section in sections(reports):
        tag = "h1" if section.level == 1 else "h2"
        parts.append(f"<{tag}>{html.escape(section.title)}</{tag}>")
        if section.text:
            parts.append(f'<p class="note">{html.escape(section.text)}</p>')
        if section.table is not None:
            parts.append(section.table.to_html(index=False, border=0, escape=True))
    if plots:
        parts.append("<h1>Plots</h1>")
    for plot in plots:
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(f"<h2>{html.escape(plot.title)}</h2>")
        parts.append(f'<img alt="{html.escape(plot.title)}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(reports: list[RunReport], plots: list[Plot], path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(reports, plots), encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot write the HTML page ({error.strerror or error})") from None
    return path
