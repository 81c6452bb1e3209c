"""The service across real processes: nameserver, master and workers talking Pyro4 over TCP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hpbandster.core.result import logged_results_to_HBS_result

from tests.conftest import ROOT, SPACES, hpo_command

SYNTHETIC = str(SPACES / "synthetic.yaml")


def read_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    from hpo.network import free_port as pick

    return pick()


def start(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(hpo_command(*args), stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=str(ROOT),
                            stdin=subprocess.DEVNULL)


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


def test_bohb_run_across_processes_logs_every_job(tmp_path, run_hpo):
    """BOHB with a categorical and a conditional hyperparameter, 3 iterations, 2 worker processes."""
    results = tmp_path / "run"
    proc = run_hpo("run", SYNTHETIC, "--workers", "2", "--results", str(results), "--run-id", "bohb1",
                   "--iterations", "3", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = read_lines(results / "results.json")
    assert len(lines) == 20  # budgets 1, 3, 9, eta 3: iterations of 9+3+1, 3+1 and 3 jobs
    for config_id, budget, stamps, result, exception in lines:
        assert exception is None
        assert math.isfinite(result["loss"])
        assert {"submitted", "started", "finished"} <= set(stamps)
    configs = {tuple(c[0]): c[1] for c in read_lines(results / "configs.json")}
    assert {type(c["optimizer"]) for c in configs.values()} == {str}
    for config in configs.values():  # the conditional hyperparameter is present exactly when active
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
    # jobs ran in two different worker processes
    assert len({r[3]["info"]["worker"] for r in lines}) == 2
    # hpbandster's own loader reads the log
    loaded = logged_results_to_HBS_result(str(results))
    assert len(loaded.get_all_runs()) == 20
    assert loaded.get_incumbent_id() is not None
    meta = json.loads((results / "run.json").read_text())
    assert meta["optimizer"] == "bohb" and meta["eta"] == 3 and meta["max_budget"] == 9
    assert meta["status"] == "finished" and meta["started_at"] and meta["finished_at"]
    assert meta["space"]["job"] == "synthetic" and "hpbandster" in meta["versions"]
    assert {h["name"] for h in meta["hyperparameters"]} >= {"lr", "optimizer", "momentum"}
    # workers were shut down by the master and exited cleanly
    assert "exited with code" not in proc.stderr


@pytest.mark.parametrize("optimizer", ["hyperband", "randomsearch"])
def test_baseline_optimizers(optimizer, tmp_path, run_hpo):
    results = tmp_path / optimizer
    proc = run_hpo("run", SYNTHETIC, "--workers", "1", "--results", str(results), "--run-id", optimizer,
                   "--iterations", "1", "--optimizer", optimizer, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = read_lines(results / "results.json")
    assert lines and all(math.isfinite(r[3]["loss"]) for r in lines)
    assert json.loads((results / "run.json").read_text())["optimizer"] == optimizer


def test_failed_jobs_are_logged_with_null_loss_and_the_run_goes_on(tmp_path, run_hpo):
    space = tmp_path / "failing.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  fail_when: optimizer=adamw\n")
    results = tmp_path / "run"
    proc = run_hpo("run", str(space), "--workers", "2", "--results", str(results), "--run-id", "fail1",
                   "--iterations", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (results / "results.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    lines = read_lines(results / "results.json")
    failed = [r for r in lines if r[3]["loss"] is None]
    assert failed and all(r[3]["info"]["reason"] == "diverged" for r in failed)
    assert any(r[3]["loss"] is not None for r in lines)


def test_results_directory_holding_a_run_is_refused(tmp_path, run_hpo):
    results = tmp_path / "run"
    results.mkdir()
    (results / "results.json").write_text('[[0,0,0], 1.0, {}, {"loss": 1.0, "info": {}}, null]\n')
    proc = run_hpo("run", SYNTHETIC, "--results", str(results), "--run-id", "again")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr and "Traceback" not in proc.stderr
    assert (results / "results.json").read_text().count("\n") == 1  # nothing recorded was lost


def test_distributed_worker_before_nameserver_late_worker_and_min_workers(tmp_path):
    """A worker started before its nameserver waits for it; the master waits for --min-workers;
    a worker joining late gets jobs; both are shut down by the master at the end."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    results = tmp_path / "dist"
    early = start("worker", "--run-id", "dist", "--nameserver", address, "--connect-timeout", "60",
                  "--work-dir", str(tmp_path),
                  log=tmp_path / "early.log")
    time.sleep(3)
    nameserver = start("nameserver", "--host", "127.0.0.1", "--port", str(port), log=tmp_path / "ns.log")
    master = start("master", SYNTHETIC, "--run-id", "dist", "--nameserver", address, "--results", str(results),
                   "--min-workers", "2", "--iterations", "2", "--no-progress", "--ping-interval", "1",
                   log=tmp_path / "master.log")
    late = None
    try:
        time.sleep(6)
        assert master.poll() is None
        assert not (results / "results.json").exists() or not (results / "results.json").read_text()
        late = start("worker", "--run-id", "dist", "--nameserver", address, "--work-dir", str(tmp_path),
                     log=tmp_path / "late.log")
        assert master.wait(timeout=120) == 0, (tmp_path / "master.log").read_text()[-3000:]
        assert early.wait(timeout=30) == 0 and late.wait(timeout=30) == 0
        assert "waiting for the nameserver" in (tmp_path / "early.log").read_text()
        lines = read_lines(results / "results.json")
        assert len({r[3]["info"]["worker"] for r in lines}) == 2
    finally:
        stop(*(p for p in (early, late, master, nameserver) if p is not None))


