"""The plotly figures, the ``hpo dashboard`` server (a real process on loopback) and its page in a real browser."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, hpo_command
from hpo.report.figures import FIGURES, all_figures, learning_curves, loss_vs_budget, loss_vs_hyperparameters
from hpo.report.parallel_coordinates import parallel_coordinates
from hpo.report.loading import read_run
from hpo.report.tables import build_report
from report_logs import LogWriter, metadata, write_standard_run

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
KEYS = [key for key, _, _ in FIGURES]


def _report(directory: Path):
    return build_report(read_run(directory))


def _axis_top(figure, name: str = "yaxis") -> float:
    axis = figure.layout[name]
    top = axis.range[1]
    return 10 ** top if axis.type == "log" else top


def _symbols(figure) -> set[str]:
    found = set()
    for trace in figure.data:
        symbol = getattr(trace.marker, "symbol", None) if hasattr(trace, "marker") else None
        if isinstance(symbol, str):
            found.add(symbol)
        elif symbol is not None:
            found.update(symbol)
    return found


def _diverged_run(directory: Path) -> Path:
    """Six ordinary losses (0.5 to 1.0) and one job that diverged to 5,500 (history included)."""
    log = LogWriter(directory, metadata("diverged"))
    for index in range(6):
        config = log.config(optimizer="sgd", lr=0.01 * (index + 1), momentum=0.9, batch_size=32)
        log.ok(config, 3, 0.5 + 0.1 * index)
    config = log.config(optimizer="adamw", lr=0.09, batch_size=64)
    log.ok(config, 3, 5500.0)
    failed = log.config(optimizer="sgd", lr=0.1, momentum=0.5, batch_size=16)
    log.failed(failed, 3, "diverged", "loss is nan at epoch 2")
    return directory


# --- figures -------------------------------------------------------------------------------------


def test_every_figure_of_a_run_shows_its_data(tmp_path):
    report = _report(write_standard_run(tmp_path / "run1"))
    figures = all_figures(report)
    assert list(figures) == KEYS
    space = loss_vs_hyperparameters(report)
    assert [a.text for a in space.layout.annotations] == ["optimizer", "lr", "momentum", "batch_size"]
    assert space.layout.xaxis.ticktext == ("sgd", "adamw") and space.layout.xaxis2.type == "log"
    assert {t.name for t in space.data} >= {"budget 1", "budget 3", "budget 9", "failed / crashed"}
    parallel = parallel_coordinates(report).data[0]
    dimensions = {d.label: d for d in parallel.dimensions}
    assert list(dimensions) == ["optimizer", "lr (log)", "momentum", "batch_size (log)", "budget", "loss (val loss)"]
    assert dimensions["optimizer"].ticktext == ("sgd", "adamw")  # the space's order
    assert "inactive" in dimensions["momentum"].ticktext  # adamw has no momentum
    assert dimensions["loss (val loss)"].ticktext[-1] == "failed"
    assert len(dimensions["budget"].values) == 11
    curves = learning_curves(report)
    assert {t.name for t in curves.data} == {"(0, 0, 0)", "(0, 0, 2)", "(0, 0, 3)"} and len(curves.data[0].x) == 9
    heatmap = figures["rank_correlation"].data[0]
    assert heatmap.type == "heatmap" and list(heatmap.x) == ["1", "3", "9"] and heatmap.z[0][0] == 1.0
    bars = figures["failures"].data
    assert {bar.name for bar in bars} == {"diverged", "crashed"}
    incumbent = figures["incumbent_time"].data[0]
    assert incumbent.line.shape == "hv" and min(incumbent.y) == pytest.approx(0.30)
    assert "[minutes]" in figures["incumbent_time"].layout.xaxis.title.text
    assert figures["incumbent_epochs"].layout.xaxis.title.text == "epochs trained (all jobs)"
    for figure in figures.values():
        json.loads(figure.to_json())


def test_a_diverged_job_does_not_flatten_the_loss_axes(tmp_path):
    report = _report(_diverged_run(tmp_path / "run"))
    for figure in (loss_vs_budget(report), loss_vs_hyperparameters(report)):
        assert _axis_top(figure) < 5  # not 5,500: the ordinary losses keep the axis
        assert {"triangle-up", "x"} <= _symbols(figure)  # the outlier at the edge, the failed job apart
    curves = learning_curves(report)
    assert _axis_top(curves) < 5 and "triangle-up" in _symbols(curves)
    loss = parallel_coordinates(report).data[0].dimensions[-1]
    assert max(loss.values) <= loss.range[1] and loss.ticktext[-1] == "failed"
    assert max(float(t) for t in loss.ticktext[:-1]) < 5


def test_parallel_coordinates_mark_failed_jobs_only_when_there_are_some(tmp_path):
    log = LogWriter(tmp_path / "clean", metadata("clean"))
    for index in range(4):
        log.ok(log.config(optimizer="sgd", lr=0.01 * (index + 1), momentum=0.9, batch_size=32), 3, 0.5 + 0.1 * index)
    figure = parallel_coordinates(_report(tmp_path / "clean"))
    loss = figure.data[0].dimensions[-1]
    assert "failed" not in loss.ticktext and "failed" not in figure.layout.title.text
    assert max(loss.values) <= loss.range[1] == figure.data[0].line.cmax
    log.failed(log.config(optimizer="adamw", lr=0.1, batch_size=16), 3, "diverged", "loss is nan at epoch 2")
    loss = parallel_coordinates(_report(tmp_path / "clean")).data[0].dimensions[-1]
    assert loss.ticktext[-1] == "failed" and max(loss.values) == loss.tickvals[-1] == loss.range[1]


def test_figures_of_runs_with_little_in_them(tmp_path):
    only_failures = LogWriter(tmp_path / "failures")  # no run.json: hyperparameters inferred
    config = only_failures.config(optimizer="sgd", lr=0.1)
    only_failures.failed(config, 1, "oom", "CUDA out of memory")
    only_failures.crashed(config, 3, "RuntimeError: boom")
    figures = all_figures(_report(tmp_path / "failures"))
    assert figures["incumbent_time"].layout.annotations[0].text == "no successful result yet"
    assert figures["learning_curves"].layout.annotations[0].text == "no per-epoch history in the log"
    assert {bar.name for bar in figures["failures"].data} == {"failed", "crashed"}
    assert "x" in _symbols(figures["loss_vs_budget"])

    hpbandster = tmp_path / "hpbandster"  # hpbandster's own logger: no run.json, info without history
    hpbandster.mkdir()
    (hpbandster / "configs.json").write_text("".join(
        json.dumps([[0, 0, i], {"x": i / 10, "kind": "ab"[i % 2]}, {"model_based_pick": False}]) + "\n" for i in range(4)))
    (hpbandster / "results.json").write_text("".join(
        json.dumps([[0, 0, i], 1.0, {"submitted": 10.0 * i, "started": 10.0 * i + 1, "finished": 10.0 * i + 5},
                    {"loss": 1.0 - i / 10, "info": {}}, None]) + "\n" for i in range(4)))
    figures = all_figures(_report(hpbandster))
    assert figures["rank_correlation"].layout.annotations[0].text == "needs results on at least two budgets"
    assert figures["incumbent_epochs"].layout.xaxis.title.text == "budget used (all jobs)"
    assert {d.label for d in figures["parallel"].data[0].dimensions} == {"x", "kind", "budget", "loss"}
    assert all(json.loads(f.to_json()) for f in figures.values())

    placeholders = all_figures(None)  # a run whose log is still empty
    assert list(placeholders) == KEYS and all(f.layout.annotations[0].text == "no results yet" for f in placeholders.values())


# --- the server, a real process ------------------------------------------------------------------


class Dashboard:
    """``hpo dashboard ROOT --port 0`` as a process; ``url`` from its first line."""

    def __init__(self, root: Path) -> None:
        self.process = subprocess.Popen(hpo_command("dashboard", str(root), "--port", "0"), cwd=str(ROOT),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and not line:
            ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
            if ready:
                line = self.process.stdout.readline()
            elif self.process.poll() is not None:
                break
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise AssertionError(f"no URL from hpo dashboard: {line!r} {self.process.stderr.read()!r}")
        self.url = line.split(" at ", 1)[1].split()[0]

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:200])
        return json.loads(body)

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        return self.process.returncode, self.process.stderr.read()


def _append_result(directory: Path, config_id: list, loss: float, budget: float = 9) -> None:
    """What a master writes when a new result arrives: its configuration line, then its result line."""
    config = {"model": "resnet18", "optimizer": "adamw", "lr": 0.003, "batch_size": 32}
    with open(directory / "configs.json", "a") as handle:
        handle.write(json.dumps([config_id, config, {"model_based_pick": True}]) + "\n")
    now = time.time()
    info = {"status": "ok", "epochs": budget, "val_loss": loss, "val_accuracy": 0.9, "loss_metric": "val_loss",
            "history": [{"epoch": e, "val_loss": loss + 0.1 / e} for e in range(1, int(budget) + 1)]}
    with open(directory / "results.json", "a") as handle:
        handle.write(json.dumps([config_id, budget, {"submitted": now - 5, "started": now - 4, "finished": now},
                                 {"loss": loss, "info": info}, None]) + "\n")


def _results_root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_standard_run(root / "run1")
    write_standard_run(root / "group" / "run2", run_id="run2")
    (root / "run1" / "checkpoints" / "x").mkdir(parents=True)
    (root / "run1" / "checkpoints" / "x" / "results.json").write_text("")  # inside a run: not a run
    (root / "starting").mkdir()
    (root / "starting" / "results.json").write_text("")
    (root / "starting" / "run.json").write_text(json.dumps({**metadata("starting", finished=False), "status": "running"}))
    return root


def test_runs_are_found_nested_and_read_again_only_when_their_files_change(tmp_path):
    from hpo.dashboard.runs import RunCatalog

    root = _results_root(tmp_path)
    catalog = RunCatalog(root)
    assert catalog.run_ids() == ["group/run2", "run1", "starting"]  # not run1/checkpoints/x
    first = catalog.view("run1")
    payload = catalog.payload("run1")
    assert catalog.view("run1") is first and catalog.payload("run1") is payload  # unchanged: nothing parsed
    _append_result(root / "run1", [1, 0, 0], 0.25)
    second = catalog.view("run1")
    assert second is not first and second.version != first.version and len(second.report.run.results) == 12
    assert catalog.view("../run1") is None and catalog.view(str(root / "run1")) is None  # only discovered runs


def test_a_run_without_results_whose_master_is_gone_is_not_shown_running(tmp_path):
    from hpo.dashboard.runs import RunCatalog

    root = _results_root(tmp_path)
    dead = root / "dead"
    dead.mkdir()
    (dead / "results.json").write_text("")
    (dead / "run.json").write_text(json.dumps({
        **metadata("dead", finished=False), "status": "running", "heartbeat_at": "2023-11-14T22:14:20+00:00",
        "starts": [{"at": "2023-11-14T22:13:20+00:00", "kind": "start", "master_host": "elsewhere", "pid": 1234}]}))
    summaries = {line["id"]: line for line in RunCatalog(root).summaries()}
    assert summaries["dead"]["status"] == "stopped without a status"
    assert "no heartbeat" in summaries["dead"]["detail"] and "no results yet" in summaries["dead"]["detail"]
    assert summaries["starting"]["status"] == "running"  # no master recorded: nothing says it is gone


def test_an_unreadable_run_json_is_named_as_hpo_report_names_it(tmp_path):
    from hpo.dashboard.runs import RunCatalog

    root = tmp_path / "results"
    (write_standard_run(root / "with_results") / "run.json").write_text("not json")
    empty = root / "empty"
    empty.mkdir()
    (empty / "results.json").write_text("")
    (empty / "run.json").write_text("not json")
    (write_standard_run(root / "a_list") / "run.json").write_text("[1, 2]")
    summaries = {line["id"]: line for line in RunCatalog(root).summaries()}
    unreadable = "run.json: unreadable (Expecting value: line 1 column 1 (char 0))"
    assert summaries["with_results"]["status"] == "unknown" and summaries["with_results"]["detail"] == unreadable
    assert summaries["empty"]["detail"] == f"{unreadable}; no results yet"
    assert summaries["a_list"]["detail"] == "run.json: not a JSON object, ignored"
    assert summaries["with_results"]["results"] == 11
    run = read_run(root / "with_results")  # hpo-report's own words
    assert run.warnings[0].endswith(f"with_results/{unreadable}, search space inferred from the configurations")


def test_dashboard_endpoints_serve_runs_figures_and_every_result(tmp_path):
    root = _results_root(tmp_path)
    dashboard = Dashboard(root)
    try:
        runs = {run["id"]: run for run in dashboard.json("api/runs")["runs"]}
        assert set(runs) == {"run1", "group/run2", "starting"}
        assert runs["run1"]["status"] == "finished" and runs["run1"]["results"] == 11 and runs["run1"]["best_loss"] == 0.3
        assert runs["starting"]["results"] == 0 and runs["starting"]["detail"] == "no results yet"
        run = dashboard.json("api/run?id=run1")
        assert [item["key"] for item in run["figures"]] == KEYS
        assert all(item["figure"]["data"] is not None and "layout" in item["figure"] for item in run["figures"])
        # plotly's template (6.5 KB) is in the page once, not in every figure of every answer
        assert run["template"] == "plotly_white" and not [item for item in run["figures"] if "template" in item["figure"]["layout"]]
        assert len(dashboard.get("api/run?id=run1")[1]) < 30_000 and len(dashboard.get("api/run?id=starting")[1]) < 6_000
        assert len(run["table"]["rows"]) == 11 and "lr" in run["table"]["columns"]
        assert dashboard.json(f"api/run?id=run1&version={run['version']}") == {"id": "run1", "version": run["version"], "unchanged": True}
        _append_result(root / "run1", [1, 0, 0], 0.25)
        again = dashboard.json(f"api/run?id=run1&version={run['version']}")
        assert again["version"] != run["version"] and len(again["table"]["rows"]) == 12
        assert dashboard.json("api/run?id=starting")["error"] == "no results yet"
        assert dashboard.get("api/run?id=../../etc")[0] == 404 and dashboard.get("nothing")[0] == 404
        status, body = dashboard.get("api/run")  # no id: says what to ask
        assert status == 400 and "api/run?id=RUN" in json.loads(body)["error"]
        status, page = dashboard.get("")
        assert status == 200 and b'<script src="plotly.min.js"></script>' in page and b"http" not in page.split(b"<body>")[0]
        status, script = dashboard.get("plotly.min.js")
        assert status == 200 and len(script) > 3_000_000
    finally:
        code, stderr = dashboard.stop()
    assert code == 0 and "Traceback" not in stderr and "Interrupt" not in stderr  # Ctrl-C: exit 0, quietly


def test_dashboard_refuses_a_missing_root_and_a_port_in_use(tmp_path, run_hpo):
    missing = run_hpo("dashboard", str(tmp_path / "nowhere"), timeout=60)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nowhere: no such directory" in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_hpo("dashboard", str(tmp_path), "--port", str(port), timeout=60)
    assert busy.returncode == 2 and busy.stderr.count("\n") == 1 and f"port {port} on 127.0.0.1 is in use" in busy.stderr
    help_text = run_hpo("dashboard", "--help", timeout=60).stdout
    assert "default: 127.0.0.1" in help_text and "default: 8050" in help_text and "hpo dashboard results" in help_text


# --- the page in a real browser ------------------------------------------------------------------


def _browser(*extra_arguments: str):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1400,1000", *extra_arguments):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


@pytest.mark.slow
def test_the_page_renders_every_chart_and_shows_a_new_result_without_a_reload(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root = _results_root(tmp_path)
    driver = None
    dashboard = Dashboard(root)
    try:
        driver = _browser()
        driver.get(dashboard.url + "#run=run1")

        def rows(d) -> list:
            return d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")

        def rendered(d) -> bool:
            return all(d.find_elements(By.CSS_SELECTOR, f"#chart-{key}.js-plotly-plot .main-svg") for key in KEYS)

        WebDriverWait(driver, 60).until(lambda d: rendered(d) and len(rows(d)) == 11)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run]")) == 3
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-parallel .parcoords")  # drawn by plotly, not a placeholder
        assert driver.execute_script("return typeof Plotly") == "object"
        backgrounds = "return %s.map(function (k) { return document.getElementById('chart-' + k)._fullLayout.template.layout.plot_bgcolor; })"
        assert driver.execute_script(backgrounds % json.dumps(KEYS)) == ["white"] * len(KEYS)  # the template put back

        driver.execute_script("window.notReloaded = true;")
        _append_result(root / "run1", [1, 0, 0], 0.25)
        WebDriverWait(driver, 20).until(lambda d: len(rows(d)) == 12)
        assert driver.find_elements(By.CSS_SELECTOR, '#trials tbody tr[data-config="(1, 0, 0)"]')
        assert driver.execute_script("return window.notReloaded === true")  # the same page, updated in place
        assert driver.find_element(By.CSS_SELECTOR, "#runs tr.selected").text.split()[2] == "12"
        assert driver.execute_script(backgrounds % json.dumps(KEYS)) == ["white"] * len(KEYS)  # redrawn, still the same look

        loss_header = next(th for th in driver.find_elements(By.CSS_SELECTOR, "#trials th") if th.text.startswith("loss"))
        loss_header.click()  # sort by loss, best first
        first = driver.find_element(By.CSS_SELECTOR, "#trials tbody tr")
        assert first.get_attribute("data-config") == "(1, 0, 0)"
        driver.find_element(By.CSS_SELECTOR, "#trials input").send_keys("crashed")
        WebDriverWait(driver, 10).until(lambda d: len(rows(d)) == 1)
        assert "1 of 12 results" in driver.find_element(By.CSS_SELECTOR, "#trials .count").text
        assert not [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    finally:
        if driver is not None:
            driver.quit()
        code, stderr = dashboard.stop()
    assert code == 0, stderr


@pytest.mark.slow
def test_the_static_html_report_renders_offline_in_a_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from hpo.report.cli import main

    page = tmp_path / "report.html"
    assert main([str(write_standard_run(tmp_path / "run1")), "--html", str(page), "--quiet"]) == 0
    driver = _browser("--host-resolver-rules=MAP * ~NOTFOUND")  # no host name resolves: nothing to fetch
    try:
        driver.get(page.as_uri())
        WebDriverWait(driver, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart .js-plotly-plot .main-svg")) >= len(KEYS))
        drawn = {div.get_attribute("id") for div in driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")}
        assert drawn == {f"figure-0-{key}" for key in KEYS}
        assert len(driver.find_elements(By.CSS_SELECTOR, "#trials-0 tbody tr")) == 11
        driver.find_element(By.CSS_SELECTOR, "#trials-0 input").send_keys("adamw 9")
        WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#trials-0 tbody tr")) == 1)
    finally:
        driver.quit()
