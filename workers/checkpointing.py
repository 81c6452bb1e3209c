"""Checkpoints of a training job: the whole state needed to continue it exactly.

A checkpoint (``epoch-00007.pt`` in the configuration's directory, see :mod:`hpo.checkpoints`
for the layout and the atomic write) holds the model, optimizer, learning-rate scheduler and AMP
grad-scaler states, the random-number generators' states (torch, CUDA, numpy, python), the
history of the epochs so far, the early-stopping state (best epoch, epochs since it, stopped or
not: :mod:`workers.early_stopping`) and a fingerprint of what was trained (configuration, job
seed, max-budget epochs). ``model`` holds the weights the job reports, the model users load from a
kept checkpoint: the last epoch's, or with ``restore_best`` the best epoch's, and then
``last_model`` holds the last epoch's, which training continues from. With the data order of
epoch ``e`` a function of (job seed, ``e``) only (:func:`workers.training.seed_epoch`) and the
schedule a function of the max budget and the validation history only (:mod:`workers.schedules`),
continuing from it gives what training from scratch would give, bit for bit on the CPU.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain values only, no
pickled code, so a checkpoint directory on a shared file system cannot make a worker run code.
Anything wrong with a checkpoint (unreadable, torn, of another configuration, not fitting the
model) means training from scratch, with the reason returned as a warning for ``info``.
"""

from __future__ import annotations

import logging
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from hpo.checkpoints import checkpoint_path, latest, prune, save_atomic
from workers.early_stopping import EarlyStopping

logger = logging.getLogger(__name__)

SUFFIX = "pt"
FORMAT = 1


@dataclass
class TrainingState:
    """What a checkpoint saves and restores (``scaler`` is None without AMP's grad scaler)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Optional[torch.amp.GradScaler]
    fingerprint: str
    stopping: Optional[EarlyStopping] = None
    keep_best: bool = False  # restore_best: keep a copy of the best epoch's weights
    best_model: Optional[dict] = None  # that copy (on the CPU), once an epoch was best

    def note_epoch(self, history: list) -> None:
        """After an epoch that ``stopping`` has seen: with ``keep_best``, copy the weights when it is
        the best epoch so far."""
        if self.keep_best and self.stopping is not None and history and self.stopping.best_epoch == len(history):
            self.best_model = {key: value.detach().to("cpu", copy=True)
                               for key, value in self.model.state_dict().items()}


@dataclass
class Continuation:
    """The outcome of looking for a checkpoint: the history it held (empty: from scratch) and why
    none was used when one was expected or found broken."""

    history: list = field(default_factory=list)
    warning: Optional[str] = None

    @property
    def epochs(self) -> int:
        return len(self.history)


def fingerprint(*parts: Any) -> str:
    """A short digest of what a checkpoint must match to be continued."""
    return f"{zlib.crc32(repr(parts).encode()):08x}"


def rng_state() -> dict:
    """The states of torch's, CUDA's, numpy's and python's global generators, as tensors and plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where as many devices are present)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))


def save(directory: str, state: TrainingState, history: list) -> Path:
    """Write the checkpoint after ``len(history)`` epochs atomically, then delete the older ones."""
    payload = {
        "format": FORMAT,
        "fingerprint": state.fingerprint,
        "epochs": len(history),
        "history": history,
        "model": state.best_model if state.keep_best and state.best_model is not None else state.model.state_dict(),
        "last_model": state.model.state_dict() if state.keep_best else None,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "rng": rng_state(),
        "stopping": state.stopping.state_dict() if state.stopping is not None else None,
    }
    path = save_atomic(checkpoint_path(directory, len(history), SUFFIX), lambda fh: torch.save(payload, fh))
    prune(directory, path)
    return path


def restore(directory: Optional[str], state: TrainingState, epochs: int,
            previous_budget: Optional[float] = None) -> Continuation:
    """Load the latest checkpoint of ``directory`` holding at most ``epochs`` epochs into ``state``
    (model, optimizer, scheduler, scaler, generators). On any problem nothing is changed and the
    returned :class:`Continuation` is empty, with a warning."""
    if not directory:
        return Continuation()
    found = latest(directory, at_most=epochs)
    if found is None:
        if previous_budget is not None:
            return Continuation(warning=f"no checkpoint in {directory} although budget {previous_budget:g} "
                                        f"finished: trained from scratch (do the workers share the checkpoint "
                                        f"directory?)")
        return Continuation()
    saved_epochs, path = found
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        problem = _mismatch(payload, state, saved_epochs)
    except Exception as exc:  # torn, truncated, not a checkpoint: whatever torch.load raises
        problem = f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    if problem:
        message = f"checkpoint {path} {problem}: trained from scratch"
        logger.warning(message)
        return Continuation(warning=message)
    state.model.load_state_dict(payload["last_model"] if state.keep_best else payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    if state.scaler is not None and payload["scaler"] is not None:
        state.scaler.load_state_dict(payload["scaler"])
    set_rng_state(payload["rng"])
    if state.stopping is not None:
        state.stopping.load_state_dict(payload["stopping"])
    if state.keep_best:
        state.best_model = payload["model"]
    logger.info("continuing from %s (%d epochs)", path, saved_epochs)
    return Continuation(history=list(payload["history"]))


def _mismatch(payload: Any, state: TrainingState, saved_epochs: int) -> Optional[str]:
    """Why ``payload`` cannot be continued into ``state`` (checked before anything is changed), or None."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return "is not a checkpoint of this job"
    if payload.get("fingerprint") != state.fingerprint:
        return "is of another configuration, seed or max budget"
    history = payload.get("history")
    if payload.get("epochs") != saved_epochs or not isinstance(history, list) or len(history) != saved_epochs:
        return "does not hold the epochs its name says"
    model = state.model.state_dict()
    if not _fits(payload.get("model"), model) or (state.keep_best and not _fits(payload.get("last_model"), model)):
        return "does not fit the model (or misses the last epoch's weights)"
    optimizer = payload.get("optimizer")
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != [
            len(g["params"]) for g in state.optimizer.param_groups]:
        return "does not fit the optimizer"
    if not isinstance(payload.get("scheduler"), dict) or not isinstance(payload.get("rng"), dict):
        return "misses the scheduler or generator states"
    if state.stopping is not None and not isinstance(payload.get("stopping"), dict):
        return "misses the early-stopping state"
    return None


def _fits(weights: Any, model: dict) -> bool:
    """Whether ``weights`` is a state dict with ``model``'s keys and shapes."""
    return isinstance(weights, dict) and set(weights) == set(model) and all(
        isinstance(weights[k], torch.Tensor) and weights[k].shape == model[k].shape for k in model)
