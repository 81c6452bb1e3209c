"""The master: runs BOHB (or a baseline) over a search space, logging every result as it arrives."""

from __future__ import annotations

import gc
import logging
import os
import random
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from hpo.attempts import AttemptsLog
from hpo.checkpoints import DEFAULT_KEEP, DEFAULT_SUBDIRECTORY, KEEP_POLICIES, CheckpointKeeper, root_problem
from hpo.dispatcher import DEFAULT_MAX_RETRIES
from hpo.errors import RunFailed, UserError
from hpo.heartbeat import Heartbeat
from hpo.master_loop import RunStopped
from hpo.names import check_run_id
from hpo.network import local_address_towards, wait_for_nameserver
from hpo.optimizers import OPTIMIZERS, budget_ladder, make_optimizer
from hpo.progress import Progress
from hpo.resume import restore_iterations, resume_summary, sampling_seed
from hpo.results import ResultsLog, package_versions, utc_now, write_configspace, write_run_metadata
from hpo.space import BudgetSettings, SearchSpace
from hpo.transport import Transport, check_listen_address, configure

if TYPE_CHECKING:
    from hpo.resume import RunToResume

logger = logging.getLogger("hpo.master")

#: Seconds the master waits for its dispatcher and workers to shut down at the end.
SHUTDOWN_TIMEOUT = 10.0


@dataclass
class MasterSettings:
    """How a master runs: where the nameserver is, where results go, the budgets."""

    run_id: str
    results_dir: str
    nameserver_host: str = "127.0.0.1"
    nameserver_port: int = 9090
    host: Optional[str] = None  # interface the dispatcher listens on; None: the one routing to the nameserver
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    optimizer: str = "bohb"
    min_workers: int = 1
    seed: Optional[int] = None  # None: the space's seed
    ping_interval: float = 10.0  # seconds between looks for new or dead workers
    nameserver_timeout: float = 120.0
    show_progress: bool = True
    max_retries: int = DEFAULT_MAX_RETRIES  # reruns of a job whose worker died
    transport: Transport = field(default_factory=Transport)
    checkpoints: bool = True  # False: jobs keep no checkpoints and train every budget from scratch
    checkpoint_dir: Optional[str] = None  # None: RESULTS/checkpoints; else DIR/<run id> (a shared file system)
    keep_checkpoints: str = DEFAULT_KEEP  # at the end of the run: best, all or none


def checkpoint_root(settings: MasterSettings) -> Optional[str]:
    """The absolute directory of the run's checkpoints (see :mod:`hpo.checkpoints`), or None."""
    if not settings.checkpoints:
        return None
    if settings.checkpoint_dir:
        return os.path.join(os.path.abspath(settings.checkpoint_dir), settings.run_id)
    return os.path.join(os.path.abspath(settings.results_dir), DEFAULT_SUBDIRECTORY)


@dataclass
class RunSummary:
    """What a finished run reports: its jobs, failures and incumbent (the best loss at the highest budget)."""

    run_id: str
    results_dir: str
    jobs: int
    failed: int
    best_loss: Optional[float]
    best_config_id: Optional[tuple]
    best_model: Optional[str] = None  # the kept checkpoint of the best configuration (--keep-checkpoints)
    best_budget: Optional[float] = None  # the budget ``best_loss`` was reached at

    def best_text(self) -> str:
        """``0.231 @ 9 epochs``, or ``-`` when no job succeeded."""
        if self.best_loss is None:
            return "-"
        return f"{self.best_loss:.4g}" + ("" if self.best_budget is None else f" @ {self.best_budget:g} epochs")

    def line(self) -> str:
        """``run ID finished: 17 jobs (0 failed), best loss 0.231 @ 9 epochs; results in DIR``."""
        return (f"run {self.run_id} finished: {self.jobs} jobs ({self.failed} failed), best loss {self.best_text()}; "
                f"results in {self.results_dir}")


