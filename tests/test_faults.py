"""A run survives what breaks, with real processes on loopback: workers killed or frozen at several
moments, the nameserver killed (and restarted), the master killed and resumed, signals.

Every wait is bounded; every process is stopped at the end."""

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
from tests.test_service import free_port, read_lines, start, stop


def slow_space(tmp_path: Path, seconds: float, extra: str = "") -> Path:
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + f"  seconds_per_epoch: {seconds}\n" + extra)
    return space


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


class Cluster:
    """A nameserver, workers and a master as separate processes (no TLS: loopback)."""

    def __init__(self, tmp_path: Path, space: Path, run_id: str = "f", iterations: int = 2) -> None:
        self.tmp, self.space, self.run_id, self.iterations = tmp_path, space, run_id, iterations
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.results = tmp_path / "run"
        self.processes: list[subprocess.Popen] = []
        self.nameserver = self.master = None
        self.workers: list[subprocess.Popen] = []

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start_nameserver(self, name: str = "ns") -> subprocess.Popen:
        self.nameserver = start("nameserver", "--port", str(self.port), log=self.log(name))
        self.processes.append(self.nameserver)
        return self.nameserver

    def start_worker(self, *extra: str) -> subprocess.Popen:
        index = len(self.workers) + 1
        worker = start("worker", "--run-id", self.run_id, "--nameserver", self.address, "--work-dir", str(self.tmp),
                       *extra, log=self.log(f"w{index}"))
        self.workers.append(worker)
        self.processes.append(worker)
        return worker

    def start_master(self, *extra: str, resume: bool = False, name: str = "m") -> subprocess.Popen:
        what = ["--resume", str(self.results)] if resume else [str(self.space), "--run-id", self.run_id, "--results",
                                                                str(self.results), "--iterations",
                                                                str(self.iterations)]
        self.master = start("master", *what, "--nameserver", self.address, "--no-progress", "--ping-interval", "1",
                            *extra, log=self.log(name))
        self.processes.append(self.master)
        return self.master

    def worker_busy(self, worker: subprocess.Popen) -> bool:
        """Whether the worker's log shows a job started and not done."""
        index = self.workers.index(worker) + 1
        text = self.log(f"w{index}").read_text()
        return text.count("at budget") > text.count(" done: loss")

    def stop(self) -> None:
        stop(*self.processes)


@pytest.fixture
def cluster_factory(tmp_path):
    made = []

    def make(*args, **kwargs) -> Cluster:
        made.append(Cluster(tmp_path, *args, **kwargs))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()


def check_complete_log(results: Path, jobs: int) -> list:
    lines = read_lines(results / "results.json")
    keys = [(tuple(r[0]), r[1]) for r in lines]
    assert len(keys) == len(set(keys)), "a (configuration, budget) pair ran twice"
    assert len(lines) == jobs, f"{len(lines)} results, expected {jobs}"
    assert len(logged_results_to_HBS_result(str(results)).get_all_runs()) == jobs
    return lines


# --- workers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["busy", "between_jobs", "frozen"])
def test_a_lost_worker_s_job_runs_again_on_another(moment, tmp_path, cluster_factory):
    """Killed mid-job, killed right after a result, or frozen (SIGSTOP, as a hung host): the run
    finishes, the lost job ran again, and BOHB saw a loss only from the completed attempt."""
    cluster = cluster_factory(slow_space(tmp_path, 0.4))
    cluster.start_nameserver()
    victim, survivor = cluster.start_worker(), cluster.start_worker()
    master = cluster.start_master("--min-workers", "2")
    results = cluster.results / "results.json"
    if moment == "busy":
        wait_until(lambda: cluster.worker_busy(victim), 60, "a job on the first worker")
    else:
        wait_until(lambda: count_lines(results) >= 2, 60, "two results")
    victim.send_signal(signal.SIGSTOP if moment == "frozen" else signal.SIGKILL)
    try:
        assert master.wait(timeout=150) == 0, cluster.log("m").read_text()[-3000:]
    finally:
        if moment == "frozen":
            victim.send_signal(signal.SIGCONT)
    lines = check_complete_log(cluster.results, 17)
    assert all(r[3] is not None and math.isfinite(r[3]["loss"]) for r in lines)
    if moment == "busy":
        attempts = read_lines(cluster.results / "attempts.json")
        assert attempts and attempts[0][2]["reason"] == "worker died" and attempts[0][2]["attempt"] == 1
        retried = [r for r in lines if r[3]["info"].get("lost_attempts")]
        assert retried and all(r[3]["info"]["attempt"] == 2 for r in retried)
    meta = json.loads((cluster.results / "run.json").read_text())
    assert meta["status"] == "finished"


