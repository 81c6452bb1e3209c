"""Optimizers, and how a budget becomes a number of epochs (the schedules: :mod:`workers.schedules`).

The budget is in epochs. A fractional budget trains ``floor(budget + 0.5)`` epochs, at least one
(3.33 -> 3, 10 -> 10, 11.1 -> 11, 30 -> 30).
"""

from __future__ import annotations

import math
from typing import Iterable, Union

import torch

from workers.errors import JobSetupError

OPTIMIZERS = ("sgd", "adam", "adamw")


def epochs_for_budget(budget: float) -> int:
    """Whole epochs trained for ``budget``: rounded half up, at least 1."""
    if not math.isfinite(budget) or budget <= 0:
        raise JobSetupError(f"budget {budget}: must be a positive number of epochs")
    return max(1, int(math.floor(budget + 0.5)))


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