def run_master(space: SearchSpace, settings: MasterSettings, resume: Optional["RunToResume"] = None) -> RunSummary:
    """Run the optimizer until its iterations are done, then shut the workers down.

    ``run.json`` says ``running`` from the start and gets the final status (``finished``,
    ``failed`` with a reason, ``interrupted``) however the run ends. With ``resume`` (see
    :mod:`hpo.resume`), the run in that directory continues and its log is appended to."""
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {settings.optimizer!r}")
    if settings.keep_checkpoints not in KEEP_POLICIES:
        raise UserError(f"--keep-checkpoints {settings.keep_checkpoints!r}: must be one of {', '.join(KEEP_POLICIES)}")
    check_run_id(settings.run_id, "run id")
    budget = settings.budget
    seed = space.seed if settings.seed is None else settings.seed
    configure(settings.transport)
    problem = root_problem(checkpoint_root(settings)) if resume is None and checkpoint_root(settings) else None
    if problem:
        flag = f"--checkpoint-dir {settings.checkpoint_dir}" if settings.checkpoint_dir else "--results"
        raise UserError(f"{flag}: checkpoints cannot be written there ({problem})")
    log = ResultsLog(settings.results_dir, resume=resume is not None)  # a new run refuses a used directory
    results_dir = str(Path(settings.results_dir))
    start = {"at": utc_now(), "kind": "resume" if resume else "start", "master_host": socket.gethostname(),
             "pid": os.getpid()}
    if resume is not None:
        earlier = resume.metadata.get("starts")
        earlier = [entry for entry in earlier if isinstance(entry, dict)] if isinstance(earlier, list) else []
        # a run.json without its starts (an older or edited one) was still started once before
        earlier = earlier or [{"at": resume.metadata.get("started_at"), "kind": "start"}]
        metadata = {**resume.metadata, "starts": [*earlier, start]}
        for stale in ("finished_at", "reason"):
            metadata.pop(stale, None)
    else:
        metadata = {
            "run_id": settings.run_id,
            "space_file": space.path,
            "space_name": space.name,
            "space": space.raw,
            "hyperparameters": space.describe(),
            "job": space.job,
            "optimizer": settings.optimizer,
            "min_budget": budget.min_budget,
            "max_budget": budget.max_budget,
            "eta": budget.eta,
            "iterations": budget.iterations,
            "budgets": budget_ladder(budget.min_budget, budget.max_budget, budget.eta),
            "min_workers": settings.min_workers,
            "max_retries": settings.max_retries,
            "seed": seed,
            "checkpoint_root": checkpoint_root(settings),
            "keep_checkpoints": settings.keep_checkpoints,
            "master_host": socket.gethostname(),
            "started_at": start["at"],
            "starts": [start],
            "versions": package_versions(),
        }
    # a resumed run's samplers must not draw the first start's configurations again
    start["sampling_seed"] = sampling_seed(seed, len(metadata["starts"]) - 1)
    metadata["status"] = "running"
    write_run_metadata(results_dir, metadata)
    write_configspace(results_dir, space.configspace)  # for DeepCAVE/CAVE, with configs.json and results.json
    heartbeat = Heartbeat(results_dir).start()  # lets hpo-report tell a dead master from a running one
    attempts = AttemptsLog(results_dir)

    try:
        wait_for_nameserver(settings.nameserver_host, settings.nameserver_port, settings.nameserver_timeout)
        host = settings.host or local_address_towards(settings.nameserver_host, settings.nameserver_port)
        check_listen_address(host, settings.transport)
    except BaseException as exc:
        heartbeat.stop()
        write_run_metadata(results_dir, {**metadata, "status": "failed", "finished_at": utc_now(),
                                         "reason": str(exc) if isinstance(exc, UserError) else type(exc).__name__})
        raise
    np.random.seed(start["sampling_seed"])
    random.seed(start["sampling_seed"])
    space.configspace.seed(start["sampling_seed"])
    job_context = {
        "run_id": settings.run_id,
        "job": space.job,
        "min_budget": budget.min_budget,
        "max_budget": budget.max_budget,
        "eta": budget.eta,
        "seed": seed,
    }
    # a resumed run keeps its checkpoints where they are (none for a run from before checkpoints)
    root = metadata.get("checkpoint_root")
    if root:
        job_context["checkpoint_root"] = root
    optimizer = make_optimizer(
        settings.optimizer,
        configspace=space.configspace,
        run_id=settings.run_id,
        nameserver=settings.nameserver_host,
        nameserver_port=settings.nameserver_port,
        host=host,
        min_budget=budget.min_budget,
        max_budget=budget.max_budget,
        eta=budget.eta,
        n_iterations=budget.iterations,
        result_logger=log,
        job_context=job_context,
        working_directory=os.path.join(os.path.abspath(results_dir), "work"),
        ping_interval=settings.ping_interval,
        max_retries=settings.max_retries,
        attempt_logger=attempts.record,
    )
    if root:
        optimizer.checkpoint_keeper = CheckpointKeeper(root, metadata.get("keep_checkpoints", DEFAULT_KEEP),
                                                       budget.max_budget)
    iterations_left = budget.iterations
    if resume is not None:
        for warning in resume.repairs:
            logger.warning(warning)
        replayed = restore_iterations(optimizer, resume)
        iterations_left = max(0, budget.iterations - len(optimizer.iterations))
        logger.info(resume_summary(resume, replayed, optimizer))
    progress = Progress(optimizer.progress, optimizer.queue_snapshot, lambda: len(optimizer.iterations),
                        interactive=None if settings.show_progress else False)
    logger.info(
        "run %s: %s over %s, budgets %s (eta %g), %d iterations, %d jobs; waiting for %d worker(s)",
        settings.run_id, settings.optimizer, space.path,
        ", ".join(f"{b:.3g}" for b in metadata["budgets"]), budget.eta, budget.iterations,
        optimizer.progress.total_jobs, settings.min_workers,
    )
    status, reason, result = "interrupted", None, None
    counts = optimizer.progress
    try:
        progress.start()
        _freeze_start_up_heap()
        result = optimizer.run(n_iterations=iterations_left, min_n_workers=settings.min_workers)
        status = "finished"
        if counts.finished and counts.failed == counts.finished:
            status, reason = "failed", f"every job failed ({counts.failed}); see hpo-report {results_dir}"
        best_model = _keep_checkpoints(optimizer)
        if best_model is not None:
            metadata["best_model"] = best_model
    except RunStopped as exc:
        status, reason = "failed", str(exc)
    finally:
        gc.unfreeze()  # a caller in this process (tests) gets its collector as it was
        progress.close()
        heartbeat.stop()
        final = {**metadata, "finished_at": utc_now(), "status": status, "jobs": counts.finished,
                 "failed_jobs": counts.failed, "lost_attempts": attempts.count}
        if reason:
            final["reason"] = reason
        try:
            log.close()  # every line on disk before the final status says so (lines sync in the background)
        except OSError as exc:
            logger.error("the results log could not be synced to disk (%s); its last lines may be lost", exc)
        write_run_metadata(results_dir, final)  # first: recorded even if the shutdown below hangs
        _shut_down(optimizer)
    if status == "failed":
        raise RunFailed(f"run {settings.run_id} {reason}" if reason.startswith("stopped") else
                        f"run {settings.run_id}: {reason}", exit_code=2 if reason.startswith("stopped") else 1)
    incumbent = result.get_incumbent_id()
    kept = metadata.get("best_model") or {}
    summary = RunSummary(settings.run_id, results_dir, counts.finished, counts.failed, counts.best_loss, incumbent,
                         kept.get("path") or kept.get("directory"), counts.best_budget)
    logger.info("%s", summary.line())
    return summary