def test_retries_run_out_as_worker_lost(tmp_path, cluster_factory):
    cluster = cluster_factory(slow_space(tmp_path, 1.0), iterations=1)
    cluster.start_nameserver()
    victim, survivor = cluster.start_worker(), cluster.start_worker()
    master = cluster.start_master("--min-workers", "2", "--max-retries", "0")
    wait_until(lambda: cluster.worker_busy(victim), 60, "a job on the first worker")
    victim.kill()
    assert master.wait(timeout=150) == 0, cluster.log("m").read_text()[-3000:]
    lines = check_complete_log(cluster.results, 13)
    lost = [r for r in lines if r[3]["loss"] is None]
    assert len(lost) == 1 and lost[0][3]["info"]["reason"] == "worker_lost"
    assert lost[0][3]["info"]["status"] == "failed"


def test_a_worker_killed_before_the_master_starts_does_not_hang_it(tmp_path, cluster_factory):
    cluster = cluster_factory(slow_space(tmp_path, 0.05), iterations=1)
    cluster.start_nameserver()
    idle, worker = cluster.start_worker(), cluster.start_worker()
    wait_until(lambda: "registered with the nameserver" in cluster.log("w1").read_text(), 60, "registration")
    idle.kill()
    master = cluster.start_master()
    assert master.wait(timeout=120) == 0, cluster.log("m").read_text()[-3000:]
    check_complete_log(cluster.results, 13)


# --- the nameserver -----------------------------------------------------------------------------


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "gone"])
def test_the_nameserver_may_die(restart, tmp_path, cluster_factory):
    """Killed mid-run: the run goes on with the workers it knows; restarted at its address, master
    and workers register again and a worker started after the restart joins."""
    cluster = cluster_factory(slow_space(tmp_path, 0.3))
    cluster.start_nameserver()
    cluster.start_worker()
    master = cluster.start_master()
    wait_until(lambda: count_lines(cluster.results / "results.json") >= 2, 60, "two results")
    cluster.nameserver.kill()
    cluster.nameserver.wait(timeout=10)
    if restart:
        time.sleep(1)
        cluster.start_nameserver("ns2")
        late = cluster.start_worker()
    assert master.wait(timeout=150) == 0, cluster.log("m").read_text()[-3000:]
    lines = check_complete_log(cluster.results, 17)
    assert all(math.isfinite(r[3]["loss"]) for r in lines)
    if restart:
        assert "registered again with the nameserver" in cluster.log("w1").read_text()
        assert "registered again with the nameserver" in cluster.log("m").read_text()
        assert late.wait(timeout=30) == 0


# --- the master ---------------------------------------------------------------------------------


@pytest.mark.parametrize("after_results", [0, 5, 14])
def test_a_killed_master_is_resumed_and_nothing_is_lost_or_repeated(after_results, tmp_path, cluster_factory):
    """SIGKILL the master before any result, mid-iteration, and in the last iteration; the workers
    wait, `hpo master --resume` continues, and the run completes its planned iterations."""
    cluster = cluster_factory(slow_space(tmp_path, 0.3))
    cluster.start_nameserver()
    cluster.start_worker()
    cluster.start_worker()
    master = cluster.start_master("--min-workers", "2")
    if after_results:
        wait_until(lambda: count_lines(cluster.results / "results.json") >= after_results, 90,
                   f"{after_results} results")
    else:
        wait_until(lambda: any(cluster.worker_busy(w) for w in cluster.workers), 60, "a job running")
    master.kill()
    master.wait(timeout=10)
    before = (cluster.results / "results.json").read_text().splitlines()
    meta = json.loads((cluster.results / "run.json").read_text())
    assert meta["status"] == "running"  # what a crash leaves
    resumed = cluster.start_master(resume=True, name="m2")
    assert resumed.wait(timeout=150) == 0, cluster.log("m2").read_text()[-3000:]
    after = (cluster.results / "results.json").read_text().splitlines()
    assert after[:len(before)] == before  # earlier lines kept as they were
    check_complete_log(cluster.results, 17)
    configs = read_lines(cluster.results / "configs.json")
    assert len({tuple(c[0]) for c in configs}) == len(configs)
    settings = [json.dumps(c[1], sort_keys=True) for c in configs]
    assert len(set(settings)) == len(settings), "the resumed master drew the first start's configurations again"
    meta = json.loads((cluster.results / "run.json").read_text())
    assert meta["status"] == "finished" and [s["kind"] for s in meta["starts"]] == ["start", "resume"]
    assert meta["starts"][0]["sampling_seed"] == meta["seed"] != meta["starts"][1]["sampling_seed"]
    assert all(w.wait(timeout=30) == 0 for w in cluster.workers)  # the same workers served the resumed run


