"""The master's progress: the plan in epochs, the counts (epochs, failures, retries, incumbent), the display."""

from __future__ import annotations

import io
import logging
import math
import time
from types import SimpleNamespace

import pytest

from hpo.progress import Progress, ProgressCounts
from hpo.run_plan import epochs_for_budget, job_epochs, plan_brackets, total_epochs, total_jobs


def test_plan_counts_the_epochs_continuation_trains():
    # budgets 1, 3, 9, 27 (eta 3), 4 iterations: the figures of BENCHMARKS.md (342 of 405 epochs)
    brackets = plan_brackets("bohb", 1, 27, 3, 4)
    assert [b.num_configs for b in brackets] == [(27, 9, 3, 1), (9, 3, 1), (6, 2), (4,)]
    assert total_jobs(brackets) == 65
    assert total_epochs(brackets, continuation=True) == 342
    assert total_epochs(brackets, continuation=False) == 405
    # first bracket of 1, 3, 9: 9 x 1 + 3 x (3 - 1) + 1 x (9 - 3) epochs
    assert plan_brackets("hyperband", 1, 9, 3, 1)[0].stage_epochs() == [9, 6, 6]


def test_plan_of_random_search_is_every_job_at_the_max_budget():
    brackets = plan_brackets("randomsearch", 1, 9, 3, 2)
    assert [(b.num_configs, b.budgets) for b in brackets] == [((3,), (9.0,)), ((3,), (9.0,))]
    assert total_epochs(brackets) == 54


def test_fractional_budgets_are_rounded_as_the_jobs_round_them():
    assert [epochs_for_budget(b) for b in (0.2, 1.0, 2.5, 3.33, 10.0)] == [1, 1, 3, 3, 10]
    assert job_epochs(30, continued_from=10) == 20 and job_epochs(10, 10 / 3) == 7
    assert plan_brackets("bohb", 3.33, 30, 3, 1)[0].epochs() == 9 * 3 + 3 * 7 + 1 * 20


def counts_for(continuation: bool = True) -> ProgressCounts:
    return ProgressCounts(brackets=plan_brackets("bohb", 1, 9, 3, 2), continuation=continuation)


def ok(loss: float) -> dict:
    return {"loss": loss, "info": {}}


def test_counts_start_from_the_plan():
    assert (counts_for().total_jobs, counts_for().total_epochs, counts_for().iterations) == (17, 36, 2)
    assert counts_for(continuation=False).total_epochs == 45


def test_a_finished_job_adds_the_epochs_it_trains():
    counts = counts_for()
    stages = (1.0, 3.0, 9.0)
    counts.job_submitted((0, 0, 0), 1.0, stages, None)
    counts.job_finished((0, 0, 0), 1.0, ok(0.5))
    counts.job_submitted((0, 0, 0), 3.0, stages, 1.0)  # promoted: continues, trains 2
    counts.job_finished((0, 0, 0), 3.0, ok(0.4))
    assert (counts.finished, counts.epochs_done, counts.total_epochs) == (2, 3, 36)


def test_a_promoted_job_from_scratch_grows_the_total():
    counts = counts_for()
    counts.job_submitted((0, 0, 4), 3.0, (1.0, 3.0, 9.0), None)  # its budget-1 job failed: no checkpoint
    assert counts.total_epochs == 36 + 1
    counts.job_finished((0, 0, 4), 3.0, ok(0.3))
    assert counts.epochs_done == 3


def test_failures_count_and_do_not_become_the_best():
    counts = counts_for()
    counts.job_finished((0, 0, 0), 1.0, {"loss": math.inf, "info": {"status": "failed"}})
    counts.job_finished((0, 0, 1), 1.0, None)
    assert (counts.failed, counts.best_loss, counts.best_text()) == (2, None, "-")
    assert counts.epochs_done == 2  # their share of the plan is done


