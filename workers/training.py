"""The training loop: one epoch of training, an evaluation pass, and ``fit`` over epochs.

In the spirit of torchvision's ``references/classification/train.py``: plain PyTorch, mixed
precision and ``channels_last`` on CUDA (see :mod:`workers.devices`), the learning-rate
scheduler stepped once per epoch. A non-finite training or validation loss raises
:class:`~workers.errors.Diverged`; the epochs finished so far stay in the caller's history list.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from workers.devices import TrainingSettings
from workers.errors import Diverged
from workers.models import ClassifierModel


FINITE_CHECK_STEPS = 50  # training steps between checks of the running loss (each one synchronises)


def _logits(output) -> torch.Tensor:
    """Model output as logits (Inception/GoogLeNet return a named tuple in training mode)."""
    return output[0] if isinstance(output, tuple) else output


def _to_device(images: torch.Tensor, targets: torch.Tensor, settings: TrainingSettings):
    channels_last = settings.channels_last and images.dim() == 4  # not for cached (N, D) features
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(settings.device, memory_format=memory_format, non_blocking=settings.non_blocking)
    return images, targets.to(settings.device, non_blocking=settings.non_blocking)


def _autocast(settings: TrainingSettings):
    return torch.autocast(
        device_type=settings.device.type, dtype=settings.amp_dtype, enabled=settings.amp_dtype is not None
    )


def train_one_epoch(
    classifier: ClassifierModel,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    settings: TrainingSettings,
    scaler: Optional[torch.amp.GradScaler] = None,
) -> tuple[float, float]:
    """Train for one pass over ``loader``; return (mean loss, accuracy).

    Loss and accuracy add up on the device (no host synchronisation per step); the running loss is
    checked for NaN or infinity every ``FINITE_CHECK_STEPS`` steps and at the end of the epoch.
    """
    classifier.train_mode()
    model = classifier.model
    total_loss = torch.zeros((), dtype=torch.float64, device=settings.device)
    correct = torch.zeros((), dtype=torch.int64, device=settings.device)
    seen = 0
    for step, (images, targets) in enumerate(loader, start=1):
        images, targets = _to_device(images, targets, settings)
        with _autocast(settings):
            logits = _logits(model(images))
            loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        batch = targets.size(0)
        total_loss += loss.detach().double() * batch
        correct += (logits.detach().argmax(dim=1) == targets).sum()
        seen += batch
        if step % FINITE_CHECK_STEPS == 0:
            _check_finite(total_loss, seen)
    _check_finite(total_loss, seen)
    return total_loss.item() / max(seen, 1), correct.item() / max(seen, 1)


def _check_finite(total_loss: torch.Tensor, seen: int) -> None:
    value = total_loss.item()
    if not math.isfinite(value):
        raise Diverged(f"training loss is {value / max(seen, 1)} within the first {seen} images of the epoch")


@torch.inference_mode()
def evaluate(classifier: ClassifierModel, loader: DataLoader, settings: TrainingSettings) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the model on ``loader`` (eval mode, no gradients)."""
    model = classifier.model
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=settings.device)
    correct = torch.zeros((), dtype=torch.int64, device=settings.device)
    seen = 0
    for images, targets in loader:  # sums stay on the device until the end (no per-batch synchronisation)
        images, targets = _to_device(images, targets, settings)
        with _autocast(settings):
            logits = _logits(model(images))
        total_loss += F.cross_entropy(logits.float(), targets, reduction="sum").double()
        correct += (logits.argmax(dim=1) == targets).sum()
        seen += targets.size(0)
    return total_loss.item() / max(seen, 1), correct.item() / max(seen, 1)


def fit(
    classifier: ClassifierModel,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    settings: TrainingSettings,
    history: list,
    started: Optional[float] = None,
) -> list:
    """Train ``epochs`` epochs, appending each epoch's metrics to ``history`` (and returning it).

    An entry is ``{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
    "seconds"}``; ``lr`` is the learning rate used during the epoch, ``seconds`` the wall time
    from ``started`` (default: the call) to the end of the epoch.
    """
    started = time.time() if started is None else started
    scaler = torch.amp.GradScaler(settings.device.type) if settings.use_grad_scaler else None
    for epoch in range(1, epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_accuracy = train_one_epoch(classifier, train_loader, optimizer, settings, scaler)
        scheduler.step()
        val_loss, val_accuracy = evaluate(classifier, val_loader, settings)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": lr,
                "seconds": time.time() - started,
            }
        )
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss is {val_loss} after epoch {epoch}")
    return history
