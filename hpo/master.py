"""The master: runs BOHB (or a baseline) over a search space, logging every result as it arrives."""

from __future__ import annotations

import logging
import os
import random
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from hpo.network import local_address_towards, wait_for_nameserver
from hpo.optimizers import OPTIMIZERS, budget_ladder, make_optimizer
from hpo.progress import Progress
from hpo.results import ResultsLog, package_versions, utc_now, write_run_metadata
from hpo.space import BudgetSettings, SearchSpace
from hpo.transport import Transport, check_listen_address, configure

logger = logging.getLogger("hpo.master")


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
    transport: Transport = field(default_factory=Transport)


@dataclass
class RunSummary:
    run_id: str
    results_dir: str
    jobs: int
    failed: int
    best_loss: Optional[float]
    best_config_id: Optional[tuple]


def run_master(space: SearchSpace, settings: MasterSettings) -> RunSummary:
    """Run the optimizer until its iterations are done, then shut the workers down."""
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {settings.optimizer!r}")
    budget = settings.budget
    seed = space.seed if settings.seed is None else settings.seed
    configure(settings.transport)
    log = ResultsLog(settings.results_dir)  # refuses a directory that already holds a run
    results_dir = str(Path(settings.results_dir))
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
        "seed": seed,
        "master_host": socket.gethostname(),
        "started_at": utc_now(),
        "versions": package_versions(),
    }
    write_run_metadata(results_dir, metadata)

    wait_for_nameserver(settings.nameserver_host, settings.nameserver_port, settings.nameserver_timeout)
    host = settings.host or local_address_towards(settings.nameserver_host, settings.nameserver_port)
    check_listen_address(host, settings.transport)
    np.random.seed(seed)
    random.seed(seed)
    space.configspace.seed(seed)
    job_context = {
        "run_id": settings.run_id,
        "job": space.job,
        "min_budget": budget.min_budget,
        "max_budget": budget.max_budget,
        "eta": budget.eta,
        "seed": seed,
    }
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
    )
    progress = Progress(optimizer.progress, optimizer.queue_snapshot, lambda: len(optimizer.iterations),
                        interactive=None if settings.show_progress else False)
    logger.info(
        "run %s: %s over %s, budgets %s (eta %g), %d iterations, %d jobs; waiting for %d worker(s)",
        settings.run_id, settings.optimizer, space.path,
        ", ".join(f"{b:.3g}" for b in metadata["budgets"]), budget.eta, budget.iterations,
        optimizer.progress.total_jobs, settings.min_workers,
    )
    status = "interrupted"
    try:
        progress.start()
        result = optimizer.run(n_iterations=budget.iterations, min_n_workers=settings.min_workers)
        status = "finished"
    finally:
        progress.close()
        optimizer.shutdown(shutdown_workers=True)
        write_run_metadata(results_dir, {**metadata, "finished_at": utc_now(), "status": status,
                                         "jobs": optimizer.progress.finished,
                                         "failed_jobs": optimizer.progress.failed})
    incumbent = result.get_incumbent_id()
    counts = optimizer.progress
    logger.info("run %s finished: %d jobs (%d failed), best loss %s; results in %s", settings.run_id,
                counts.finished, counts.failed, "-" if counts.best_loss is None else f"{counts.best_loss:.4g}",
                results_dir)
    return RunSummary(settings.run_id, results_dir, counts.finished, counts.failed, counts.best_loss, incumbent)


def with_overrides(budget: BudgetSettings, *, min_budget: Optional[float] = None, max_budget: Optional[float] = None,
                   eta: Optional[float] = None, iterations: Optional[int] = None) -> BudgetSettings:
    """The space's budget defaults with the command line's flags applied and checked."""
    changes = {k: v for k, v in {"min_budget": min_budget, "max_budget": max_budget, "eta": eta,
                                 "iterations": iterations}.items() if v is not None}
    return replace(budget, **changes).validate("command line") if changes else budget
