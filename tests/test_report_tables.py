"""hpo-report: the best-configurations table and the run summary."""

from __future__ import annotations

import json
import math

import pytest

from hpo.errors import UserError
from hpo.report.loading import read_run
from hpo.report.tables import build_report, top_configurations
from report_logs import START, LogWriter, metadata, write_standard_run


@pytest.fixture
def report(tmp_path):
    return build_report(read_run(write_standard_run(tmp_path / "run1")))


def test_top_configurations_at_the_highest_budget_best_first(report):
    top = report.top
    assert report.top_budget == 9
    assert top["config_id"].tolist() == ["(0, 0, 2)", "(0, 0, 0)", "(0, 0, 3)"]
    assert top.columns.tolist() == [
        "optimizer", "lr", "momentum", "batch_size",  # searched, from run.json; not the constant "model"
        "loss", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_accuracy", "budget", "config_id",
    ]
    assert top["optimizer"].tolist() == ["adamw", "sgd", "sgd"]
    assert math.isnan(top["momentum"][0]) and top["momentum"][1] == 0.9  # inactive for adamw
    assert top["val_loss"].tolist() == [0.30, 0.35, 0.50]
    assert top["test_accuracy"].tolist() == pytest.approx([0.84, 0.815, 0.74])
    assert set(top["budget"]) == {9.0}


def test_top_is_limited_to_k_and_can_pick_a_budget(tmp_path):
    run = read_run(write_standard_run(tmp_path / "run1"))
    assert top_configurations(run, k=2)["config_id"].tolist() == ["(0, 0, 2)", "(0, 0, 0)"]
    at_one = top_configurations(run, k=6, budget=1)
    assert at_one["config_id"].tolist() == ["(0, 0, 2)", "(0, 0, 0)", "(0, 0, 3)"]  # failures excluded
    with pytest.raises(UserError, match="no result at budget 5"):
        top_configurations(run, budget=5)


def test_a_budget_with_only_failures_is_not_the_highest_reached(tmp_path):
    directory = write_standard_run(tmp_path / "run1")
    log = LogWriter(directory)  # appends to the run's log
    log.clock = 1_800_000_000.0
    log.failed([0, 0, 0], 27, "oom", "CUDA out of memory")
    report = build_report(read_run(directory))
    assert report.top_budget == 9
    assert report.budgets["budget"].tolist() == [1, 3, 9, 27]


def test_budget_summary(report):
    budgets = report.budgets.set_index("budget")
    assert budgets.loc[1.0, "configs"] == 5 and budgets.loc[1.0, "runs"] == 5 and budgets.loc[1.0, "failed"] == 2
    assert budgets.loc[3.0, "runs"] == 3 and budgets.loc[3.0, "failed"] == 0
    assert budgets.loc[9.0, "best_loss"] == 0.30 and budgets.loc[9.0, "best_config"] == "(0, 0, 2)"
    assert budgets.loc[3.0, "epochs"] == 9


def test_failures_with_reasons(report):
    failures = report.failures
    assert failures["reason"].tolist() == ["diverged", "crashed"]
    assert failures["message"].tolist() == ["loss is nan at epoch 1", "RuntimeError: CUDA out of memory"]
    assert failures["config_id"].tolist() == ["(0, 0, 1)", "(0, 0, 4)"]


def test_incumbent_trajectory(report):
    trajectory = report.trajectory
    assert trajectory["loss"].tolist() == [0.9, 0.8, 0.6, 0.5, 0.35, 0.30]
    assert trajectory["budget"].tolist() == [1, 1, 3, 3, 9, 9]
    assert trajectory["wall_time"].is_monotonic_increasing
    # epochs trained by all jobs so far, the failed one's epoch included
    assert trajectory["epochs"].tolist() == [1, 3, 7, 10, 22, 31]


def test_a_worse_loss_on_a_higher_budget_becomes_the_incumbent(tmp_path):
    log = LogWriter(tmp_path / "run", metadata())
    cid = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    log.ok(cid, 1, 0.2)
    log.ok(cid, 3, 0.6)
    trajectory = build_report(read_run(tmp_path / "run")).trajectory
    assert trajectory["loss"].tolist() == [0.2, 0.6]


def test_rank_correlation_between_successive_budgets(tmp_path):
    log = LogWriter(tmp_path / "run", metadata())
    ids = [log.config(optimizer="adamw", lr=10.0 ** -k, batch_size=32) for k in range(1, 5)]
    for cid, low, mid, high in zip(ids, [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]):
        log.ok(cid, 1, low)
        log.ok(cid, 3, mid)
        log.ok(cid, 9, high)
    correlations = build_report(read_run(tmp_path / "run")).correlations
    assert correlations[["budget_low", "budget_high"]].values.tolist() == [[1, 3], [3, 9]]
    assert correlations["configs"].tolist() == [4, 4]
    assert correlations["spearman"].tolist() == pytest.approx([1.0, -1.0])


def test_a_resumed_run_s_wall_time_leaves_out_the_time_it_was_stopped(tmp_path):
    """Stopped after its second result for an hour, then resumed: the hour counts neither in the
    wall time nor on the incumbent trajectory's time axis."""
    from datetime import datetime, timezone

    from hpo.report.display import compute_text

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).isoformat()

    meta = metadata()
    log = LogWriter(tmp_path / "run", meta)
    a, b = log.config(optimizer="adamw", lr=0.01, batch_size=32), log.config(optimizer="adamw", lr=0.1, batch_size=32)
    log.ok(a, 1, 0.9)  # START .. START + 61
    log.ok(b, 1, 0.8)  # .. START + 122
    log.clock += 3600  # stopped for an hour
    resumed = log.clock
    log.ok(a, 3, 0.5)  # .. resumed + 181
    meta.update(started_at=iso(START), finished_at=iso(resumed + 181),
                starts=[{"at": iso(START), "kind": "start"}, {"at": iso(resumed), "kind": "resume"}])
    (tmp_path / "run" / "run.json").write_text(json.dumps(meta))
    report = build_report(read_run(tmp_path / "run"))
    assert report.compute["wall_time"] == pytest.approx(122 + 181)
    assert report.compute["stopped_time"] == pytest.approx(3600)
    assert report.trajectory["wall_time"].tolist() == pytest.approx([61, 122, 122 + 181])
    assert "wall time 5m 3s (not counting 1h 0m stopped between starts)" in compute_text(report.compute)
    from hpo.report.figures import incumbent_over_time

    figure = incumbent_over_time(report)  # the line ends at the run's end, in running time
    assert figure.layout.xaxis.title.text.endswith("[minutes]")
    assert max(max(trace.x) for trace in figure.data if trace.x is not None and len(trace.x)) == pytest.approx(303 / 60)


def test_compute_used(report):
    compute = report.compute
    assert compute["results"] == 11 and compute["configs"] == 5 and compute["failed"] == 2
    assert compute["epochs"] == 3 + 1 + 9 + 27  # the failed job trained one epoch
    assert compute["worker_hours"] == pytest.approx((5 * 1 + 3 * 3 + 3 * 9) / 60)  # budget minutes per job
    assert compute["wall_time"] == 7200  # run.json started_at -> finished_at
    assert compute["status"] == "finished"
