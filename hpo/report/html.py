"""One self-contained HTML page of runs: the report's tables, every result in a table that sorts and
filters, and the interactive plotly figures of :mod:`hpo.report.figures` (the dashboard's own).

plotly.js is inlined from the plotly package's bundled copy, so the page works offline and fetches
nothing. :data:`TABLE_SCRIPT`, :data:`TABLE_STYLE` and :func:`trials_table` are shared with
``hpo dashboard``.
"""

from __future__ import annotations

import functools
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpo.errors import UserError
from hpo.report.formatting import sections
from hpo.report.loading import RunLog
from hpo.report.tables import RunReport
from hpo.report.trials import trials_frame

#: Result columns the all-results table shows (those the log holds), the hyperparameters after ``loss``.
TABLE_COLUMNS = ("config_id", "budget", "status", "loss")
TABLE_TAIL = ("val_loss", "val_accuracy", "test_accuracy", "epochs", "attempts", "duration", "finished", "reason")

#: The tables' look and :data:`TABLE_SCRIPT`'s table of every result (shared with ``hpo dashboard``,
#: whose page adds its own sizes after it).
TABLE_STYLE = """
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
.trials .scroll { max-height: 32em; overflow: auto; }
.trials th { cursor: pointer; position: sticky; top: 0; }
.trials input { padding: 0.3em; width: 22em; margin-right: 1em; }
.trials tr.failed td, .trials tr.crashed td, .trials tr.diverged td, .trials tr.lost td { color: #b22; }
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; }
p.note { color: #555; }
.chart { margin: 0.5em 0 2em; }
"""

