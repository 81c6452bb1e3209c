"""hpo-report: reading results directories (this service's logs and hpbandster's own)."""

from __future__ import annotations

import json
import math

import pytest

from hpo.errors import UserError
from hpo.report.loading import read_run, read_runs, parse_history
from hpo.report.tables import build_report
from report_logs import LogWriter, metadata, write_standard_run


def test_reads_a_service_log(tmp_path):
    run = read_run(write_standard_run(tmp_path / "run1"))
    results = run.results
    assert len(results) == 11
    assert run.name == "run1"
    assert run.loss_metric == "val_loss"
    assert [hp.name for hp in run.hyperparameters] == ["optimizer", "lr", "momentum", "batch_size"]
    assert {hp.name: hp.log for hp in run.hyperparameters} == {"optimizer": False, "lr": True, "momentum": False, "batch_size": True}
    assert list(results["status"]).count("ok") == 9
    failed = results[results["status"] == "failed"].iloc[0]
    assert (failed["reason"], failed["message"], failed["config_id"]) == ("diverged", "loss is nan at epoch 1", "(0, 0, 1)")
    assert math.isnan(failed["loss"])
    assert results.loc[results["config_id"] == "(0, 0, 0)", "epochs"].tolist() == [1, 3, 9]
    assert run.configs.loc["(0, 0, 2)", "optimizer"] == "adamw"
    assert pd_isna(run.configs.loc["(0, 0, 2)", "momentum"])
    assert run.warnings == []