def _freeze_start_up_heap() -> None:
    """Collect, then move everything alive (modules, the space, the optimizer: most of the master's
    heap) to the collector's permanent generation, so that its full collections during the run walk
    only what the run made (one 90 ms pause in a run of 3,000 results otherwise; BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()


def _keep_checkpoints(optimizer) -> Optional[dict]:
    """Apply the keep policy at the end of a run; the kept best model for ``run.json``, or None."""
    keeper = optimizer.checkpoint_keeper
    if keeper is None:
        return None
    try:
        best = keeper.finish(optimizer.iterations)
    except Exception:  # the run's results matter more than its housekeeping
        logger.exception("checkpoint housekeeping at the end of the run failed")
        return None
    if best is not None:
        logger.info("best model (config %s, loss %.4g at budget %g): %s", tuple(best["config_id"]), best["loss"],
                    best["budget"], best["path"] or best["directory"])
    return best


def _shut_down(optimizer, timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Shut the workers and the dispatcher down, waiting at most ``timeout`` seconds."""
    stopper = threading.Thread(target=optimizer.shutdown, kwargs={"shutdown_workers": True}, daemon=True,
                               name="hpo-master-shutdown")
    stopper.start()
    stopper.join(timeout)
    if stopper.is_alive():
        logger.warning("the dispatcher did not shut down within %g s; leaving it", timeout)


def with_overrides(budget: BudgetSettings, *, min_budget: Optional[float] = None, max_budget: Optional[float] = None,
                   eta: Optional[float] = None, iterations: Optional[int] = None) -> BudgetSettings:
    """The space's budget defaults with the command line's flags applied and checked."""
    changes = {k: v for k, v in {"min_budget": min_budget, "max_budget": max_budget, "eta": eta,
                                 "iterations": iterations}.items() if v is not None}
    return replace(budget, **changes).validate("command line") if changes else budget
