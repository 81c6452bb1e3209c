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


def _image_classifier_run(directory):
    """Results whose info holds what workers/image_classifier.py writes (integers as integers), a failure, a crash."""
    log = LogWriter(directory, metadata())
    first = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    second = log.config(optimizer="adamw", lr=0.001, batch_size=64)
    job = {"continued_from": 0, "max_epochs": 9, "trainable_params": 11181642, "total_params": 11181642,
           "trains": "all", "skipped_images": 0, "train_images": 600, "val_images": 288, "test_images": 360,
           "input": None, "stopped_early": False, "stop_reason": None, "best_epoch": 1, "top5": 0.97}
    log.ok(first, 1, 0.9, epochs_trained=1, seed=991982025, **job)
    log.ok(second, 1, 0.8, epochs_trained=1, seed=574308488, **{**job, "top5": 1})  # top5: 0.97 then 1: floats
    log.ok(first, 3, 0.6, epochs_trained=2, seed=991982025, **{**job, "continued_from": 1, "best_epoch": 3})
    log.failed(second, 3, "diverged", "loss is nan at epoch 2")  # epochs 1, the rest missing
    log.crashed(second, 9, "RuntimeError: CUDA out of memory")
    return directory


def test_integer_info_fields_stay_integers_and_epochs_trained_is_a_column(tmp_path, capsys):
    import csv
    import io
    import json

    from hpo.report.cli import main

    run = _image_classifier_run(tmp_path / "run")
    trials = hpo.report.load_run(run)
    integers = ["continued_from", "trainable_params", "seed", "epochs", "best_epoch", "train_images", "max_epochs",
                "epochs_trained", "attempts", "lost_attempts", "iteration"]
    for name in integers:
        assert pd.api.types.is_integer_dtype(trials[name]), (name, trials[name].dtype)
    for name in ("loss", "val_loss", "wall_time", "budget", "duration", "top5"):
        assert pd.api.types.is_float_dtype(trials[name]), (name, trials[name].dtype)
    assert "stopped_early" not in trials.columns  # a boolean, not a number
    assert trials["seed"].tolist()[:3] == [991982025, 574308488, 991982025] and trials["seed"].isna().tolist()[3:] == [True, True]
    assert trials["epochs_trained"].tolist()[:3] == [1, 1, 2] and trials["epochs_trained"].isna().sum() == 2
    assert trials["continued_from"].tolist()[:3] == [0, 0, 1] and trials["epochs"].tolist()[:4] == [1, 1, 2, 1]
    assert str(trials["trainable_params"].dtype) == "Int64" and pd.isna(trials["epochs"].iloc[4])  # crashed

    assert main([str(run), "--all", "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert "11181642.0" not in text and "991982025.0" not in text and ",600.0," not in text
    table = pd.read_csv(io.StringIO(text))
    assert table["epochs_trained"].tolist()[:3] == [1, 1, 2]
    first = next(csv.DictReader(io.StringIO(text)))  # the text as written
    assert first["seed"] == "991982025" and first["continued_from"] == "0" and first["train_images"] == "600"
    assert first["epochs"] == "1" and first["best_epoch"] == "1" and first["epochs_trained"] == "1"
    assert first["wall_time"] == "60.0"  # a float stays a float

    other = write_standard_run(tmp_path / "other", run_id="other")  # no epochs_trained, no seed
    assert main([str(run), str(other), "--all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 16
    assert [type(rows[0][name]) for name in integers] == [int] * len(integers)
    assert rows[0]["seed"] == 991982025 and rows[0]["trainable_params"] == 11181642 and rows[0]["train_images"] == 600
    assert rows[2]["epochs_trained"] == 2 and rows[2]["continued_from"] == 1 and rows[2]["epochs"] == 2
    assert rows[4]["epochs"] is None and rows[4]["seed"] is None  # crashed: missing, not NaN
    assert rows[5]["run"] == "other" and rows[5]["epochs_trained"] is None and rows[5]["epochs"] == 1
    assert type(rows[0]["wall_time"]) is float and type(rows[0]["top5"]) is float


def test_a_number_that_is_an_integer_in_one_run_and_a_float_in_another_is_a_float(tmp_path):
    from hpo.report.loading import read_run
    from hpo.report.trials import all_trials

    one = LogWriter(tmp_path / "one", metadata("one"))
    one.ok(one.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32), 1, 0.5, images=600)
    two = LogWriter(tmp_path / "two", metadata("two"))
    two.ok(two.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32), 1, 0.5, images=600.5)
    table = all_trials([read_run(tmp_path / "one"), read_run(tmp_path / "two")])
    assert table["images"].dtype == "float64" and table["images"].tolist() == [600.0, 600.5]
    assert str(table["epochs"].dtype) == "Int64"


def test_an_integer_too_large_for_a_float_keeps_its_column_a_float_column(tmp_path):
    """A 64-bit seed (torch.initial_seed() can give one) must not break the table: only integers a
    float holds exactly make an Int64 column."""
    from hpo.report.html import trials_table

    log = LogWriter(tmp_path / "run", metadata())
    log.ok(log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32), 1, 0.5, torch_seed=2 ** 64 - 5,
           small=7)
    trials = hpo.report.load_run(tmp_path / "run")
    assert trials["torch_seed"].dtype == "float64" and trials["torch_seed"].iloc[0] == float(2 ** 64 - 5)
    assert str(trials["small"].dtype) == "Int64"
    assert trials_table(hpo.report.loading.read_run(tmp_path / "run"))["rows"]
