"""The service runs without torch: master, nameserver, synthetic workers and the report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from tests.conftest import SPACES

BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith(("torch.", "torchvision")):
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def test_a_whole_run_and_its_report_without_torch(tmp_path, run_hpo):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {"PYTHONPATH": str(blocker)}
    results = tmp_path / "run"
    check = run_hpo("space", "check", str(SPACES / "synthetic.yaml"), env=env)
    assert check.returncode == 0, check.stderr
    proc = run_hpo("run", str(SPACES / "synthetic.yaml"), "--workers", "2", "--iterations", "1", "--results",
                   str(results), "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in (results / "results.json").read_text().splitlines()]
    assert len(lines) == 13 and all(math.isfinite(r[3]["loss"]) for r in lines)
    report = subprocess.run([sys.executable, "-m", "hpo.report", str(results), "--format", "json"],
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)
    # sanity: the blocker really blocks torch in these processes
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env={"PYTHONPATH": str(blocker)},
                             capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked in this test" in blocked.stderr
