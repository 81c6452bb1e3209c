"""hpo.report.load_run: every result of a run as one DataFrame (the notebook API)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import hpo.report
from hpo.errors import UserError
from report_logs import LogWriter, metadata, write_standard_run


def test_load_run_has_one_row_per_result_with_everything(tmp_path):
    trials = hpo.report.load_run(write_standard_run(tmp_path / "run1"))
    assert len(trials) == 11
    assert list(trials.columns[:7]) == ["config_id", "iteration", "optimizer", "lr", "momentum", "batch_size", "model"]
    for column in ("budget", "loss", "train_loss", "val_loss", "val_accuracy", "test_accuracy", "status", "reason",
                   "attempts", "submitted", "started", "finished", "duration", "wall_time", "epochs"):
        assert column in trials.columns, column
    assert trials["status"].value_counts().to_dict() == {"ok": 9, "diverged": 1, "crashed": 1}
    best = trials[(trials["budget"] == 9)].sort_values("loss").iloc[0]
    assert (best["config_id"], best["optimizer"], best["loss"], best["test_accuracy"]) == ("(0, 0, 2)", "adamw", 0.30, 0.84)
    assert math.isnan(best["momentum"])  # inactive for adamw
    assert best["epochs"] == 9 and best["duration"] == 540.0 and best["attempts"] == 1
    assert isinstance(best["finished"], pd.Timestamp) and best["finished"].tzname() == "UTC"
    assert trials["finished"].is_monotonic_increasing


def test_attempts_lost_workers_and_extra_metrics_are_columns(tmp_path):
    log = LogWriter(tmp_path / "run", metadata())
    cid = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    log.ok(cid, 1, 0.5, attempt=2, lost_attempts=[{"attempt": 1, "worker": "w1", "reason": "worker died"}], top5=0.97)
    other = log.config(optimizer="sgd", lr=0.02, momentum=0.9, batch_size=32)
    log.failed(other, 1, "worker_lost", "the job's worker was lost on each of its 3 attempts")
    trials = hpo.report.load_run(tmp_path / "run")
    assert trials["attempts"].tolist() == [2, 1]
    assert trials["lost_attempts"].tolist() == [1, 0]
    assert trials["status"].tolist() == ["ok", "lost"]
    assert trials["top5"].iloc[0] == 0.97


def test_load_run_of_nothing_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        hpo.report.load_run(tmp_path / "missing")


def test_all_as_csv_and_json_gives_every_result(tmp_path, capsys):
    import io
    import json

    from hpo.report.cli import main

    first = write_standard_run(tmp_path / "a", run_id="vgg16")
    assert main([str(first), "--all", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 11 and list(table.columns[:3]) == ["run", "config_id", "iteration"]
    assert set(table["status"]) == {"ok", "diverged", "crashed"}
    assert table["finished"].iloc[0] == "2023-11-14T22:14:21+00:00"
    second = write_standard_run(tmp_path / "b", run_id="resnet50")
    assert main([str(first), str(second), "--all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 22 and {row["run"] for row in rows} == {"vgg16", "resnet50"}
    crashed = next(row for row in rows if row["status"] == "crashed")
    assert crashed["loss"] is None and crashed["message"] == "RuntimeError: CUDA out of memory"
    assert crashed["lr"] == 0.05 and crashed["momentum"] is None


def test_all_needs_csv_or_json(tmp_path, capsys):
    from hpo.report.cli import main

    assert main([str(write_standard_run(tmp_path / "a")), "--all"]) == 2
    assert capsys.readouterr().err.strip() == "hpo-report: --all: needs --format csv or --format json (got --format text)"