def test_best_is_the_incumbent_at_the_highest_budget_so_far():
    counts = counts_for()
    counts.job_finished((0, 0, 0), 1.0, ok(0.2))
    counts.job_finished((0, 0, 1), 1.0, ok(0.1))
    assert counts.best_text() == "0.1 @ 1 ep"
    counts.job_finished((0, 0, 1), 3.0, ok(0.9))  # a higher budget replaces it, even with a worse loss
    assert (counts.best_loss, counts.best_budget, counts.best_text()) == (0.9, 3.0, "0.9 @ 3 ep")
    counts.job_finished((0, 0, 0), 1.0, ok(0.01))  # lower budgets no longer count
    counts.job_finished((0, 0, 0), 3.0, ok(0.5))
    assert counts.best_text() == "0.5 @ 3 ep"


def test_restore_counts_a_resumed_runs_results():
    def datum(results):
        return SimpleNamespace(results=results)

    iterations = [SimpleNamespace(data={
        (0, 0, 0): datum({1.0: ok(0.5), 3.0: ok(0.3)}),
        (0, 0, 1): datum({1.0: {"loss": math.inf, "info": {}}}),
        (0, 0, 2): datum({1.0: None}),
    })]
    counts = counts_for()
    counts.restore(iterations)
    assert (counts.finished, counts.failed, counts.epochs_done, counts.best_text()) == (4, 2, 5, "0.3 @ 3 ep")


def test_retries_count_only_attempts_run_again():
    counts = counts_for()
    counts.attempt_lost(retried=True)
    counts.attempt_lost(retried=False)
    assert counts.retries == 1


def make(interactive: bool, stream=None):
    counts = counts_for()
    counts.finished, counts.failed, counts.retries, counts.epochs_done = 7, 1, 2, 12
    counts.best_loss, counts.best_budget = 0.4321, 9.0
    return Progress(counts, snapshot=lambda: (2, 3), current_iteration=lambda: 2, stream=stream,
                    interactive=interactive)


def test_eta_comes_from_the_pace_in_epochs():
    progress = make(False)
    assert progress.eta_seconds() is None  # nothing done in this session yet
    progress.counts.epochs_done = 24  # 12 epochs in 60 s: 12 left take 60 s
    assert progress.eta_seconds(now=progress.started + 60) == pytest.approx(60)


def test_line_holds_iteration_jobs_epochs_best_and_elapsed():
    line = make(False).line()
    assert line.startswith("iteration 2/2 | jobs 7/17 finished (1 failed, 2 retried), 2 running, 3 queued | "
                           "best loss 0.4321 @ 9 ep | epochs 12/36 | elapsed 0:00:0")
    assert line.endswith("eta -")


def test_terminal_gets_a_live_bar_in_epochs():
    stream = io.StringIO()
    progress = make(True, stream).start()
    progress.close()
    text = stream.getvalue()
    assert "iteration 2/2" in text and "12/36" in text and "ep" in text
    assert "best 0.4321 @ 9 ep | jobs 7/17, 1 failed, 2 retried" in text


def test_plain_log_lines_otherwise(caplog):
    with caplog.at_level(logging.INFO, logger="hpo.progress"):
        progress = make(False, io.StringIO()).start()
        progress.close()
    assert any("jobs 7/17 finished" in r.getMessage() for r in caplog.records)


def test_the_bar_shows_on_a_terminal_that_reports_no_size(monkeypatch):
    import fcntl
    import os
    import struct
    import sys
    import termios

    leader, follower = os.openpty()  # a pty nobody sized (script, some docker -t): 0 rows, 0 columns
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    stream = os.fdopen(follower, "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", stream)  # tqdm asks the terminal's size only of stderr and stdout
    try:
        progress = make(True, stream).start()
        progress.close()
        stream.flush()
        os.set_blocking(leader, False)
        received = b""  # a pty hands its data over in pieces: read until the bar is there (5 s at most)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (b"iteration 2/2" in received and b"12/36" in received):
            try:
                received += os.read(leader, 65536)
            except BlockingIOError:
                time.sleep(0.05)
        shown = received.decode("utf-8", "replace")
    finally:
        stream.close()
        os.close(leader)
    assert "iteration 2/2" in shown and "12/36" in shown, shown