#: ``hpoTable(element, {columns, rows})``: draws (or redraws, keeping sort and filter) a table
#: whose headers sort on click and whose text box keeps the rows holding every typed word.
TABLE_SCRIPT = r"""
function hpoTable(root, data) {
  var state = root.hpoState;
  if (!state) {
    state = root.hpoState = {sort: null, descending: false, filter: ""};
    root.innerHTML = '<div><input type="search" class="filter" placeholder="filter: words every row must hold">' +
      '<span class="count"></span></div><div class="scroll"><table><thead></thead><tbody></tbody></table></div>';
    root.querySelector("input").addEventListener("input", function (event) {
      state.filter = event.target.value; hpoTableDraw(root);
    });
  }
  root.hpoData = data;
  hpoTableDraw(root);
}
function hpoCell(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return String(value);
}
function hpoEscape(text) {
  return text.replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; });
}
function hpoTableDraw(root) {
  var state = root.hpoState, data = root.hpoData, columns = data.columns, limit = 2000;
  var words = state.filter.toLowerCase().split(/\s+/).filter(function (w) { return w; });
  var rows = data.rows.filter(function (row) {
    if (!words.length) return true;
    var text = row.map(hpoCell).join(" ").toLowerCase();
    return words.every(function (w) { return text.indexOf(w) >= 0; });
  });
  if (state.sort !== null) {
    var i = state.sort, sign = state.descending ? -1 : 1;
    rows = rows.slice().sort(function (a, b) {
      var x = a[i], y = b[i];
      if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
      if (y === null || y === undefined) return -1;
      if (typeof x === "number" && typeof y === "number") return sign * (x - y);
      return sign * String(x).localeCompare(String(y), undefined, {numeric: true});
    });
  }
  var head = "<tr>" + columns.map(function (name, index) {
    var mark = state.sort === index ? (state.descending ? " \u25BC" : " \u25B2") : "";
    return '<th data-column="' + index + '">' + hpoEscape(name) + mark + "</th>";
  }).join("") + "</tr>";
  var status = columns.indexOf("status"), config = columns.indexOf("config_id");
  var body = rows.slice(0, limit).map(function (row) {
    var kind = status >= 0 ? hpoEscape(String(row[status])) : "";
    var id = config >= 0 ? hpoEscape(String(row[config])) : "";
    return '<tr class="' + kind + '" data-config="' + id + '">' +
      row.map(function (v) { return "<td>" + hpoEscape(hpoCell(v)) + "</td>"; }).join("") + "</tr>";
  }).join("");
  root.querySelector("thead").innerHTML = head;
  root.querySelector("tbody").innerHTML = body;
  root.querySelector(".count").textContent = rows.length + " of " + data.rows.length + " results" +
    (rows.length > limit ? " (first " + limit + " shown)" : "");
  root.querySelectorAll("th").forEach(function (th) {
    th.addEventListener("click", function () {
      var index = Number(th.getAttribute("data-column"));
      state.descending = state.sort === index ? !state.descending : false;
      state.sort = index; hpoTableDraw(root);
    });
  });
}
"""


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as bundled with the plotly Python package (nothing fetched from the network)."""
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(encoding="utf-8")


def trials_table(run: RunLog) -> dict:
    """Every result of ``run`` as ``{"columns": [...], "rows": [[...], ...]}`` of JSON values (null where missing)."""
    frame = trials_frame(run)
    hyperparameters = [name for name in (hp.name for hp in run.hyperparameters)
                       if name in frame.columns and name not in TABLE_COLUMNS and name not in TABLE_TAIL]
    tail = [name for name in TABLE_TAIL if name in frame.columns and frame[name].notna().any()]
    columns = [name for name in TABLE_COLUMNS if name in frame.columns] + hyperparameters + tail
    shown = frame[columns]
    cells = []
    for name in columns:
        column = shown[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            cells.append([None if pd.isna(v) else v.strftime("%Y-%m-%d %H:%M:%S") for v in column])
        elif pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
            cells.append([None if v is pd.NA else v for v in column.tolist()])  # Int64: missing is pd.NA
        elif pd.api.types.is_float_dtype(column):
            cells.append([v if math.isfinite(v) else None for v in column.tolist()])
        else:
            cells.append([_json_value(v) for v in column.to_numpy(dtype=object)])
    return {"columns": columns, "rows": [list(row) for row in zip(*cells)] if cells else []}


def script_json(value: Any) -> str:
    """JSON safe to place inside a ``<script>`` element."""
    return json.dumps(value, allow_nan=False).replace("</", "<\\/")


def render_html(reports: list[RunReport]) -> str:
    """The page: the report's sections, then each run's figures and all-results table."""
    from hpo.report.figure_parts import PLOT_CONFIG
    from hpo.report.figures import all_figures

    names = ", ".join(report.name for report in reports)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>hpo-report: {html.escape(names)}</title>",
        f"<style>{TABLE_STYLE}{STYLE}</style>",
        f"<script>{plotly_js()}</script>",
        f"<script>{TABLE_SCRIPT}</script></head><body>",
    ]
    for section in sections(reports):
        tag = "h1" if section.level == 1 else "h2"
        parts.append(f"<{tag}>{html.escape(section.title)}</{tag}>")
        if section.text:
            parts.append(f'<p class="note">{html.escape(section.text)}</p>')
        if section.table is not None:
            parts.append(section.table.to_html(index=False, border=0, escape=True))
    for number, report in enumerate(reports):
        label = f": {report.name}" if len(reports) > 1 else ""
        parts.append(f"<h1>Charts{html.escape(label)}</h1>")
        for key, figure in all_figures(report).items():
            height = figure.layout.height or 450
            parts.append(f'<div class="chart" data-figure="{key}">')
            parts.append(figure.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG,
                                        div_id=f"figure-{number}-{key}", default_height=f"{height}px"))
            parts.append("</div>")
        parts.append(f"<h2>Every result{html.escape(label)}</h2>")
        parts.append(f'<div class="trials" id="trials-{number}"></div>')
        parts.append(f'<script>hpoTable(document.getElementById("trials-{number}"), {script_json(trials_table(report.run))});</script>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(reports: list[RunReport], path: Path) -> Path:
    """Write :func:`render_html`'s page to ``path`` (its directory created if needed)."""
    page = render_html(reports)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot write the HTML page ({error.strerror or error})") from None
    return path


def _json_value(value: Any) -> Any:
    """A table cell as JSON: numbers and booleans as they are, missing or non-finite as None, the rest as text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return str(value)
