"""hpo.report.status: finished, failed, interrupted, running or stopped without a status."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from hpo.report.loading import read_run
from hpo.report.status import FINISHED, INTERRUPTED, RUNNING, STOPPED, UNKNOWN, run_status
from hpo.results import utc_now
from report_logs import LogWriter, metadata, write_standard_run


def _running(tmp_path, **changes):
    meta = {**metadata(finished=False), "status": "running", **changes}
    log = LogWriter(tmp_path / "run", meta)
    cid = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    log.ok(cid, 1, 0.5)
    log.config(optimizer="sgd", lr=0.02, momentum=0.9, batch_size=32)  # sampled, no result yet
    return read_run(tmp_path / "run")


def test_a_finished_run_is_finished(tmp_path):
    run = read_run(write_standard_run(tmp_path / "run1"))
    meta = {**run.metadata, "status": "finished"}
    run.metadata = meta
    status = run_status(run)
    assert status.state == FINISHED and status.text == "run finished" and status.unfinished == []


def test_an_interrupted_run_says_so(tmp_path):
    run = _running(tmp_path, status="interrupted", finished_at="2023-11-15T00:13:20+00:00")
    status = run_status(run)
    assert status.state == INTERRUPTED and "finished" not in status.text
    assert status.unfinished == ["(0, 0, 1)"]


def test_a_dead_master_on_this_host_is_stopped_without_a_status(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    start = {"at": utc_now(), "master_host": socket.gethostname(), "pid": dead.pid}
    run = _running(tmp_path, starts=[start], heartbeat_at=utc_now())
    status = run_status(run)
    assert status.state == STOPPED, status.text
    assert f"pid {dead.pid}" in status.detail


def test_a_live_master_on_this_host_is_running(tmp_path):
    start = {"at": utc_now(), "master_host": socket.gethostname(), "pid": os.getpid()}
    assert run_status(_running(tmp_path, starts=[start])).state == RUNNING


def test_a_stale_heartbeat_from_another_host_is_stopped(tmp_path):
    start = {"at": "2027-01-15T08:00:00+00:00", "master_host": "elsewhere", "pid": 1}
    run = _running(tmp_path, starts=[start], heartbeat_at="2027-01-15T08:00:00+00:00")
    fresh = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert run_status(run, now=fresh + 30, hostname="here").state == RUNNING
    late = run_status(run, now=fresh + 3600, hostname="here")
    assert late.state == STOPPED and "no heartbeat" in late.detail and "elsewhere" in late.detail


def test_lost_attempts_are_read(tmp_path):
    run = _running(tmp_path, status="interrupted", finished_at="2023-11-15T00:13:20+00:00")
    with open(tmp_path / "run" / "attempts.json", "w") as handle:
        handle.write(json.dumps([[0, 0, 0], 1, {"attempt": 1, "worker": "w1", "reason": "worker died",
                                                 "started": 1.0, "lost": 2.0}]) + "\n")
        handle.write('[[0, 0, 1], 1, {"attem')  # torn last line
    lost = run_status(run).lost_attempts
    assert lost[["config_id", "worker", "reason"]].values.tolist() == [["(0, 0, 0)", "w1", "worker died"]]


def test_hpbandster_logs_have_an_unknown_status(tmp_path):
    log = LogWriter(tmp_path / "run")
    log.ok(log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32), 1, 0.5)
    assert run_status(read_run(tmp_path / "run")).state == UNKNOWN


def test_the_report_of_an_interrupted_run_says_so_and_lists_its_lost_jobs(tmp_path, capsys):
    from hpo.report.cli import main

    _running(tmp_path, status="interrupted", finished_at="2023-11-15T00:13:20+00:00")
    with open(tmp_path / "run" / "attempts.json", "w") as handle:
        handle.write(json.dumps([[0, 0, 0], 1, {"attempt": 1, "worker": "w1@gpu3", "reason": "worker died"}]) + "\n")
    assert main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "finished" not in out
    assert out.splitlines()[2].startswith("run interrupted (")
    lost = out[out.index("Lost and retried jobs"):out.index("Compute")]
    assert "1 attempt(s) lost with their worker" in lost and "w1@gpu3" in lost and "worker died" in lost
    assert "1 configuration(s) sampled without any result" in lost and "(0, 0, 1)" in lost
    assert out.rstrip().endswith("(run interrupted)")


def test_the_compute_section_of_a_log_without_run_json(tmp_path, capsys):
    from hpo.report.cli import main

    log = LogWriter(tmp_path / "run")
    log.ok(log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32), 3, 0.5)
    assert main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    compute = out[out.index("Compute"):].splitlines()[2]
    assert compute.startswith("1 results of 1 configurations (0 failed); 3 epochs trained, budget used 3;")
    assert "wall time 3m 1s" in compute and "(run" not in compute


def test_json_report_holds_the_status(tmp_path, capsys):
    from hpo.report.cli import main

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    _running(tmp_path, starts=[{"at": utc_now(), "master_host": socket.gethostname(), "pid": dead.pid}])
    assert main([str(tmp_path / "run"), "--format", "json"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["status"]["state"] == "stopped without a status" and run["status"]["unfinished"] == ["(0, 0, 1)"]
    assert run["compute"]["status"] == "stopped without a status"


@pytest.mark.slow
def test_a_killed_master_is_reported_stopped_without_a_status(tmp_path, capsys):
    """A real run whose master is SIGKILLed mid-run: run.json still says running, the report does not."""
    import signal
    import time

    from hpo.report.cli import main
    from tests.conftest import ROOT, SPACES, hpo_command

    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 0.5\n")
    results = tmp_path / "run"
    run = subprocess.Popen(hpo_command("run", str(space), "--workers", "1", "--results", str(results),
                                       "--run-id", "kill1", "--no-progress", "--insecure"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(ROOT))
    try:
        deadline = time.time() + 90
        while not ((results / "results.json").exists() and (results / "results.json").read_text()):
            assert time.time() < deadline and run.poll() is None, "no result within 90 s"
            time.sleep(0.3)
        assert "heartbeat_at" in json.loads((results / "run.json").read_text())
        assert run_status(read_run(results)).state == RUNNING
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=30)
    assert json.loads((results / "run.json").read_text())["status"] == "running"
    assert main([str(results)]) == 0
    out = capsys.readouterr().out
    assert f"run stopped without a status (its master (pid {run.pid} on {socket.gethostname()}) is gone" in out
    assert "(run finished)" not in out


def test_an_unreadable_run_json_is_named_as_such_not_as_missing(tmp_path):
    from hpo.report.formatting import run_description
    from hpo.report.tables import build_report

    write_standard_run(tmp_path / "run")
    (tmp_path / "run" / "run.json").write_text("not json")
    report = build_report(read_run(tmp_path / "run"))
    status = run_status(report.run)
    assert status.state == UNKNOWN and status.detail.startswith("run.json: unreadable (Expecting value")
    assert "run.json: unreadable (Expecting value" in run_description(report)
    assert "no run.json" not in run_description(report) + status.detail
