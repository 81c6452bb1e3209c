"""What a run will train: hpbandster's successive-halving brackets, in jobs and in epochs.

An iteration of BOHB (or Hyperband) is one bracket of successive halving: ``n_0`` configurations
at the smallest budget of the bracket, the best ``n_1`` of them at the next budget, and so on.
The brackets are hpbandster's own (its optimizers' ``get_next_iteration``), so the plan is
the schedule the master runs, not a copy of its formula.

A budget is trained as :func:`epochs_for_budget` whole epochs (as the jobs round it). With
**continuation** (checkpoints on, the default) a configuration promoted from budget ``b_k`` to
``b_{k+1}`` trains only the missing ``e(b_{k+1}) - e(b_k)`` epochs; from scratch it trains all
``e(b_{k+1})``. The plan counts what will actually be trained, so budgets 1, 3, 9 (eta 3) cost
21 epochs per first bracket with continuation and 27 without. It is a plan: a promoted
configuration whose previous budget failed, or whose checkpoint is lost, trains from scratch
(the master adds those epochs to the total when it submits such a job).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterable, Optional, Sequence

import numpy as np


def epochs_for_budget(budget: float) -> int:
    """Whole epochs a job trains for ``budget``: rounded half up, at least 1 (as the jobs do)."""
    if not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"budget {budget}: must be a positive number of epochs")
    return max(1, int(math.floor(budget + 0.5)))


def job_epochs(budget: float, continued_from: Optional[float] = None) -> int:
    """Epochs a job at ``budget`` trains: all of them, or those missing after the budget
    ``continued_from`` whose checkpoint it continues."""
    total = epochs_for_budget(budget)
    if continued_from is None:
        return total
    return max(0, total - epochs_for_budget(continued_from))


@dataclass(frozen=True)
class Bracket:
    """One successive-halving iteration: ``num_configs[k]`` jobs at ``budgets[k]``."""

    iteration: int
    num_configs: tuple[int, ...]
    budgets: tuple[float, ...]

    @property
    def jobs(self) -> int:
        """Jobs the bracket runs, all stages together."""
        return sum(self.num_configs)

    def stage_epochs(self, continuation: bool = True) -> list[int]:
        """Epochs trained at each stage (all its jobs together)."""
        return [n * job_epochs(budget, self.budgets[k - 1] if continuation and k else None)
                for k, (n, budget) in enumerate(zip(self.num_configs, self.budgets))]

    def epochs(self, continuation: bool = True) -> int:
        """Epochs the bracket trains in all, with or without continuation."""
        return sum(self.stage_epochs(continuation))


def bracket_of(iteration: int, num_configs: Sequence, budgets: Sequence) -> Bracket:
    """A :class:`Bracket` from an hpbandster iteration's ``num_configs`` and ``budgets``."""
    return Bracket(iteration, tuple(int(n) for n in num_configs), tuple(float(b) for b in budgets))


def brackets_of(optimizer: Any, iterations: int) -> list[Bracket]:
    """The brackets of an hpbandster optimizer's first ``iterations`` iterations."""
    found = []
    for i in range(iterations):
        sh = optimizer.get_next_iteration(i, {})
        found.append(bracket_of(i, sh.num_configs, sh.budgets))
    return found


def _stand_in(min_budget: float, max_budget: float, eta: float) -> SimpleNamespace:
    """What hpbandster's optimizers' ``get_next_iteration`` reads of ``self``, set as their
    ``__init__`` sets it (no nameserver, no dispatcher)."""
    max_sh_iter = -int(np.log(min_budget / max_budget) / np.log(eta)) + 1
    budgets = max_budget * np.power(eta, -np.linspace(max_sh_iter - 1, 0, max_sh_iter))
    return SimpleNamespace(
        eta=eta, min_budget=min_budget, max_budget=max_budget, max_SH_iter=max_sh_iter, budgets=budgets,
        budget_per_iteration=sum(b * eta ** i for i, b in enumerate(budgets[::-1])),
        config_generator=SimpleNamespace(get_config=None),
    )


def plan_brackets(optimizer: str, min_budget: float, max_budget: float, eta: float,
                  iterations: int) -> list[Bracket]:
    """The brackets ``iterations`` iterations of ``optimizer`` (bohb, hyperband, randomsearch) run."""
    from hpbandster.optimizers import BOHB, HyperBand, RandomSearch

    cls = {"bohb": BOHB, "hyperband": HyperBand, "randomsearch": RandomSearch}[optimizer]
    return brackets_of(_Planner(cls, _stand_in(min_budget, max_budget, eta)), iterations)


class _Planner:
    """An optimizer class's ``get_next_iteration`` bound to a stand-in for its instance."""

    def __init__(self, cls: type, stand_in: SimpleNamespace) -> None:
        self.cls, self.stand_in = cls, stand_in

    def get_next_iteration(self, iteration: int, kwargs: dict) -> Any:
        """The class's successive-halving iteration ``iteration`` (an hpbandster ``SuccessiveHalving``)."""
        return self.cls.get_next_iteration(self.stand_in, iteration, kwargs)


def total_jobs(brackets: Iterable[Bracket]) -> int:
    """Jobs the brackets run in all."""
    return sum(b.jobs for b in brackets)


def total_epochs(brackets: Iterable[Bracket], continuation: bool = True) -> int:
    """Epochs the brackets train in all, with or without continuation."""
    return sum(b.epochs(continuation) for b in brackets)
