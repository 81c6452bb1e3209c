"""The master's live progress: counts in epochs, shown as a tqdm bar on a terminal, log lines otherwise.

The bar counts **epochs**, not jobs: jobs run 1 to 27 epochs, so an ETA from jobs is wrong by
that factor. Its total is the epochs the run's iterations plan (:mod:`hpo.run_plan`: hpbandster's
brackets, a promoted configuration counted for the epochs it trains when it continues from its
checkpoint). A finished job adds the epochs it was planned to train (failed ones too: their
share of the plan is done), so the bar ends at its total. The best loss shown is the incumbent
as ``hpo-report`` defines it: the best loss at the highest budget reached so far, with its budget.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TextIO

from hpo.jobs import is_failure
from hpo import run_plan
from hpo.run_plan import Bracket, job_epochs

logger = logging.getLogger("hpo.progress")


class ProgressCounts:
    """Thread-safe counts of a run the progress display reads (jobs, epochs, failures, retries,
    incumbent). ``brackets``: the run's plan; ``continuation``: promoted jobs continue from
    checkpoints (else every job trains its whole budget)."""

    def __init__(self, brackets: Sequence[Bracket] = (), continuation: bool = True) -> None:
        self.brackets = list(brackets)
        self.continuation = continuation
        self.total_jobs = run_plan.total_jobs(self.brackets)
        self.iterations = len(self.brackets)
        self.total_epochs = run_plan.total_epochs(self.brackets, continuation)
        self.finished = 0
        self.failed = 0
        self.retries = 0  # lost attempts run again
        self.epochs_done = 0  # the planned epochs of the finished jobs
        self.best_loss: Optional[float] = None
        self.best_budget: Optional[float] = None
        self.lock = threading.RLock()
        self._job_epochs: dict[tuple, int] = {}

    def planned_epochs(self, budget: float, stage_budgets: Sequence[float],
                       continued_from: Optional[float]) -> tuple[int, int]:
        """(epochs this job trains, epochs the plan counted for its place in the bracket)."""
        budgets = [float(b) for b in stage_budgets]
        stage = budgets.index(float(budget)) if float(budget) in budgets else 0
        plan_from = budgets[stage - 1] if self.continuation and stage > 0 else None
        actual_from = continued_from if self.continuation else None
        return job_epochs(budget, actual_from), job_epochs(budget, plan_from)

    def job_submitted(self, config_id: Any, budget: float, stage_budgets: Sequence[float],
                      continued_from: Optional[float]) -> None:
        """Note what a job will train; a promoted job without a checkpoint to continue (its previous
        budget failed) trains more than the plan said, and the total grows by the difference."""
        actual, planned = self.planned_epochs(budget, stage_budgets, continued_from)
        with self.lock:
            self._job_epochs[(tuple(config_id), float(budget))] = actual
            self.total_epochs += actual - planned

    def job_finished(self, config_id: Any, budget: float, result: Optional[Mapping]) -> bool:
        """Count a finished job (its epochs, a failure, the incumbent); True when it failed."""
        failed = is_failure(result)
        key = (tuple(config_id), float(budget))
        with self.lock:
            self.finished += 1
            self.epochs_done += self._job_epochs.pop(key, job_epochs(budget))
            if failed:
                self.failed += 1
            else:
                self._note_loss(float(budget), float(result["loss"]))
        return failed

    def _note_loss(self, budget: float, loss: float) -> None:
        if self.best_budget is None or budget > self.best_budget:
            self.best_budget, self.best_loss = budget, loss
        elif budget == self.best_budget and loss < self.best_loss:
            self.best_loss = loss

    def restore(self, iterations: Iterable) -> None:
        """Count again from hpbandster iterations replayed from a log (a resumed run)."""
        with self.lock:
            self.finished = self.failed = self.epochs_done = 0
            self.best_loss = self.best_budget = None
            for iteration in iterations:
                for datum in iteration.data.values():
                    done = []
                    for budget in sorted(datum.results):
                        result = datum.results[budget]
                        previous = max(done) if done and self.continuation else None
                        self.finished += 1
                        self.epochs_done += job_epochs(budget, previous)
                        if is_failure(result):
                            self.failed += 1
                        else:
                            done.append(budget)
                            self._note_loss(float(budget), float(result["loss"]))

    def attempt_lost(self, retried: bool) -> None:
        """Note an attempt lost with its worker; counted as a retry when it runs again."""
        if retried:
            with self.lock:
                self.retries += 1

    def best_text(self) -> str:
        """``0.231 @ 9 ep``, or ``-`` before the first successful job."""
        if self.best_loss is None:
            return "-"
        return f"{self.best_loss:.4g} @ {self.best_budget:.3g} ep"


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Shows iteration, epochs and jobs done, failures and retries, the incumbent, elapsed time and ETA."""

    def __init__(self, counts: ProgressCounts, snapshot: Callable[[], tuple[int, int]],
                 current_iteration: Callable[[], int], stream: Optional[TextIO] = None,
                 interactive: Optional[bool] = None) -> None:
        self.counts = counts
        self.snapshot = snapshot
        self.current_iteration = current_iteration
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.started = time.monotonic()
        with counts.lock:
            self.epochs_at_start = counts.epochs_done  # a resumed run's ETA counts this session's pace
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._bar = None
        self._redirect = None
        self._last_finished = -1

    def eta_seconds(self, now: Optional[float] = None) -> Optional[float]:
        """Seconds left at this session's pace in epochs, or None before the first epochs are done."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        with self.counts.lock:
            done, total = self.counts.epochs_done, self.counts.total_epochs
        pace = done - self.epochs_at_start
        if pace <= 0 or elapsed <= 0:
            return None
        return max(0, total - done) * elapsed / pace

    def _troubles(self) -> list[str]:
        """``["1 failed", "2 retried"]``: the failures and retries there are (call with the counts' lock)."""
        c = self.counts
        return [f"{count} {what}" for count, what in ((c.failed, "failed"), (c.retries, "retried")) if count]

    def _status(self) -> str:
        running, queued = self.snapshot()
        c = self.counts
        with c.lock:
            troubles = self._troubles()
            trouble_text = f" ({', '.join(troubles)})" if troubles else ""
            jobs = f"jobs {c.finished}/{c.total_jobs} finished{trouble_text}"
            return f"{jobs}, {running} running, {queued} queued | best loss {c.best_text()}"

    def _bar_postfix(self) -> str:
        running, queued = self.snapshot()
        c = self.counts
        with c.lock:
            troubles = "".join(f", {text}" for text in self._troubles())
            return f"best {c.best_text()} | jobs {c.finished}/{c.total_jobs}{troubles}, {running} running, {queued} queued"

    def line(self) -> str:
        """The progress as one log line (what a non-terminal gets each time a job finishes)."""
        c = self.counts
        with c.lock:
            epochs = f"epochs {c.epochs_done}/{c.total_epochs}"
        eta = self.eta_seconds()
        return (f"iteration {max(self.current_iteration(), 1)}/{c.iterations} | {self._status()} | {epochs} | "
                f"elapsed {_format_seconds(time.monotonic() - self.started)} | "
                f"eta {'-' if eta is None else _format_seconds(eta)}")

    def start(self) -> "Progress":
        """Show the bar (on a terminal) or log lines, refreshed every second until :meth:`close`."""
        if self.interactive:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
            self._redirect.__enter__()
            # sizes given, so tqdm does not ask the terminal: one reporting 0 x 0 (a pty nobody sized)
            # made it -1 rows, and tqdm hides a bar whose row is not above the last row: nothing showed
            size = shutil.get_terminal_size((100, 24))
            self._bar = tqdm(total=self.counts.total_epochs, initial=self.epochs_at_start, file=self.stream,
                             unit="ep", ncols=max(size.columns, 60), nrows=max(size.lines, 2))
        self._thread = threading.Thread(target=self._loop, name="hpo-progress", daemon=True)
        self._thread.start()
        return self

    def update(self) -> None:
        """Refresh now (the display also refreshes by itself every second)."""
        with self.counts.lock:
            finished, done, total = self.counts.finished, self.counts.epochs_done, self.counts.total_epochs
        if self._bar is not None:
            self._bar.set_description_str(f"iteration {max(self.current_iteration(), 1)}/{self.counts.iterations}")
            self._bar.set_postfix_str(self._bar_postfix())
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()
        elif finished != self._last_finished:
            logger.info(self.line())
        self._last_finished = finished

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.update()

    def close(self) -> None:
        """Stop refreshing, show the final counts once more and give the terminal back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.update()
        if self._bar is not None:
            self._bar.close()
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
