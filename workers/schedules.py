"""Learning-rate schedules, per epoch, with an optional linear warm-up.

Every schedule is a function of the epoch and of the run's **max** budget (in epochs), or of the
validation history (``plateau``), never of the job's own budget: a job with budget ``b`` trains
exactly the first ``b`` epochs of the max-budget job, and a job continued from a checkpoint (which
saves :meth:`EpochSchedule.state_dict`) trains exactly as one from scratch.

Epochs are counted from 0 here (``i``: the ``i + 1``-th epoch) and the rate of an epoch is fixed
when it starts. The rate of every parameter group is its own base rate (``lr``, or ``lr`` times a
scale for a group that has one) times ``warmup(i) * schedule(i)``:

- ``constant``: ``schedule(i) = 1``.
- ``step``: ``lr_gamma ** (i // lr_step_size)``: multiplied by ``lr_gamma`` after every
  ``lr_step_size`` epochs (torch's ``StepLR``).
- ``multistep``: ``lr_gamma ** (number of milestones m <= i)``: multiplied by ``lr_gamma`` after
  ``m`` epochs for each of the increasing ``lr_milestones`` (torch's ``MultiStepLR``).
- ``cosine`` (default): ``0.5 * (1 + cos(pi * min(i, E) / E))``, ``E`` the max budget's epochs:
  from ``lr`` towards 0 at the max budget.
- ``plateau``: torch's ``ReduceLROnPlateau`` on the validation objective (``val_loss`` or
  ``val_error``, lower is better) with its defaults (relative threshold 1e-4, no cooldown):
  multiplied by ``lr_factor`` (default 0.1) once the objective has not improved for more than
  ``lr_patience`` epochs (default 2). It watches the epochs after the warm-up only.
- ``warmup_epochs`` ``W`` (default 0): ``warmup(i) = (i + 1) / (W + 1)`` for ``i < W``, else 1.
  With ``W = 4`` the first five epochs train at 0.2, 0.4, 0.6, 0.8 and 1 times the scheduled rate;
  step sizes, milestones and the cosine count their epochs from the start of training, not from
  the end of the warm-up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from workers.errors import JobSetupError

LR_SCHEDULES = ("cosine", "constant", "step", "multistep", "plateau")


@dataclass(frozen=True)
class ScheduleSpec:
    """A checked schedule: its kind, the max budget's epochs and the keys its kind reads."""

    kind: str = "cosine"
    max_epochs: int = 1
    step_size: Optional[int] = None
    gamma: float = 0.1
    milestones: tuple[int, ...] = ()
    factor: float = 0.1
    patience: int = 2
    warmup_epochs: int = 0


def parse_milestones(value: Any) -> tuple[int, ...]:
    """``lr_milestones`` as a tuple of epochs: a list, or a string such as ``"10, 20"`` or ``"[10, 20]"``
    (a YAML constant is a string or a number)."""
    if value is None:
        return ()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        items: Sequence[Any] = [value]
    elif isinstance(value, str):
        text = value.strip().strip("[]()").strip()
        items = [item for item in re.split(r"[,\s]+", text) if item] if text else []
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise JobSetupError(f"lr_milestones {value!r}: expected epochs such as 10,20")
    epochs = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number != int(number):
            raise JobSetupError(f"lr_milestones {value!r}: {item!r} is not a whole number of epochs")
        epochs.append(int(number))
    return tuple(epochs)


def make_spec(
    kind: str,
    max_epochs: int,
    *,
    step_size: Optional[int] = None,
    gamma: float = 0.1,
    milestones: Any = None,
    factor: float = 0.1,
    patience: int = 2,
    warmup_epochs: int = 0,
) -> ScheduleSpec:
    """Check the schedule's keys (one line naming the bad key) and return them as a :class:`ScheduleSpec`."""
    if kind not in LR_SCHEDULES:
        raise JobSetupError(f"lr_schedule {kind!r}: must be one of {', '.join(LR_SCHEDULES)}")
    if max_epochs < 1:
        raise JobSetupError(f"max budget of {max_epochs} epochs: must be at least 1")
    if warmup_epochs is None or warmup_epochs < 0:
        raise JobSetupError(f"warmup_epochs {warmup_epochs}: must be 0 or more")
    if not (math.isfinite(gamma) and gamma > 0):
        raise JobSetupError(f"lr_gamma {gamma}: must be positive")
    parsed = parse_milestones(milestones)
    if kind == "step":
        if step_size is None:
            raise JobSetupError("lr_step_size: required with lr_schedule step (epochs between reductions)")
        if step_size < 1:
            raise JobSetupError(f"lr_step_size {step_size}: must be at least 1 epoch")
    if kind == "multistep":
        if not parsed:
            raise JobSetupError("lr_milestones: required with lr_schedule multistep (epochs such as 10,20)")
        if parsed[0] < 1 or any(b <= a for a, b in zip(parsed, parsed[1:])):
            raise JobSetupError(f"lr_milestones {milestones!r}: must be increasing positive epochs")
    if kind == "plateau":
        if not (math.isfinite(factor) and 0 < factor < 1):
            raise JobSetupError(f"lr_factor {factor}: must be between 0 and 1")
        if patience is None or patience < 0:
            raise JobSetupError(f"lr_patience {patience}: must be 0 or more epochs")
    return ScheduleSpec(kind, int(max_epochs), step_size, float(gamma), parsed, float(factor), int(patience),
                        int(warmup_epochs))


