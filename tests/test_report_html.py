"""hpo-report --html: one offline file holding the dashboard's plotly figures and every result."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from hpo.report.cli import main
from hpo.report.figures import FIGURES
from report_logs import write_standard_run


class _Tags(HTMLParser):
    """Real tags only: script bodies (plotly.js and its URLs in strings) are not parsed as markup."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[tuple[str, str, str]] = []
        self.scripts = 0
        self.figure_divs: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href", "data"):
            if values.get(name) is not None:
                self.sources.append((tag, name, values[name]))
        if tag == "div" and "plotly-graph-div" in (values.get("class") or ""):
            self.figure_divs.append(values.get("id"))


def test_html_report_is_one_offline_file_with_the_figures_and_every_result(tmp_path, capsys):
    run_dir = write_standard_run(tmp_path / "run1")
    page = tmp_path / "out" / "report.html"
    assert main([str(run_dir), "--html", str(page)]) == 0
    assert f"hpo-report: wrote {page} " in capsys.readouterr().err  # the user is told where it went
    text = page.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    assert tags.sources == []  # no <script src>, <link href>, <img src>: nothing is fetched
    keys = [key for key, _, _ in FIGURES]
    assert tags.figure_divs == [f"figure-0-{key}" for key in keys]
    assert text.count("Plotly.newPlot(") >= len(keys)
    assert len(text) > 3_000_000  # plotly.js itself is inlined
    assert "<th>optimizer</th>" in text  # the report's tables are still there
    data = json.loads(re.search(r'hpoTable\(document.getElementById\("trials-0"\), (.*?)\);</script>', text).group(1))
    assert len(data["rows"]) == 11 and {"config_id", "budget", "status", "loss", "lr"} <= set(data["columns"])
    statuses = {row[data["columns"].index("status")] for row in data["rows"]}
    assert statuses == {"ok", "diverged", "crashed"}


def test_html_report_of_two_runs_draws_each_runs_figures(tmp_path, capsys):
    first = write_standard_run(tmp_path / "a", run_id="vgg16")
    second = write_standard_run(tmp_path / "b", run_id="resnet50")
    page = tmp_path / "report.html"
    assert main([str(first), str(second), "--html", str(page)]) == 0
    tags = _Tags()
    tags.feed(page.read_text(encoding="utf-8"))
    assert len(tags.figure_divs) == 2 * len(FIGURES) and tags.sources == []
    assert "figure-1-parallel" in tags.figure_divs


def test_html_report_that_cannot_be_written_is_exit_code_2(tmp_path, capsys):
    run_dir = write_standard_run(tmp_path / "run1")
    (tmp_path / "file").write_text("")
    assert main([str(run_dir), "--html", str(tmp_path / "file" / "report.html")]) == 2
    assert "cannot write the HTML page" in capsys.readouterr().err
