"""A cheap synthetic objective with the shape of a training job, for testing the service.

It needs no torch and no data: the loss is a smooth function of the numeric hyperparameters
(log-scaled ones in log space), with a penalty per categorical choice and noise that shrinks
as the budget grows, so BOHB has something to learn. Set ``seconds_per_epoch`` in the config
(a constant) to make jobs take time, and ``fail_when`` (``NAME=VALUE``) to make some configurations
fail; ``check_config`` refuses other values of these two before a run. It reads any key.

It continues from checkpoints as the image classifier does (see :mod:`hpo.checkpoints`): with a
``context.checkpoint_dir`` it writes a small JSON checkpoint after every epoch (epochs, history,
the state of its random generator) and a job at a higher budget, or one run again after its
worker died, loads the latest and computes only the missing epochs, with exactly the losses a
job from scratch would get. ``info`` says ``epochs`` (in all), ``epochs_trained`` (by this job)
and ``continued_from`` (0: from scratch); an unreadable checkpoint means from scratch, with
``info["checkpoint_warning"]``.
"""

from __future__ import annotations

import json
import math
import random
import time
import zlib
from typing import Any, Mapping, Optional

from hpo.checkpoints import checkpoint_path, latest, prune, save_atomic
from hpo.jobs import JobContext, JobResult, failure
from hpo.run_plan import epochs_for_budget

CHECKPOINT_SUFFIX = "json"


def _score(config: Mapping[str, Any]) -> float:
    total = 0.0
    for name, value in sorted(config.items()):
        if name in {"seconds_per_epoch", "fail_when"}:
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            x = math.log10(value) if value > 0 else float(value)
            total += (x - 0.3) ** 2 / (1.0 + abs(x))
        elif isinstance(value, str):
            total += (zlib.crc32(f"{name}={value}".encode()) % 7) / 10.0
    return total


def _fingerprint(config: Mapping[str, Any], context: JobContext) -> str:
    """What a checkpoint must match to be continued: the configuration, the seed, the max budget."""
    return f"{zlib.crc32(repr(sorted(config.items())).encode()):08x}:{context.seed}:{context.max_budget!r}"


def _restore(config: Mapping[str, Any], context: JobContext, epochs: int,
             rng: random.Random) -> tuple[list, Optional[str]]:
    """(history so far, warning) from the latest checkpoint that fits; the rng is set to its state."""
    if not context.checkpoint_dir:
        return [], None
    found = latest(context.checkpoint_dir, at_most=epochs)
    if found is None:
        if context.previous_budget is not None:
            return [], (f"no checkpoint in {context.checkpoint_dir} although budget {context.previous_budget:g} "
                        f"finished: trained from scratch (do the workers share the checkpoint directory?)")
        return [], None
    saved_epochs, path = found
    try:
        state = json.loads(path.read_text())
        if state["fingerprint"] != _fingerprint(config, context):
            return [], f"checkpoint {path} is of another configuration or run: trained from scratch"
        history = list(state["history"])
        version, internal, gauss = state["rng"]
        if len(history) != saved_epochs:
            raise ValueError(f"{len(history)} epochs of history")
        rng.setstate((version, tuple(internal), gauss))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [], f"checkpoint {path} unreadable ({type(exc).__name__}: {exc}): trained from scratch"
    return history, None


def _save(config: Mapping[str, Any], context: JobContext, history: list, rng: random.Random) -> Optional[str]:
    """Write the checkpoint after ``len(history)`` epochs; a warning when it cannot be written."""
    version, internal, gauss = rng.getstate()
    state = {"fingerprint": _fingerprint(config, context), "epochs": len(history), "history": history,
             "rng": [version, list(internal), gauss]}
    path = checkpoint_path(context.checkpoint_dir, len(history), CHECKPOINT_SUFFIX)
    try:
        save_atomic(path, lambda fh: fh.write(json.dumps(state).encode()))
    except OSError as exc:
        return f"could not write checkpoint {path}: {exc}"
    prune(context.checkpoint_dir, path)
    return None


def check_config(config: Mapping[str, Any]) -> None:
    """Raise a ValueError (one line) for a ``seconds_per_epoch`` or ``fail_when`` the job cannot use."""
    seconds = config.get("seconds_per_epoch", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise ValueError(f"seconds_per_epoch {seconds!r}: must be a number of seconds >= 0")
    fail_when = config.get("fail_when")
    if fail_when is not None and not (isinstance(fail_when, str) and "=" in fail_when):
        raise ValueError(f"fail_when {fail_when!r}: expected NAME=VALUE (the job fails when NAME takes VALUE)")


def run(config: Mapping[str, Any], context: JobContext) -> JobResult:
    """Evaluate the synthetic objective for ``round(budget)`` epochs (at least one), continuing from
    the latest checkpoint in ``context.checkpoint_dir`` when there is one."""
    fail_when = config.get("fail_when")
    if isinstance(fail_when, str) and "=" in fail_when:
        key, _, value = fail_when.partition("=")
        if str(config.get(key)) == value:
            return failure("diverged", f"synthetic failure because {key}={value}", epochs=0)
    epochs = epochs_for_budget(context.budget)
    seed = zlib.crc32(repr(sorted(config.items())).encode()) ^ context.seed
    rng = random.Random(seed)
    base = _score(config)
    history, warning = _restore(config, context, epochs, rng)
    continued_from = len(history)
    offset = history[-1]["seconds"] if history else 0.0
    start = time.time()
    for epoch in range(continued_from + 1, epochs + 1):
        time.sleep(float(config.get("seconds_per_epoch", 0.0)))
        progress = epoch / max(context.max_budget, 1.0)
        val_loss = base + 1.0 / (1.0 + 3.0 * progress) + rng.gauss(0.0, 0.05 / epoch)
        train_loss = max(0.0, val_loss - 0.1 * progress)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": math.exp(-train_loss),
                "val_loss": val_loss,
                "val_accuracy": math.exp(-val_loss),
                "seconds": offset + time.time() - start,
            }
        )
        if context.checkpoint_dir:
            warning = _save(config, context, history, rng) or warning
        if context.report_epoch is not None:
            context.report_epoch(history[-1])
    last = history[-1]
    info = {
        "status": "ok",
        "epochs": epochs,
        "epochs_trained": epochs - continued_from,
        "continued_from": continued_from,
        "budget": context.budget,
        "loss_metric": "val_loss",
        "train_loss": last["train_loss"],
        "train_accuracy": last["train_accuracy"],
        "val_loss": last["val_loss"],
        "val_accuracy": last["val_accuracy"],
        "test_loss": None,
        "test_accuracy": None,
        "history": history,
        "wall_time": time.time() - start,
        "device": "cpu",
    }
    if warning:
        info["checkpoint_warning"] = warning
    if context.budget >= context.max_budget:
        info["test_loss"] = last["val_loss"] + 0.01
        info["test_accuracy"] = math.exp(-info["test_loss"])
    return {"loss": last["val_loss"], "info": info}


run.check_config = check_config  # type: ignore[attr-defined]
