"""A cheap synthetic objective with the shape of a training job, for testing the service.

It needs no torch and no data: the loss is a smooth function of the numeric hyperparameters
(log-scaled ones in log space), with a penalty per categorical choice and noise that shrinks
as the budget grows, so BOHB has something to learn. Set ``seconds_per_epoch`` in the config
(a constant) to make jobs take time, and ``fail_when`` to make some configurations fail.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from typing import Any, Mapping

from hpo.jobs import JobContext, JobResult, failure


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


def run(config: Mapping[str, Any], context: JobContext) -> JobResult:
    """Evaluate the synthetic objective for ``round(budget)`` epochs (at least one)."""
    fail_when = config.get("fail_when")
    if isinstance(fail_when, str) and "=" in fail_when:
        key, _, value = fail_when.partition("=")
        if str(config.get(key)) == value:
            return failure("diverged", f"synthetic failure because {key}={value}", epochs=0)
    epochs = max(1, int(round(context.budget)))
    seed = zlib.crc32(repr(sorted(config.items())).encode()) ^ context.seed
    rng = random.Random(seed)
    base = _score(config)
    history = []
    start = time.time()
    for epoch in range(1, epochs + 1):
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
                "seconds": time.time() - start,
            }
        )
    last = history[-1]
    info = {
        "status": "ok",
        "epochs": epochs,
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
    if context.budget >= context.max_budget:
        info["test_loss"] = last["val_loss"] + 0.01
        info["test_accuracy"] = math.exp(-info["test_loss"])
    return {"loss": last["val_loss"], "info": info}
