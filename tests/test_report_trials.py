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