def warmup_factor(spec: ScheduleSpec, epoch: int) -> float:
    """``(epoch + 1) / (warmup_epochs + 1)`` during the warm-up (``epoch`` 0-based), else 1."""
    if epoch < spec.warmup_epochs:
        return (epoch + 1) / (spec.warmup_epochs + 1)
    return 1.0


def schedule_factor(spec: ScheduleSpec, epoch: int) -> float:
    """The multiplier of the base rate during ``epoch`` (0-based) without warm-up (1 for ``plateau``,
    whose reductions depend on the validation history)."""
    if spec.kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, spec.max_epochs) / spec.max_epochs))
    if spec.kind == "step":
        return spec.gamma ** (epoch // spec.step_size)
    if spec.kind == "multistep":
        return spec.gamma ** sum(1 for milestone in spec.milestones if milestone <= epoch)
    return 1.0


def lr_factor(spec: ScheduleSpec, epoch: int) -> float:
    """The multiplier of the base rate during ``epoch`` (0-based): warm-up times schedule."""
    return warmup_factor(spec, epoch) * schedule_factor(spec, epoch)


class EpochSchedule:
    """Sets every parameter group's rate for the next epoch; call :meth:`step` after each epoch with
    the validation objective (lower is better; only ``plateau`` reads it). ``state_dict`` and
    ``load_state_dict`` save and restore it for continuation, the plateau state included."""

    def __init__(self, optimizer: torch.optim.Optimizer, spec: ScheduleSpec) -> None:
        self.optimizer = optimizer
        self.spec = spec
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.epoch = 0  # epochs finished
        self.plateau: Optional[torch.optim.lr_scheduler.ReduceLROnPlateau] = None
        self.plateau_lrs = list(self.base_lrs)  # the rates ReduceLROnPlateau has reduced so far
        if spec.kind == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=spec.factor, patience=spec.patience)
        self._apply()

    def lr(self, group: int = 0) -> float:
        """The rate of ``group`` during the next epoch."""
        return self.optimizer.param_groups[group]["lr"]

    def step(self, objective: Optional[float] = None) -> None:
        """After an epoch: its validation objective in, the next epoch's rates set."""
        finished = self.epoch
        self.epoch += 1
        if self.plateau is not None and finished >= self.spec.warmup_epochs:
            if objective is None or not math.isfinite(objective):
                raise ValueError("lr_schedule plateau: step() needs the epoch's finite validation objective")
            for group, lr in zip(self.optimizer.param_groups, self.plateau_lrs):
                group["lr"] = lr
            self.plateau.step(objective)
            self.plateau_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self._apply()

    def _apply(self) -> None:
        epoch = self.epoch
        if self.plateau is not None:
            rates = [lr * warmup_factor(self.spec, epoch) for lr in self.plateau_lrs]
        else:
            factor = lr_factor(self.spec, epoch)
            rates = [base * factor for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, rates):
            group["lr"] = lr

    def state_dict(self) -> dict:
        return {
            "kind": self.spec.kind,
            "epoch": self.epoch,
            "base_lrs": list(self.base_lrs),
            "plateau_lrs": list(self.plateau_lrs),
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.spec.kind:
            raise ValueError(f"a {state.get('kind')!r} schedule's state does not fit a {self.spec.kind!r} schedule")
        self.epoch = int(state["epoch"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self.plateau_lrs = [float(lr) for lr in state["plateau_lrs"]]
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
        self._apply()


def build_schedule(optimizer: torch.optim.Optimizer, spec: ScheduleSpec) -> EpochSchedule:
    """The per-epoch schedule of ``spec`` on ``optimizer`` (its rates are set for the first epoch)."""
    return EpochSchedule(optimizer, spec)


def spec_from_config(config: Any, max_epochs: int) -> ScheduleSpec:
    """The schedule a :class:`workers.config.ClassifierConfig` asks for, checked."""
    return make_spec(
        config.lr_schedule,
        max_epochs,
        step_size=config.lr_step_size,
        gamma=config.lr_gamma,
        milestones=getattr(config, "lr_milestones", None),
        factor=getattr(config, "lr_factor", 0.1),
        patience=getattr(config, "lr_patience", 2),
        warmup_epochs=getattr(config, "warmup_epochs", 0),
    )
