"""The master's loop: hpbandster's ``Master.run`` and job callback, mended for the service.

:class:`ServiceMaster` is a mixin for an hpbandster optimizer (BOHB, HyperBand, RandomSearch).
What changes, and why:

* hpbandster's ``run`` takes the master's lock outside a ``with`` block and waits on it without a
  time limit: when a dispatcher thread died, or the process was asked to stop, it waited forever.
  Here the loop holds the lock in a ``with`` block and wakes every second to check that the
  dispatcher is alive and whether the run must stop (:class:`RunStopped` says why);
* jobs carry a **context** (the run's budgets, job name and seed) besides config and budget, so a
  worker learns the max budget its learning-rate schedule depends on;
* a **failed job** (loss ``None``, non-numeric or non-finite) counts as a loss of +inf, as
  hpbandster does for crashed jobs, and the results log writes it as ``null``;
* **fail fast**: when the first results of a run all failed and :data:`FAIL_FAST_AFTER` of them for
  the same setup reason (the configuration, the job, the data, the weights, the images: the
  user's input, not the training), the run stops with that reason instead of failing every job;
* jobs whose worker died run again (:mod:`hpo.dispatcher`); each lost attempt goes to
  ``attempt_logger`` and the final result's ``info`` says which attempt it came from;
* the master reports **progress** (iteration, jobs finished/running/queued, best loss);
* **checkpoints**: a job's context says which lower budget its configuration finished already
  (``previous_budget``: the job continues from that checkpoint), and after every step of the
  loop the :class:`~hpo.checkpoints.CheckpointKeeper` (when set) deletes the checkpoints of the
  configurations that can no longer be promoted.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import Counter
from typing import Callable, Optional

from hpbandster.core.result import Result

from hpo.checkpoints import CheckpointKeeper
from hpo.jobs import SETUP_REASONS, is_failure
from hpo.progress import ProgressCounts
from hpo.run_plan import brackets_of

#: Results failed for one setup reason, with none succeeded, after which a run stops.
FAIL_FAST_AFTER = 3


def first_unfinished(iterations: list, start: int = 0) -> int:
    """Index of the first iteration at or after ``start`` that has not finished (``len`` if none)."""
    while start < len(iterations) and iterations[start].is_finished:
        start += 1
    return start


class RunStopped(Exception):
    """The run cannot go on; the message is one line saying why."""


class ServiceMaster:
    """Mixin for an hpbandster ``Master`` subclass; call :meth:`_setup_service` after its ``__init__``."""

    stop_reason: Optional[str] = None
    attempt_logger: Optional[Callable] = None
    checkpoint_keeper: Optional[CheckpointKeeper] = None

    def _setup_service(self, job_context: dict, n_iterations: int, max_retries: int,
                       attempt_logger: Optional[Callable] = None) -> None:
        self.job_context = dict(job_context)
        self.progress = ProgressCounts(brackets=brackets_of(self, n_iterations),
                                       continuation="checkpoint_root" in self.job_context)
        self.setup_failures: Counter = Counter()
        self.dispatcher.max_retries = max_retries

        def attempt_lost(job, record: dict) -> None:
            self.progress.attempt_lost(retried=record["attempt"] <= self.dispatcher.max_retries)
            if attempt_logger is not None:
                attempt_logger(job, record)

        self.dispatcher.attempt_callback = attempt_lost

    # --- jobs in, results out -----------------------------------------------------------------

    def _submit_job(self, config_id, config, budget) -> None:
        context = self.job_context
        previous = self._previous_budget(config_id, budget)
        if previous is not None:
            context = {**context, "previous_budget": previous}
        self.progress.job_submitted(config_id, budget, self.iterations[config_id[0]].budgets, previous)
        with self.thread_cond:
            self.dispatcher.submit_job(config_id, config=config, budget=budget,
                                       working_directory=self.working_directory, context=context)
            self.num_running_jobs += 1

    def _previous_budget(self, config_id, budget) -> Optional[float]:
        """The highest budget below ``budget`` at which the configuration has a finite loss."""
        try:
            results = self.iterations[config_id[0]].data[config_id].results
        except (IndexError, KeyError, TypeError, AttributeError):
            return None
        done = [b for b, result in results.items()
                if b < budget and isinstance(result, dict) and not is_failure(result)]
        return max(done) if done else None

    def _tidy_checkpoints(self) -> None:
        """Delete the checkpoints of configurations that can no longer be promoted (never raises)."""
        if self.checkpoint_keeper is None:
            return
        try:
            # an iteration that finished is swept once more, then never again (a sweep of all is
            # O(configurations)): the next sweep starts at the first iteration unfinished before this one
            iterations = self.iterations
            start = self._scan_start("sweep")
            end = first_unfinished(iterations, start)
            self.checkpoint_keeper.sweep(iterations[start:])
            self._mark_scan("sweep", iterations, end)
        except Exception:  # housekeeping must never stop a run
            logging.getLogger("hpo.checkpoints").exception("checkpoint housekeeping failed")

    def job_callback(self, job) -> None:
        failed = is_failure(job.result)
        info = job.result.get("info") if isinstance(job.result, dict) else None
        if isinstance(info, dict):
            info["attempt"] = getattr(job, "attempt", 1)
            if getattr(job, "lost_attempts", None):
                info["lost_attempts"] = job.lost_attempts
        if failed and job.result is not None:
            job.result["loss"] = math.inf
        with self.progress.lock:
            self.progress.job_finished(job.id, job.kwargs["budget"], job.result)
            self._note_for_fail_fast(failed, info if isinstance(info, dict) else {})
        super().job_callback(job)

    def _note_for_fail_fast(self, failed: bool, info: dict) -> None:
        if not failed:
            self.setup_failures = None  # something worked: the setup is fine
            return
        if self.setup_failures is None or info.get("reason") not in SETUP_REASONS:
            return
        reason = info["reason"]
        self.setup_failures[reason] += 1
        if self.setup_failures[reason] >= FAIL_FAST_AFTER and self.stop_reason is None:
            self.stop_reason = (f"stopped: the first {self.progress.finished} jobs failed, "
                                f"{self.setup_failures[reason]} of them with reason '{reason}': "
                                f"{info.get('message', 'no message')}")

    def queue_snapshot(self) -> tuple[int, int]:
        """(running, queued) jobs right now."""
        return len(self.dispatcher.running_jobs), self.dispatcher.waiting_jobs.qsize()

    def active_iterations(self) -> list[int]:
        """hpbandster's list of the unfinished iterations' indices, without rescanning the finished
        ones at the front on every step of the loop (hpbandster's scans all: 0.3 ms at 450 iterations)."""
        iterations = self.iterations
        start = first_unfinished(iterations, self._scan_start("active"))
        self._mark_scan("active", iterations, start)
        return [i for i in range(start, len(iterations)) if not iterations[i].is_finished]

    def _scan_start(self, scan: str) -> int:
        """Where the scan named ``scan`` may start: where it last stopped, unless hpbandster has
        replaced its list of iterations since (then 0)."""
        scanned, index = vars(self).get("_scan_marks", {}).get(scan, (None, 0))
        return min(index, len(self.iterations)) if scanned is self.iterations else 0

    def _mark_scan(self, scan: str, iterations: list, index: int) -> None:
        """Note that the scan named ``scan`` of ``iterations`` may start at ``index`` next time."""
        vars(self).setdefault("_scan_marks", {})[scan] = (iterations, index)

    # --- the loop -----------------------------------------------------------------------------

    def _check_running(self) -> None:
        """Raise :class:`RunStopped` when the run must stop."""
        if self.stop_reason is not None:
            raise RunStopped(self.stop_reason)
        if not self.dispatcher_thread.is_alive() or not self.dispatcher.threads_alive():
            raise RunStopped("internal error: the dispatcher stopped (see the log above)")

    def wait_for_workers(self, min_n_workers: int = 1) -> None:
        with self.thread_cond:
            while self.dispatcher.number_of_workers() < min_n_workers:
                self._check_running()
                self.thread_cond.wait(1.0)
                self.dispatcher.trigger_discover_worker()

    def run(self, n_iterations: int = 1, min_n_workers: int = 1, iteration_kwargs: Optional[dict] = None):
        """hpbandster's loop (schedule the next run of the first active iteration, start a new
        iteration when none has one, wait for results), with the lock in a ``with`` block and a
        look every second at whether the run can go on. A KeyboardInterrupt leaves with
        ``jobs_in_flight`` set to the jobs it cut short."""
        try:
            return self._run(n_iterations, min_n_workers, iteration_kwargs)
        except KeyboardInterrupt as exc:
            exc.jobs_in_flight = len(self.dispatcher.running_jobs)
            raise

    def _run(self, n_iterations: int, min_n_workers: int, iteration_kwargs: Optional[dict]):
        self.progress.restore(self.iterations)  # a resumed run's replayed results
        self.wait_for_workers(min_n_workers)
        iteration_kwargs = {**(iteration_kwargs or {}), "result_logger": self.result_logger}
        if self.time_ref is None:
            self.time_ref = time.time()
            self.config["time_ref"] = self.time_ref
        with self.thread_cond:
            while True:
                self._check_running()
                self._tidy_checkpoints()
                if self.num_running_jobs >= self.job_queue_sizes[1]:
                    while self.num_running_jobs > self.job_queue_sizes[0]:
                        self.thread_cond.wait(1.0)
                        self._check_running()
                next_run = None
                for i in self.active_iterations():
                    next_run = self.iterations[i].get_next_run()
                    if next_run is not None:
                        break
                if next_run is not None:
                    self._submit_job(*next_run)
                    continue
                if n_iterations > 0:
                    self.iterations.append(self.get_next_iteration(len(self.iterations), iteration_kwargs))
                    n_iterations -= 1
                    continue
                if not self.active_iterations():
                    break
                self.thread_cond.wait(1.0)
        return Result([copy.deepcopy(i.data) for i in self.iterations], self.config)
