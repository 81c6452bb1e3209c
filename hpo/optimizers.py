"""hpbandster's optimizers (BOHB, HyperBand, RandomSearch), adapted at their seams for the service.

What changes, and where:

* the dispatcher binds each result to its dispatch and survives failed calls:
  :mod:`hpo.dispatcher`; Pyro4 itself (TLS, limits, numpy values) is set up by :mod:`hpo.transport`;
* the master's loop, job callback, fail-fast and progress counts: :mod:`hpo.master_loop`;
* BOHB's config generator also models **ordinal** hyperparameters (hpbandster 0.7.4 refuses
  them): as ordered discrete variables of its KDE;
* BOHB's config generator draws and scores its candidates vectorised
  (:class:`hpo.sampling.VectorizedBOHB`, same distribution; timings in BENCHMARKS.md): the master
  proposes configurations while it holds its lock;
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import ConfigSpace as CS
import numpy as np
from hpbandster.optimizers import BOHB, HyperBand, RandomSearch

from hpo.dispatcher import DEFAULT_MAX_RETRIES, ServiceDispatcher, dispatcher_class
from hpo.master_loop import ServiceMaster
from hpo.sampling import VectorizedBOHB


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


def _install_generator(optimizer, cls: type) -> None:
    """Replace the BOHB config generator hpbandster built by one of class ``cls`` with the same
    settings (before any iteration binds its ``get_config``)."""
    built = optimizer.config_generator
    if type(built) is cls:
        return
    optimizer.config_generator = cls(
        configspace=built.configspace, min_points_in_model=built.min_points_in_model,
        top_n_percent=built.top_n_percent, num_samples=built.num_samples,
        random_fraction=built.random_fraction, bandwidth_factor=built.bw_factor,
        min_bandwidth=built.min_bandwidth, logger=built.logger)


class ServiceBOHB(ServiceMaster, BOHB):
    #: the config generator class; hpbandster's own (``hpbandster.optimizers.config_generators.bohb
    #: .BOHB``) gives its original, slower sampling (benchmarks/bench_master.py --sampler hpbandster)
    config_generator_class: type = VectorizedBOHB

    def __init__(self, configspace: CS.ConfigurationSpace, **kwargs) -> None:
        super().__init__(configspace=_OrdinalsAsCategoricals(configspace), **kwargs)
        _install_generator(self, self.config_generator_class)
        _model_ordinals(self.config_generator, configspace)


class ServiceHyperBand(ServiceMaster, HyperBand):
    pass


class ServiceRandomSearch(ServiceMaster, RandomSearch):
    pass


OPTIMIZERS = {"bohb": ServiceBOHB, "hyperband": ServiceHyperBand, "randomsearch": ServiceRandomSearch}


def make_optimizer(name: str, *, configspace, run_id: str, nameserver: str, nameserver_port: int, host: str,
                   min_budget: float, max_budget: float, eta: float, n_iterations: int, result_logger,
                   job_context: dict, working_directory: str, ping_interval: float = 10,
                   max_retries: int = DEFAULT_MAX_RETRIES, attempt_logger=None,
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
    optimizer._setup_service(job_context, n_iterations, max_retries, attempt_logger)
    return optimizer


def budget_ladder(min_budget: float, max_budget: float, eta: float) -> list[float]:
    """The budgets successive halving uses, computed as hpbandster's optimizers do."""
    stages = -int(math.log(min_budget / max_budget) / math.log(eta)) + 1
    return [max_budget * eta ** (-k) for k in range(stages - 1, -1, -1)]
