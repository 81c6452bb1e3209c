"""hpbandster's optimizers (BOHB, HyperBand, RandomSearch), adapted at their seams for the service.

What changes, and where:

* the dispatcher binds each result to its dispatch and survives failed calls:
  :mod:`hpo.dispatcher`; Pyro4 itself (TLS, limits, numpy values) is set up by :mod:`hpo.transport`;
* jobs carry a **context** (the run's budgets, job name and seed) besides config and budget, so
  a worker learns the max budget its learning-rate schedule depends on;
* a **failed job** (loss ``None``, non-numeric or non-finite) counts as a loss of +inf, as
  hpbandster does for crashed jobs, and the results log writes it as ``null``;
* BOHB's config generator also models **ordinal** hyperparameters (hpbandster 0.7.4 refuses
  them): as ordered discrete variables of its KDE;
* the master reports **progress** (iteration, jobs finished/running/queued, best loss).
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Optional

import ConfigSpace as CS
import numpy as np
from hpbandster.optimizers import BOHB, HyperBand, RandomSearch

from hpo.dispatcher import ServiceDispatcher, dispatcher_class
from hpo.jobs import is_failure

class ProgressCounts:
    """Thread-safe counters the progress display reads."""

    def __init__(self, total_jobs: int, iterations: int) -> None:
        self.total_jobs = total_jobs
        self.iterations = iterations
        self.finished = 0
        self.failed = 0
        self.best_loss: Optional[float] = None
        self.lock = threading.Lock()


class _ServiceMaster:
    """Mixin for an hpbandster ``Master`` subclass; call :meth:`_setup_service` after its ``__init__``."""

    def _setup_service(self, job_context: dict, n_iterations: int) -> None:
        self.job_context = dict(job_context)
        total = sum(sum(self.get_next_iteration(i, {}).num_configs) for i in range(n_iterations))
        self.progress = ProgressCounts(total_jobs=total, iterations=n_iterations)

    def _submit_job(self, config_id, config, budget) -> None:
        with self.thread_cond:
            self.dispatcher.submit_job(
                config_id,
                config=config,
                budget=budget,
                working_directory=self.working_directory,
                context=self.job_context,
            )
            self.num_running_jobs += 1

    def job_callback(self, job) -> None:
        failed = is_failure(job.result)
        if failed and job.result is not None:
            job.result["loss"] = math.inf
        with self.progress.lock:
            self.progress.finished += 1
            if failed:
                self.progress.failed += 1
            elif self.progress.best_loss is None or job.result["loss"] < self.progress.best_loss:
                self.progress.best_loss = job.result["loss"]
        super().job_callback(job)

    def run(self, n_iterations: int = 1, min_n_workers: int = 1, iteration_kwargs: Optional[dict] = None):
        try:
            return super().run(n_iterations=n_iterations, min_n_workers=min_n_workers,
                               iteration_kwargs=dict(iteration_kwargs or {}))
        except BaseException:
            # hpbandster's run() holds thread_cond outside a `with`; let go of it on Ctrl-C so the
            # dispatcher's callbacks do not block while the run shuts down.
            try:
                self.thread_cond.release()
            except RuntimeError:
                pass
            raise

    def queue_snapshot(self) -> tuple[int, int]:
        """(running, queued) jobs right now."""
        return len(self.dispatcher.running_jobs), self.dispatcher.waiting_jobs.qsize()


class _OrdinalsAsCategoricals:
    """The view of a space hpbandster's BOHB config generator gets while it is built: it refuses
    ordinals there; :func:`_model_ordinals` then gives it the real space and the right KDE types."""

    def __init__(self, configspace: CS.ConfigurationSpace) -> None:
        self.configspace = configspace

    def get_hyperparameters(self) -> list:
        return [CS.CategoricalHyperparameter(h.name, list(h.sequence)) if isinstance(h, CS.OrdinalHyperparameter)
                else h for h in self.configspace.values()]


def kde_variable_types(configspace: CS.ConfigurationSpace) -> tuple[str, np.ndarray]:
    """statsmodels KDE variable types (c: continuous, u: unordered, o: ordered) and level counts."""
    kinds, levels = "", []
    for h in configspace.values():
        if isinstance(h, CS.OrdinalHyperparameter):
            kinds += "o"
            levels.append(len(h.sequence))
        elif isinstance(h, CS.CategoricalHyperparameter):
            kinds += "u"
            levels.append(len(h.choices))
        else:
            kinds += "c"
            levels.append(0)
    return kinds, np.array(levels, dtype=int)


def _model_ordinals(generator, configspace: CS.ConfigurationSpace) -> None:
    generator.configspace = configspace
    generator.kde_vartypes, generator.vartypes = kde_variable_types(configspace)


class ServiceBOHB(_ServiceMaster, BOHB):
    def __init__(self, configspace: CS.ConfigurationSpace, **kwargs) -> None:
        super().__init__(configspace=_OrdinalsAsCategoricals(configspace), **kwargs)
        _model_ordinals(self.config_generator, configspace)


class ServiceHyperBand(_ServiceMaster, HyperBand):
    pass


class ServiceRandomSearch(_ServiceMaster, RandomSearch):
    pass


OPTIMIZERS = {"bohb": ServiceBOHB, "hyperband": ServiceHyperBand, "randomsearch": ServiceRandomSearch}


def make_optimizer(name: str, *, configspace, run_id: str, nameserver: str, nameserver_port: int, host: str,
                   min_budget: float, max_budget: float, eta: float, n_iterations: int, result_logger,
                   job_context: dict, working_directory: str, ping_interval: float = 10,
                   logger: Optional[logging.Logger] = None):
    """Build the optimizer ``name`` (bohb, hyperband, randomsearch), ready to ``run``."""
    cls = OPTIMIZERS[name]
    with dispatcher_class(ServiceDispatcher):
        optimizer = cls(
            configspace=configspace,
            run_id=run_id,
            nameserver=nameserver,
            nameserver_port=nameserver_port,
            host=host,
            min_budget=min_budget,
            max_budget=max_budget,
            eta=eta,
            result_logger=result_logger,
            working_directory=working_directory,
            ping_interval=ping_interval,
            logger=logger or logging.getLogger("hpo.master.hpbandster"),
        )
    optimizer._setup_service(job_context, n_iterations)
    return optimizer


def budget_ladder(min_budget: float, max_budget: float, eta: float) -> list[float]:
    """The budgets successive halving uses, computed as hpbandster's optimizers do."""
    stages = -int(math.log(min_budget / max_budget) / math.log(eta)) + 1
    return [max_budget * eta ** (-k) for k in range(stages - 1, -1, -1)]
