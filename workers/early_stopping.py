"""The best epoch so far and early stopping, on the validation objective (lower is better).

An epoch **improves** when its objective is below the best so far by more than ``min_delta``
(``early_stopping_min_delta``, default 0: any decrease); the first epoch always does. With
``patience`` (``early_stopping_patience``, default off) the job stops once ``patience`` epochs in a
row have not improved: with patience 3 and the best at epoch 2, it stops after epoch 5. The same
tracker says which epoch is the best one for ``restore_best``, stopping or not. It watches every
epoch, the warm-up's included (the ``plateau`` schedule skips those).

Its state (best value and epoch, epochs since the best, whether and why it stopped) is a plain
dict saved in the job's checkpoint, so a continued job stops exactly where one from scratch would,
and a promoted job whose checkpoint stopped early trains no further.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from workers.errors import JobSetupError


@dataclass
class EarlyStopping:
    """Tracks the best epoch; ``patience`` None never stops."""

    patience: Optional[int] = None
    min_delta: float = 0.0
    best: Optional[float] = None
    best_epoch: int = 0  # 1-based; 0: no epoch seen yet
    epochs_since_best: int = 0
    stopped: bool = False
    stop_reason: Optional[str] = None

    def __post_init__(self) -> None:
        if self.patience is not None and self.patience < 1:
            raise JobSetupError(f"early_stopping_patience {self.patience}: must be at least 1 epoch (or absent: off)")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise JobSetupError(f"early_stopping_min_delta {self.min_delta}: must be 0 or more")

    def update(self, epoch: int, objective: float) -> bool:
        """Record ``epoch``'s (1-based) objective; True when it is the new best."""
        improved = self.best is None or objective < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.epochs_since_best = float(objective), int(epoch), 0
        else:
            self.epochs_since_best += 1
        if self.patience is not None and self.epochs_since_best >= self.patience and not self.stopped:
            self.stopped = True
            self.stop_reason = (
                f"no improvement of the validation objective by more than {self.min_delta:g} in "
                f"{self.epochs_since_best} epochs (best {self.best:.6g} at epoch {self.best_epoch})")
        return improved

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore the tracked values (the checkpoint's fingerprint already guarantees the same settings)."""
        for key in ("best", "best_epoch", "epochs_since_best", "stopped", "stop_reason"):
            setattr(self, key, state[key])


def early_stopping_from_config(config: Any) -> EarlyStopping:
    """The tracker a :class:`workers.config.ClassifierConfig` asks for (patience None or 0: off), checked."""
    patience = getattr(config, "early_stopping_patience", None)
    min_delta = getattr(config, "early_stopping_min_delta", 0.0)
    if patience is not None and patience < 0:
        raise JobSetupError(f"early_stopping_patience {patience}: must be at least 1 epoch (or 0: off)")
    return EarlyStopping(patience=patience or None, min_delta=min_delta)


def validation_objective(entry: dict, objective: str) -> float:
    """The loss BOHB gets from one history entry: ``val_loss``, or ``1 - val_accuracy`` for ``val_error``."""
    return entry["val_loss"] if objective == "val_loss" else 1.0 - entry["val_accuracy"]
