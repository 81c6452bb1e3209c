"""A run's directory opens in the field's tools: configspace.json (ConfigSpace's own JSON) and
info.state, as DeepCAVE's and CAVE's BOHB converters read them."""

from __future__ import annotations

import json
import time

import pytest
from ConfigSpace import ConfigurationSpace

from hpo.report.loading import read_run
from hpo.report.status import run_status
from hpo.space import load_space
from tests.conftest import SPACES


@pytest.mark.slow
def test_a_run_writes_configspace_json_and_info_state(tmp_path, run_hpo):
    space_file = tmp_path / "failing.yaml"
    space_file.write_text((SPACES / "synthetic.yaml").read_text() + "  fail_when: optimizer=adamw\n")
    results = tmp_path / "run"
    proc = run_hpo("run", str(space_file), "--workers", "1", "--results", str(results), "--run-id", "cs1",
                   "--iterations", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ConfigurationSpace.from_json(results / "configspace.json") == load_space(space_file).configspace
    lines = [json.loads(line) for line in (results / "results.json").read_text().splitlines()]
    states = {(line[3]["loss"] is None, line[3]["info"]["state"]) for line in lines}
    assert states == {(False, "SUCCESS"), (True, "CRASHED")}
    metadata = json.loads((results / "run.json").read_text())
    assert metadata["status"] == "finished"
    assert run_status(read_run(results)).state == "finished"


def test_the_heartbeat_is_refreshed_while_the_master_lives(tmp_path):
    from hpo.heartbeat import Heartbeat
    from hpo.results import read_run_metadata, write_run_metadata

    write_run_metadata(tmp_path, {"run_id": "r", "status": "running"})
    beat = Heartbeat(tmp_path, interval=0.2).start()
    first = read_run_metadata(tmp_path)["heartbeat_at"]
    deadline = time.monotonic() + 10
    while read_run_metadata(tmp_path)["heartbeat_at"] == first and time.monotonic() < deadline:
        time.sleep(0.1)
    beat.stop()
    assert read_run_metadata(tmp_path)["heartbeat_at"] != first and read_run_metadata(tmp_path)["status"] == "running"


def test_deepcave_reads_a_run(tmp_path):
    pytest.importorskip("deepcave", reason="DeepCAVE needs Python < 3.11 (not installable here)")
    from deepcave.runs.converters.bohb import BOHBRun

    from hpo.results import write_configspace
    from report_logs import write_standard_run

    run_dir = write_standard_run(tmp_path / "run1")
    configspace = ConfigurationSpace({"optimizer": ["sgd", "adamw"], "lr": (1e-5, 1e-1), "momentum": (0.0, 0.99),
                                      "batch_size": (16, 64), "model": ["resnet18"]})
    write_configspace(run_dir, configspace)
    assert len(BOHBRun.from_path(run_dir).history) == 11