def test_worker_without_nameserver_gives_up_with_a_clear_message(run_hpo):
    proc = run_hpo("worker", "--run-id", "x", "--nameserver", f"127.0.0.1:{free_port()}", "--connect-timeout", "3",
                   timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hpo: no nameserver at 127.0.0.1:") and "Traceback" not in proc.stderr


def test_ctrl_c_stops_every_process_and_keeps_the_log(tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 0.5\n")
    results = tmp_path / "run"
    run = subprocess.Popen(hpo_command("run", str(space), "--workers", "2", "--results", str(results),
                                       "--run-id", "int1", "--no-progress"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (results / "results.json").exists() or not (
                results / "results.json").read_text():
            time.sleep(0.5)
            assert time.time() < deadline, "no result within 60 s"
        children = children_of(run.pid)
        assert len(children) == 3  # nameserver and two workers
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err[-2000:]
    assert "interrupted" in err
    time.sleep(1)
    assert not [pid for pid in children if alive(pid)]
    assert read_lines(results / "results.json")  # what was recorded is kept
    assert json.loads((results / "run.json").read_text())["status"] == "interrupted"


def test_train_runs_one_config_and_prints_the_log_line(run_hpo):
    proc = run_hpo("train", SYNTHETIC, "--budget", "2", "--set", "lr=0.01", "--set", "optimizer=adamw", "--json",
                   timeout=60)
    assert proc.returncode == 0, proc.stderr
    config_id, budget, stamps, result, exception = json.loads(proc.stdout)
    assert budget == 2.0 and exception is None and math.isfinite(result["loss"])
    assert result["info"]["epochs"] == 2
    assert '"optimizer": "adamw"' in proc.stderr and '"lr": 0.01' in proc.stderr and "momentum" not in proc.stderr


def test_train_rejects_a_bad_override(run_hpo):
    proc = run_hpo("train", SYNTHETIC, "--set", "momentum=0.5", "--set", "optimizer=adamw", timeout=60)
    assert proc.returncode == 2 and "momentum: inactive" in proc.stderr and "Traceback" not in proc.stderr


def test_progress_lines_when_not_a_terminal(tmp_path, run_hpo):
    proc = run_hpo("run", SYNTHETIC, "--workers", "1", "--results", str(tmp_path / "p"), "--iterations", "1")
    assert proc.returncode == 0
    assert "iteration 1/1 | jobs 13/13 finished" in proc.stderr
    assert "best loss" in proc.stderr and "elapsed" in proc.stderr


def test_worker_stops_cleanly_on_sigterm_and_leaves_the_nameserver(tmp_path):
    import Pyro4

    port = free_port()
    nameserver = start("nameserver", "--host", "127.0.0.1", "--port", str(port), log=tmp_path / "ns.log")
    worker = start("worker", "--run-id", "term", "--nameserver", f"127.0.0.1:{port}", log=tmp_path / "w.log")
    try:
        registered = {}
        for _ in range(60):
            time.sleep(0.5)
            try:
                with Pyro4.locateNS(host="127.0.0.1", port=port) as ns:
                    registered = ns.list(prefix="hpbandster.run_term.worker.")
            except Pyro4.errors.PyroError:
                continue
            if registered:
                break
        assert registered, (tmp_path / "w.log").read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        with Pyro4.locateNS(host="127.0.0.1", port=port) as ns:
            assert ns.list(prefix="hpbandster.run_term.worker.") == {}
    finally:
        stop(worker, nameserver)


def test_a_worker_dying_mid_run_does_not_stop_the_run(tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 0.3\n")
    results = tmp_path / "run"
    run = subprocess.Popen(hpo_command("run", str(space), "--workers", "2", "--results", str(results),
                                       "--run-id", "die1", "--iterations", "2", "--no-progress",
                                       "--ping-interval", "1"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        deadline = time.time() + 60
        while not (results / "results.json").exists() or not (results / "results.json").read_text():
            time.sleep(0.3)
            assert time.time() < deadline, "no result within 60 s"
        workers = [pid for pid in children_of(run.pid)
                   if "worker" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        _, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err[-3000:]
    assert "worker-" in err and "exited with code -9" in err
    lines = read_lines(results / "results.json")
    assert len(lines) == 17  # every job of the 2 iterations got a result line
    finished = [r for r in lines if r[3] is not None]
    assert all(math.isfinite(r[3]["loss"]) for r in finished)


def test_children_die_with_a_killed_run(tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 1\n")
    run = subprocess.Popen(hpo_command("run", str(space), "--workers", "2", "--results", str(tmp_path / "run"),
                                       "--no-progress"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=str(ROOT))
    children = []
    deadline = time.time() + 60
    while len(children) < 3 and time.time() < deadline:
        time.sleep(0.3)
        children = children_of(run.pid)
    assert len(children) == 3
    run.kill()
    run.wait(timeout=10)
    deadline = time.time() + 20
    while any(alive(pid) for pid in children) and time.time() < deadline:
        time.sleep(0.3)
    assert not [pid for pid in children if alive(pid)]


def test_train_reports_a_failed_job_with_its_reason(tmp_path, run_hpo):
    space = tmp_path / "failing.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  fail_when: optimizer=adamw\n")
    proc = run_hpo("train", str(space), "--budget", "1", "--set", "optimizer=adamw", "--json", timeout=60)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)[3]["loss"] is None
    assert proc.stderr.strip().splitlines()[-1].startswith("hpo: job failed (diverged): ")


def test_sigterm_during_a_job_exits_cleanly(tmp_path):
    """docker compose stop sends SIGTERM while a job runs: the worker exits 0, not with a crash."""
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 2\n")
    port = free_port()
    address = f"127.0.0.1:{port}"
    nameserver = start("nameserver", "--host", "127.0.0.1", "--port", str(port), log=tmp_path / "ns.log")
    worker = start("worker", "--run-id", "busy", "--nameserver", address, "--work-dir", str(tmp_path),
                   log=tmp_path / "w.log")
    master = start("master", str(space), "--run-id", "busy", "--nameserver", address, "--results",
                   str(tmp_path / "run"), "--no-progress", "--ping-interval", "1", log=tmp_path / "m.log")
    try:
        deadline = time.time() + 60
        while "at budget" not in (tmp_path / "w.log").read_text():
            time.sleep(0.3)
            assert time.time() < deadline, (tmp_path / "w.log").read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert "abandoning the job still running" in (tmp_path / "w.log").read_text()
    finally:
        stop(worker, master, nameserver)