def pd_isna(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def test_a_crashed_job_reports_the_last_line_of_its_exception(tmp_path):
    run = read_run(write_standard_run(tmp_path / "run1"))
    crashed = run.results[run.results["status"] == "crashed"]
    assert crashed["reason"].tolist() == ["crashed"]
    assert crashed["message"].tolist() == ["RuntimeError: CUDA out of memory"]


def test_history_is_read_on_demand(tmp_path):
    run = read_run(write_standard_run(tmp_path / "run1"))
    row = run.results[(run.results["config_id"] == "(0, 0, 0)") & (run.results["budget"] == 9)].iloc[0]
    history = parse_history(row["history"])
    assert [entry["epoch"] for entry in history] == list(range(1, 10))
    assert row["val_loss"] == 0.35  # the rest of the line is read as usual


def test_an_unusual_history_is_read_whole(tmp_path):
    """A history that is not a flat list of flat records is parsed with the rest of the line."""
    log = LogWriter(tmp_path / "run", metadata())
    cid = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    history = [{"epoch": 1, "val_loss": 0.5, "note": "odd ] text"}, {"epoch": 2, "val_loss": 0.4, "per_class": [1, 2]}]
    log.ok(cid, 2, 0.4, history=history)
    run = read_run(tmp_path / "run")
    assert parse_history(run.results["history"].iloc[0]) == history


def test_reads_a_log_written_by_hpbandsters_json_result_logger(tmp_path):
    from hpbandster.core.dispatcher import Job
    from hpbandster.core.result import json_result_logger

    logger = json_result_logger(str(tmp_path / "hpb"), overwrite=True)
    configs = {
        (0, 0, 0): {"x": 0.5, "kind": "a", "fixed": 1},
        (0, 0, 1): {"x": 2.0, "kind": "b", "fixed": 1},
        (0, 0, 2): {"x": 1.0, "kind": "a", "fixed": 1},
    }
    losses = {(0, 0, 0): 0.3, (0, 0, 1): 0.1, (0, 0, 2): float("nan")}
    clock = 1000.0
    for config_id, config in configs.items():
        logger.new_config(config_id, config, {"model_based_pick": False})
    for budget in (1.0, 3.0):
        for config_id, config in configs.items():
            job = Job(config_id, config=config, budget=budget, working_directory=".")
            job.timestamps = {"submitted": clock, "started": clock + 1, "finished": clock + 5}
            clock += 5
            job.result = {"loss": losses[config_id] * budget, "info": {"anything": budget}}
            logger(job)
    crash = Job((0, 0, 1), config=configs[(0, 0, 1)], budget=9.0, working_directory=".")
    crash.timestamps = {"submitted": clock, "started": clock + 1, "finished": clock + 2}
    crash.exception = "Traceback (most recent call last):\nValueError: bad x\n"
    logger(crash)

    run = read_run(tmp_path / "hpb")
    assert run.metadata == {}
    # Inferred: the keys whose values vary; "fixed" is constant.
    assert [(hp.name, hp.type) for hp in run.hyperparameters] == [("x", "float"), ("kind", "categorical")]
    assert run.results["status"].tolist().count("failed") == 2  # NaN losses
    report = build_report(run)
    assert report.top_budget == 3.0  # the highest budget with a successful result
    assert report.top["config_id"].tolist() == ["(0, 0, 1)", "(0, 0, 0)"]
    assert report.top.columns.tolist()[:2] == ["x", "kind"]
    assert report.failures["message"].tolist()[-1] == "ValueError: bad x"


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    directory = write_standard_run(tmp_path / "run1")
    with open(directory / "results.json", "a") as handle:
        handle.write('[[1, 0, 0], 9.0, {"submitted": 1')  # a line still being written
    run = read_run(directory)
    assert len(run.results) == 11
    assert len(run.warnings) == 1
    assert "results.json:12: incomplete last line" in run.warnings[0]
    assert "results.json:12" in caplog.text


def test_a_corrupt_line_in_the_middle_is_skipped_with_a_warning_naming_it(tmp_path):
    directory = write_standard_run(tmp_path / "run1")
    lines = (directory / "results.json").read_text().splitlines(keepends=True)
    lines.insert(3, "{garbage\n")
    lines.insert(5, json.dumps({"not": "a result"}) + "\n")
    (directory / "results.json").write_text("".join(lines))
    run = read_run(directory)
    assert len(run.results) == 11
    assert any(f"{directory / 'results.json'}:4: not valid JSON" in w for w in run.warnings)
    assert any("results.json:6: not a result line" in w for w in run.warnings)


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        read_run(tmp_path / "absent")


def test_directory_without_a_log_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no results.json"):
        read_run(tmp_path)


def test_empty_log_is_a_user_error(tmp_path):
    LogWriter(tmp_path / "run", metadata())
    with pytest.raises(UserError, match="results.json: empty log"):
        read_run(tmp_path / "run")


def test_a_log_with_no_readable_line_is_a_user_error(tmp_path):
    LogWriter(tmp_path / "run", metadata())
    (tmp_path / "run" / "results.json").write_text("not json\n{\n")
    with pytest.raises(UserError, match=r"results.json: no readable result .*results.json:1"):
        read_run(tmp_path / "run")


def test_runs_with_the_same_name_get_distinct_names(tmp_path):
    runs = read_runs([write_standard_run(tmp_path / "a" / "r"), write_standard_run(tmp_path / "b" / "r")])
    assert [run.name for run in runs] == ["run1", "run1#2"]


def test_a_history_with_brackets_in_its_text_is_read_whole(tmp_path):
    log = LogWriter(tmp_path / "run", metadata())
    cid = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    history = [{"epoch": 1, "val_loss": 0.5, "note": "tricky }] text"}, {"epoch": 2, "val_loss": 0.4}]
    log.ok(cid, 2, 0.4, history=history)
    log.ok(cid, 3, 0.3)
    run = read_run(tmp_path / "run")
    assert run.warnings == []
    assert parse_history(run.results["history"].iloc[0]) == history
    assert len(parse_history(run.results["history"].iloc[1])) == 3


def test_continued_jobs_count_the_epochs_they_trained(tmp_path):
    """A job continued from a checkpoint records the model's epochs in all (info.epochs) and its
    own (info.epochs_trained): the report sums what was trained."""
    from hpo.report.tables import compute_used

    writer = LogWriter(tmp_path / "run", metadata())
    config_id = writer.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    writer.ok(config_id, 1, 1.0, epochs_trained=1, continued_from=0)
    writer.ok(config_id, 3, 0.8, epochs_trained=2, continued_from=1)
    writer.ok(config_id, 9, 0.5, epochs_trained=6, continued_from=3)
    run = read_run(tmp_path / "run")
    assert run.results["epochs"].tolist() == [1, 2, 6]
    assert compute_used(run)["epochs"] == 9