def test_a_run_json_without_its_starts_still_resumes_with_new_configurations(tmp_path, cluster_factory):
    """An older (or edited) run.json has no ``starts``: the resumed master still counts the first start
    and seeds its samplers anew, so it draws no configuration a second time."""
    cluster = cluster_factory(slow_space(tmp_path, 0.3), iterations=1)
    cluster.start_nameserver()
    cluster.start_worker()
    cluster.start_worker()
    master = cluster.start_master("--min-workers", "2")
    wait_until(lambda: count_lines(cluster.results / "results.json") >= 3, 90, "3 results")
    master.kill()
    master.wait(timeout=10)
    meta = json.loads((cluster.results / "run.json").read_text())
    del meta["starts"]
    (cluster.results / "run.json").write_text(json.dumps(meta))
    resumed = cluster.start_master(resume=True, name="m2")
    assert resumed.wait(timeout=150) == 0, cluster.log("m2").read_text()[-3000:]
    configs = read_lines(cluster.results / "configs.json")
    settings = [json.dumps(c[1], sort_keys=True) for c in configs]
    assert len(configs) == 9 and len(set(settings)) == len(settings)
    meta = json.loads((cluster.results / "run.json").read_text())
    assert [s["kind"] for s in meta["starts"]] == ["start", "resume"]
    assert meta["starts"][1]["sampling_seed"] != meta["seed"]


def test_workers_exit_when_their_master_does_not_come_back(tmp_path, cluster_factory):
    cluster = cluster_factory(slow_space(tmp_path, 0.3))
    cluster.start_nameserver()
    worker = cluster.start_worker("--master-timeout", "4")
    master = cluster.start_master()
    wait_until(lambda: count_lines(cluster.results / "results.json") >= 1, 60, "a result")
    master.kill()
    assert worker.wait(timeout=60) == 0
    assert "no master for run f" in cluster.log("w1").read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_master_quickly_and_records_the_status(signum, tmp_path, cluster_factory):
    cluster = cluster_factory(slow_space(tmp_path, 2.0))
    cluster.start_nameserver()
    cluster.start_worker()
    master = cluster.start_master()
    wait_until(lambda: cluster.worker_busy(cluster.workers[0]), 60, "a job running")
    sent = time.monotonic()
    master.send_signal(signum)
    master.wait(timeout=30)
    assert time.monotonic() - sent < 15
    assert json.loads((cluster.results / "run.json").read_text())["status"] == "interrupted"


# --- fail fast ----------------------------------------------------------------------------------


def test_a_run_whose_jobs_all_fail_for_a_setup_reason_stops_early(tmp_path, cluster_factory):
    """The master's space names a job the worker does not allow: every job is refused (reason
    'job'); the master stops after 3 such results with that reason, status failed, exit 2."""
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "myjob.py").write_text("def run(config, context):\n    return {'loss': 1.0, 'info': {}}\n")
    space = tmp_path / "custom.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text().replace("job: synthetic", "job: myjob:run"))
    cluster = cluster_factory(space)
    cluster.start_nameserver()
    cluster.start_worker()
    master = subprocess.Popen(hpo_command("master", str(space), "--run-id", "f", "--results", str(cluster.results),
                                          "--nameserver", cluster.address, "--no-progress"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                              env={**os.environ, "PYTHONPATH": str(package)})
    cluster.processes.append(master)
    _, err = master.communicate(timeout=120)
    assert master.returncode == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "reason 'job'" in last and "not allowed" in last and "Traceback" not in err
    meta = json.loads((cluster.results / "run.json").read_text())
    assert meta["status"] == "failed" and "reason 'job'" in meta["reason"]
    assert count_lines(cluster.results / "results.json") < 13


def test_a_dead_dispatcher_thread_stops_the_run_with_a_reason():
    """The master's loop looks at its dispatcher every second: a thread that died stops the run."""
    import threading

    from hpo.master_loop import RunStopped, ServiceMaster

    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()

    class Dispatcher:
        def threads_alive(self):
            return True

    master = ServiceMaster()
    master.dispatcher_thread, master.dispatcher = dead, Dispatcher()
    with pytest.raises(RunStopped, match="the dispatcher stopped"):
        master._check_running()
