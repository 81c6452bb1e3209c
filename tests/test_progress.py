"""The master's progress display."""

from __future__ import annotations

import io
import logging

from hpo.master_loop import ProgressCounts
from hpo.progress import Progress


def make(interactive: bool, stream=None):
    counts = ProgressCounts(total_jobs=20, iterations=3)
    counts.finished, counts.failed, counts.best_loss = 7, 1, 0.4321
    return Progress(counts, snapshot=lambda: (2, 3), current_iteration=lambda: 2, stream=stream,
                    interactive=interactive)


def test_line_holds_iteration_jobs_best_and_elapsed():
    line = make(False).line()
    assert line.startswith("iteration 2/3 | jobs 7/20 finished (1 failed), 2 running, 3 queued | best loss 0.4321")
    assert "elapsed 0:00:0" in line


def test_terminal_gets_a_live_bar():
    stream = io.StringIO()
    progress = make(True, stream).start()
    progress.close()
    text = stream.getvalue()
    assert "iteration 2/3" in text and "7/20" in text and "2 running, 3 queued, best loss 0.4321" in text


def test_plain_log_lines_otherwise(caplog):
    with caplog.at_level(logging.INFO, logger="hpo.progress"):
        progress = make(False, io.StringIO()).start()
        progress.close()
    assert any("jobs 7/20 finished" in r.getMessage() for r in caplog.records)
