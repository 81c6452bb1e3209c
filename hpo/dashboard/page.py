"""The dashboard's single page: a run list, the selected run's charts and its table of every result.

It polls the JSON endpoints every :data:`POLL_MS` milliseconds and redraws with ``Plotly.react``
only what changed (the server answers ``{"unchanged": true}`` while a run's files stay the same),
so new results appear without a reload. plotly.js comes from the server (the plotly package's
bundled copy); nothing is fetched from the network. The figures' plotly template is in the page,
once: ``/api/run`` leaves it out of every figure and the page puts it back before drawing.
"""

from __future__ import annotations

import html
import json

from hpo.report.figure_parts import PLOT_CONFIG, template_json
from hpo.report.html import TABLE_SCRIPT, TABLE_STYLE, script_json

POLL_MS = 2000

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
header { padding: 0.6em 1.2em; background: #263238; color: #fff; display: flex; gap: 2em; align-items: baseline; }
header h1 { font-size: 1.2em; margin: 0; }
header .state { font-size: 0.85em; color: #b0bec5; }
main { padding: 0.5em 1.2em 3em; max-width: 1500px; }
table { font-size: 0.88em; }
th, td { padding: 0.2em 0.6em; }
#runs tbody tr { cursor: pointer; }
#runs tbody tr.selected { background: #e3f2fd; }
#runs td.status-running { color: #1565c0; } #runs td.status-failed { color: #c62828; }
#runs td.status-interrupted, #runs td.status-stopped-without-a-status { color: #ef6c00; }
.detail { color: #555; font-size: 0.9em; }
.warning { color: #a15c00; font-size: 0.85em; }
#charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(620px, 1fr)); gap: 0.5em 1em; }
#charts .chart.wide { grid-column: 1 / -1; }
.trials .scroll { max-height: 36em; }
.trials input { width: 24em; margin: 0.5em 1em 0.5em 0; }
"""

SCRIPT = r"""
var POLL_MS = %(poll)d, selected = decodeURIComponent(location.hash.replace(/^#run=/, "")) || null;
var shownId = null, shownVersion = null, busy = false, again = false, timer = null;
var PLOT_CONFIG = %(plot_config)s;
var PLOT_TEMPLATE = %(plot_template)s;  // every figure's layout.template, left out of /api/run
function esc(value) { return hpoEscape(hpoCell(value)); }  // the table's own cell text ("-" when missing), escaped
function drawRuns(runs) {
  var body = runs.map(function (run) {
    return '<tr data-run="' + esc(run.id) + '"' + (run.id === selected ? ' class="selected"' : "") + ">" +
      "<td style=\"text-align:left\">" + esc(run.id) + "</td>" +
      '<td class="status-' + esc(run.status).replace(/ /g, "-") + '" title="' + esc(run.detail) + '">' + esc(run.status) + "</td>" +
      "<td>" + run.results + "</td><td>" + run.configs + "</td><td>" + run.failed + "</td>" +
      "<td>" + esc(run.best_loss) + "</td><td>" + esc(run.budget) + "</td></tr>";
  }).join("");
  document.querySelector("#runs tbody").innerHTML = body || '<tr><td colspan="7">no run under this directory yet</td></tr>';
  document.querySelectorAll("#runs tbody tr[data-run]").forEach(function (row) {
    row.addEventListener("click", function () { select(row.getAttribute("data-run")); });
  });
  var current = runs.filter(function (run) { return run.id === selected; })[0];
  document.getElementById("run-status").textContent = current ?
    current.status + (current.detail ? " (" + current.detail + ")" : "") : "";
}
function select(id) {
  selected = id; location.hash = "run=" + encodeURIComponent(id);
  refresh();
}
function drawRun(run) {
  document.getElementById("run-title").textContent = "Run " + run.name;
  document.getElementById("run-error").textContent = run.error || "";
  document.getElementById("run-warnings").innerHTML = run.warnings.map(function (w) { return "<div>" + esc(w) + "</div>"; }).join("");
  var charts = document.getElementById("charts");
  if (shownId !== run.id) { charts.querySelectorAll(".js-plotly-plot").forEach(function (d) { Plotly.purge(d); }); charts.innerHTML = ""; }
  run.figures.forEach(function (item) {
    var box = document.getElementById("chart-" + item.key);
    if (!box) {
      box = document.createElement("div");
      box.id = "chart-" + item.key; box.className = "chart" + (item.key === "hyperparameters" || item.key === "parallel" ? " wide" : "");
      box.setAttribute("data-title", item.title);
      charts.appendChild(box);
    }
    var layout = item.figure.layout || {};
    if (!layout.template) layout.template = PLOT_TEMPLATE;
    box.style.height = (layout.height || 430) + "px";
    Plotly.react(box, item.figure.data || [], layout, PLOT_CONFIG);
  });
  hpoTable(document.getElementById("trials"), run.table);
  shownId = run.id; shownVersion = run.version;
}
function fetchJson(url) {
  return fetch(url, {cache: "no-store"}).then(function (response) {
    if (response.ok) return response.json();
    return response.json().catch(function () { return {}; }).then(function (body) {
      throw new Error(body.error || url + ": HTTP " + response.status);
    });
  });
}
function refresh() {
  if (busy) { again = true; return; }
  busy = true; clearTimeout(timer);
  fetchJson("api/runs").then(function (list) {
    var ids = list.runs.map(function (run) { return run.id; });
    if (ids.indexOf(selected) < 0) selected = ids.length ? ids[0] : null;
    drawRuns(list.runs);
    if (!selected) return null;
    var version = shownId === selected ? shownVersion : "";
    return fetchJson("api/run?id=" + encodeURIComponent(selected) + "&version=" + encodeURIComponent(version || ""));
  }).then(function (run) {
    if (run && !run.unchanged) drawRun(run);
    document.getElementById("state").textContent = "updated " + new Date().toLocaleTimeString();
  }).catch(function (error) {
    document.getElementById("state").textContent = "not updated: " + error.message;
  }).then(function () {
    busy = false;
    if (again) { again = false; refresh(); } else { timer = setTimeout(refresh, POLL_MS); }
  });
}
window.addEventListener("hashchange", function () {
  var id = decodeURIComponent(location.hash.replace(/^#run=/, ""));
  if (id && id !== selected) { selected = id; refresh(); }
});
refresh();
"""


def render_page(root: str) -> str:
    """The dashboard page for the results root ``root`` (shown in its header)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hpo dashboard: {html.escape(root)}</title>
<link rel="icon" href="data:,">
<style>{TABLE_STYLE}{STYLE}</style>
<script src="plotly.min.js"></script>
<script>{TABLE_SCRIPT}</script>
</head><body>
<header><h1>hpo dashboard</h1><span>{html.escape(root)}</span><span class="state" id="state">loading...</span></header>
<main>
<h2>Runs</h2>
<table id="runs"><thead><tr><th style="text-align:left">run</th><th>status</th><th>results</th><th>configs</th>
<th>failed</th><th>best loss</th><th>at budget</th></tr></thead><tbody></tbody></table>
<h2 id="run-title"></h2>
<div class="detail" id="run-status"></div>
<div class="warning" id="run-error"></div>
<div class="warning" id="run-warnings"></div>
<div id="charts"></div>
<h2>Every result</h2>
<div class="trials" id="trials"></div>
</main>
<script>{SCRIPT % {"poll": POLL_MS, "plot_config": json.dumps(PLOT_CONFIG), "plot_template": script_json(template_json())}}</script>
</body></html>
"""
