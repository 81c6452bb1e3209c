"""What the terminal shows: the Ctrl-C message, ``hpo train``'s epochs and summary, help texts."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import ROOT, SPACES, hpo_command


def _read_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_ctrl_c_names_the_jobs_lost_the_results_and_hpo_report(tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 1.5\n")
    results = tmp_path / "run"
    run = subprocess.Popen(hpo_command("run", str(space), "--workers", "2", "--results", str(results),
                                       "--run-id", "ctrlc", "--no-progress", "--insecure"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        deadline = time.time() + 90
        while not _read_lines(results / "results.json"):
            assert time.time() < deadline and run.poll() is None, "no result within 90 s"
            time.sleep(0.2)
        time.sleep(0.7)  # both workers are inside a job of at least 1.5 s
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(r"hpo: interrupted; (\d+) jobs? in flight lost; results so far in (\S+); "
                         r"see: hpo-report (\S+); continue: hpo run --resume (\S+)", last)
    assert match, last
    assert match.group(2) == match.group(3) == match.group(4) == str(results)
    # the jobs lost are those the workers started that have no result
    started = sum(len(re.findall(r"job \(\d+, \d+, \d+\): synthetic at budget", log.read_text()))
                  for log in (results / "logs").glob("worker-*.log"))
    assert int(match.group(1)) == started - len(_read_lines(results / "results.json")) >= 1
    assert "Traceback" not in err
