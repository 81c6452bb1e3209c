"""Writing small results directories for the hpo-report tests, in the documented log format."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

#: The searched space of the standard run (run.json ``hyperparameters``); ``model`` is a constant.
HYPERPARAMETERS = [
    {"name": "model", "type": "constant", "log": False, "searched": False},
    {"name": "optimizer", "type": "categorical", "log": False, "searched": True, "choices": ["sgd", "adamw"]},
    {"name": "lr", "type": "float", "log": True, "searched": True, "low": 1e-5, "high": 1e-1},
    {"name": "momentum", "type": "float", "log": False, "searched": True, "low": 0.0, "high": 0.99,
     "parent_conditions": {"optimizer": "sgd"}},
    {"name": "batch_size", "type": "int", "log": True, "searched": True, "low": 16, "high": 64},
]

START = 1_700_000_000.0


class LogWriter:
    """Appends configs.json/results.json lines; the clock advances ``budget`` minutes per job."""

    def __init__(self, directory: Path, metadata: Optional[dict] = None, max_budget: float = 9) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_budget = max_budget
        self.clock = START
        self.next_index: dict[int, int] = {}
        (self.directory / "configs.json").touch()
        (self.directory / "results.json").touch()
        if metadata is not None:
            (self.directory / "run.json").write_text(json.dumps(metadata))

    def config(self, iteration: int = 0, **values: Any) -> list[int]:
        index = self.next_index.get(iteration, 0)
        self.next_index[iteration] = index + 1
        config_id = [iteration, 0, index]
        self._append("configs.json", [config_id, {"model": "resnet18", **values}, {"model_based_pick": False}])
        return config_id

    def ok(self, config_id: list[int], budget: float, loss: float, **info: Any) -> None:
        epochs = int(budget)
        history = [
            {"epoch": e, "train_loss": loss + 0.5 / e - 0.05, "train_accuracy": 0.5 + 0.04 * e,
             "val_loss": loss + 0.5 / e - 0.5 / epochs, "val_accuracy": 0.45 + 0.04 * e, "lr": 0.01, "seconds": 60.0 * e}
            for e in range(1, epochs + 1)
        ]
        full = {
            "status": "ok", "epochs": epochs, "budget": budget, "loss_metric": "val_loss",
            "train_loss": loss - 0.05, "train_accuracy": 0.9, "val_loss": loss, "val_accuracy": 1 - loss / 2,
            "test_loss": loss + 0.01 if budget >= self.max_budget else None,
            "test_accuracy": 1 - loss / 2 - 0.01 if budget >= self.max_budget else None,
            "history": history, "wall_time": 60.0 * budget, "device": "cpu",
        }
        full.update(info)
        self._result(config_id, budget, {"loss": loss, "info": full}, None)

    def failed(self, config_id: list[int], budget: float, reason: str, message: str) -> None:
        info = {"status": "failed", "reason": reason, "message": message, "epochs": 1}
        self._result(config_id, budget, {"loss": None, "info": info}, None)

    def crashed(self, config_id: list[int], budget: float, last_line: str) -> None:
        traceback = f'Traceback (most recent call last):\n  File "job.py", line 3, in run\n{last_line}\n'
        self._result(config_id, budget, None, traceback)

    def _result(self, config_id: list[int], budget: float, result: Any, exception: Optional[str]) -> None:
        stamps = {"submitted": self.clock, "started": self.clock + 1, "finished": self.clock + 1 + 60.0 * budget}
        self.clock = stamps["finished"]
        self._append("results.json", [config_id, budget, stamps, result, exception])

    def _append(self, name: str, value: Any) -> None:
        with open(self.directory / name, "a") as handle:
            handle.write(json.dumps(value, allow_nan=True) + "\n")


def metadata(run_id: str = "run1", finished: bool = True) -> dict:
    value = {
        "run_id": run_id, "space_file": "space.yaml", "space": {"name": "test"},
        "hyperparameters": HYPERPARAMETERS, "optimizer": "bohb", "min_budget": 1, "max_budget": 9, "eta": 3,
        "iterations": 2, "seed": 0, "job": "image_classifier", "started_at": "2023-11-14T22:13:20+00:00",
        "versions": {"hpo": "0.1.0"},
    }
    if finished:
        value["finished_at"] = "2023-11-15T00:13:20+00:00"  # two hours later
    return value


def write_standard_run(directory: Path, run_id: str = "run1") -> Path:
    """A small finished run: budgets 1, 3, 9; one failure, one crash; momentum only for sgd.

    At budget 9 the order is c2 (0.30, adamw) < c0 (0.35, sgd) < c3 (0.50, sgd).
    """
    log = LogWriter(directory, metadata(run_id))
    c0 = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    c1 = log.config(optimizer="sgd", lr=0.1, momentum=0.5, batch_size=16)
    c2 = log.config(optimizer="adamw", lr=1e-4, batch_size=64)
    c3 = log.config(optimizer="sgd", lr=0.001, momentum=0.0, batch_size=16)
    c4 = log.config(optimizer="adamw", lr=0.05, batch_size=32)
    log.ok(c0, 1, 0.9)
    log.failed(c1, 1, "diverged", "loss is nan at epoch 1")
    log.ok(c2, 1, 0.8)
    log.ok(c3, 1, 1.0)
    log.crashed(c4, 1, "RuntimeError: CUDA out of memory")
    log.ok(c0, 3, 0.6)
    log.ok(c2, 3, 0.5)
    log.ok(c3, 3, 0.7)
    log.ok(c0, 9, 0.35)
    log.ok(c2, 9, 0.30)
    log.ok(c3, 9, 0.50)
    return Path(directory)


def nan_free(value: Any) -> bool:
    """True if no float in ``value`` is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(nan_free(v) for v in value.values())
    if isinstance(value, list):
        return all(nan_free(v) for v in value)
    return True
