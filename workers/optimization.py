"""Optimizers, the learning-rate schedule, and how a budget becomes a number of epochs.

The budget is in epochs. A fractional budget trains ``floor(budget + 0.5)`` epochs, at least one
(3.33 -> 3, 10 -> 10, 11.1 -> 11, 30 -> 30). The learning-rate schedule is a function of the
epoch and of the run's **max** budget, never of the job's own budget, so a job with budget ``b``
trains exactly the first ``b`` epochs of a max-budget job (same seed, same learning rates).

``lr_schedule``: ``cosine`` (default; cosine decay from ``lr`` towards 0 over the max-budget
epochs, updated per epoch), ``constant``, or ``step`` (multiply by ``lr_gamma``, default 0.1,
every ``lr_step_size`` epochs, default a third of the max-budget epochs).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import torch

from workers.errors import JobSetupError

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("cosine", "constant", "step")


def epochs_for_budget(budget: float) -> int:
    """Whole epochs trained for ``budget``: rounded half up, at least 1."""
    if not math.isfinite(budget) or budget <= 0:
        raise JobSetupError(f"budget {budget}: must be a positive number of epochs")
    return max(1, int(math.floor(budget + 0.5)))


def lr_factor(
    kind: str, epoch: int, max_epochs: int, step_size: Optional[int] = None, gamma: float = 0.1
) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based) of a ``max_epochs`` schedule."""
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, max_epochs) / max_epochs))
    if kind == "step":
        step = step_size or max(1, max_epochs // 3)
        return gamma ** (epoch // step)
    raise JobSetupError(f"lr_schedule {kind!r}: must be one of {', '.join(LR_SCHEDULES)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, max_epochs: int, step_size: Optional[int] = None, gamma: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch scheduler following :func:`lr_factor` (call ``step()`` after each epoch)."""
    lr_factor(kind, 0, max_epochs, step_size, gamma)  # validate before building
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: lr_factor(kind, epoch, max_epochs, step_size, gamma)
    )


def build_optimizer(
    name: str,
    params: Iterable[Union[torch.nn.Parameter, dict]],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``, optionally Nesterov), ``adam`` or ``adamw``. ``params``: parameters,
    or parameter groups with their own ``lr`` (:func:`workers.regimes.parameter_groups`)."""
    if not lr > 0:
        raise JobSetupError(f"lr {lr}: must be positive")
    if weight_decay < 0:
        raise JobSetupError(f"weight_decay {weight_decay}: must not be negative")
    params = list(params)
    if name == "sgd":
        if nesterov and momentum <= 0:
            raise JobSetupError("nesterov: needs a positive momentum")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise JobSetupError(f"optimizer {name!r}: must be one of {', '.join(OPTIMIZERS)}")
