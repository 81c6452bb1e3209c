"""The training loop: one epoch of training, an evaluation pass, and ``fit`` over epochs.

In the spirit of torchvision's ``references/classification/train.py``: plain PyTorch, mixed
precision and ``channels_last`` on CUDA (see :mod:`workers.devices`), the learning-rate
schedule (:mod:`workers.schedules`) stepped once per epoch with the validation objective. A
non-finite training or validation loss raises :class:`~workers.errors.Diverged`; the epochs
finished so far stay in the caller's history list. With an
:class:`~workers.early_stopping.EarlyStopping` tracker, ``fit`` stops once it says so (a tracker
that already stopped, restored from a checkpoint, trains no epoch).

**Continuation.** ``fit`` continues after the epochs already in its history list (restored from a
checkpoint, see :mod:`workers.checkpointing`) and calls ``on_epoch_end`` after each epoch (to
save one). With a ``seed``, every random number of epoch ``e`` (the shuffled order, the workers'
and the augmentations' seeds, dropout) comes from generators seeded from (``seed``, ``e``) at the
start of the epoch (:func:`seed_epoch`), so what epoch ``e`` does never depends on how many epochs
this process ran before: 1 epoch then continued to 3 equals 3 from scratch. New data-pipeline code
must draw its randomness from those generators (or seed its own from :func:`epoch_seed`).
"""

from __future__ import annotations

import math
import random
import time
import zlib
from typing import Any, Callable, Optional

import numpy as np

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from workers.devices import TrainingSettings
from workers.early_stopping import EarlyStopping, validation_objective
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


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (1-based) of a job seeded ``seed``: a function of both only."""
    return zlib.crc32(f"{int(seed)}:{int(epoch)}".encode())


def seed_epoch(seed: int, epoch: int, loader: Optional[DataLoader] = None) -> None:
    """Seed torch's (and CUDA's), numpy's and python's generators and ``loader``'s own generator (its
    shuffle and its workers' seeds) for ``epoch``."""
    value = epoch_seed(seed, epoch)
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(value)
    if hasattr(loader, "set_epoch"):  # workers.input_pipeline loaders: order and augmentation of (seed, epoch)
        loader.set_epoch(epoch)


def make_scaler(settings: TrainingSettings) -> Optional[torch.amp.GradScaler]:
    """AMP's grad scaler where the settings use one (fp16 on CUDA), else None."""
    return torch.amp.GradScaler(settings.device.type) if settings.use_grad_scaler else None


def train_one_epoch(
    classifier: ClassifierModel,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    settings: TrainingSettings,
    scaler: Optional[torch.amp.GradScaler] = None,
) -> tuple[float, float]:
    """Train for one pass over ``loader``; return (mean loss, accuracy). The loss is the cross-entropy with
    the classifier's ``label_smoothing`` (validation and test losses are plain cross-entropy).

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
            loss = F.cross_entropy(logits, targets, label_smoothing=classifier.label_smoothing)
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
    scheduler: Any,
    epochs: int,
    settings: TrainingSettings,
    history: list,
    started: Optional[float] = None,
    *,
    seed: Optional[int] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    on_epoch_end: Optional[Callable[[list], None]] = None,
    objective: str = "val_loss",
    stopping: Optional[EarlyStopping] = None,
) -> list:
    """Train until ``history`` holds ``epochs`` epochs, appending each epoch's metrics to it (and
    returning it): a history that already holds ``k`` epochs (a continued job) trains ``k + 1`` on.

    An entry is ``{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
    "seconds"}``; ``lr`` is the learning rate used during the epoch, ``seconds`` the wall time
    from ``started`` (default: the call) to the end of the epoch, plus the ``seconds`` of the last
    epoch already in ``history`` (time spent on the configuration, across the jobs that trained it).
    ``seed``: seed every epoch with :func:`seed_epoch`. ``scaler``: AMP's grad scaler (default: made
    here when the settings use one). ``on_epoch_end(history)`` runs after each finished epoch.
    After each epoch ``scheduler.step(value)`` and ``stopping.update(epoch, value)`` get its
    validation ``objective`` (``val_loss`` or ``val_error``), before ``on_epoch_end`` (so a
    checkpoint saved there holds their new states); training ends early once ``stopping.stopped``.
    """
    started = time.time() if started is None else started
    offset = float(history[-1].get("seconds") or 0.0) if history else 0.0
    if scaler is None:
        scaler = make_scaler(settings)
    for epoch in range(len(history) + 1, epochs + 1):
        if stopping is not None and stopping.stopped:
            break
        if seed is not None:
            seed_epoch(seed, epoch, train_loader)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_accuracy = train_one_epoch(classifier, train_loader, optimizer, settings, scaler)
        val_loss, val_accuracy = evaluate(classifier, val_loader, settings)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": lr,
                "seconds": offset + time.time() - started,
            }
        )
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss is {val_loss} after epoch {epoch}")
        value = validation_objective(history[-1], objective)
        scheduler.step(value)
        if stopping is not None:
            stopping.update(epoch, value)
        if on_epoch_end is not None:
            on_epoch_end(history)
    return history
