"""``hpo train``: one configuration at one budget in this process, for debugging a configuration.

It prints a line per epoch while the job trains and a rounded summary at the end; ``--json``
prints the result line as the results log would hold it instead (the epoch lines then go to
stderr, so stdout is only the JSON).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, TextIO

from hpo.errors import UserError
from hpo.jobs import SETUP_REASONS, JobContext, is_failure, load_job
from hpo.results import with_state
from hpo.run_plan import epochs_for_budget
from hpo.space import load_space
from hpo.values import to_json_safe

logger = logging.getLogger("hpo")


def _number(value: Any, digits: int = 4) -> str:
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.{digits}g}"


def _percent(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{100 * value:.1f}%"


class EpochPrinter:
    """``context.report_epoch`` for one job: a line per epoch (k/n, losses, accuracies, lr, seconds)."""

    def __init__(self, epochs: int, stream: TextIO) -> None:
        self.epochs = epochs
        self.stream = stream
        self.last_seconds: Optional[float] = None

    def __call__(self, entry: Mapping[str, Any]) -> None:
        seconds = entry.get("seconds")  # since the job started: the first epoch includes its setup
        took = seconds
        if isinstance(seconds, (int, float)):
            if self.last_seconds is not None:
                took = seconds - self.last_seconds
            self.last_seconds = seconds
        lr = f" | lr {_number(entry['lr'], 3)}" if entry.get("lr") is not None else ""
        print(f"epoch {entry.get('epoch', '?')}/{self.epochs} | "
              f"train loss {_number(entry.get('train_loss'))}, acc {_percent(entry.get('train_accuracy'))} | "
              f"val loss {_number(entry.get('val_loss'))}, acc {_percent(entry.get('val_accuracy'))}{lr} | "
              f"{'-' if not isinstance(took, (int, float)) else f'{took:.1f}'} s", file=self.stream, flush=True)


def summary(result: Optional[Mapping[str, Any]], epochs: int, wall_time: float) -> str:
    """The job's result in one rounded line."""
    info = (result or {}).get("info") or {}
    trained = info.get("epochs_trained", info.get("epochs", epochs))
    where = f" on {info['device']}" if info.get("device") else ""
    head = f"{trained} epoch{'' if trained == 1 else 's'} in {wall_time:.1f} s{where}"
    if is_failure(result):
        return f"failed after {head}: {info.get('reason', 'error')}: {info.get('message', 'no result')}"
    parts = [f"loss {_number(result['loss'])} ({info.get('loss_metric', 'loss')})",
             f"val loss {_number(info.get('val_loss'))}, acc {_percent(info.get('val_accuracy'))}",
             f"train loss {_number(info.get('train_loss'))}, acc {_percent(info.get('train_accuracy'))}"]
    if info.get("test_loss") is not None:
        parts.append(f"test loss {_number(info.get('test_loss'))}, acc {_percent(info.get('test_accuracy'))}")
    if info.get("stopped_early"):
        parts.append(f"stopped early ({info.get('stop_reason') or 'no improvement'})")
    if info.get("restored_best_epoch"):
        parts.append(f"metrics of the best epoch, {info['restored_best_epoch']} (restore_best)")
    if isinstance(info.get("trainable_params"), int) and isinstance(info.get("total_params"), int):
        trains = f": {info['trains']}" if info.get("trains") else ""
        parts.append(f"trains {info['trainable_params']:,} of {info['total_params']:,} parameters{trains}")
    return f"done: {head}; " + "; ".join(parts)


def _config_text(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in config.items())


def run_train(space_path: str, *, budget: Optional[float], overrides: Mapping[str, Any], job: Optional[str] = None,
              device: Optional[str] = None, data_root: Optional[str] = None, work_dir: Optional[str] = None,
              options: Optional[Mapping[str, Any]] = None, as_json: bool = False, indent: Optional[int] = None,
              out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Train the space's defaults with ``overrides`` (constants too) for ``budget`` epochs (default:
    the max budget); print epochs and a summary, or the JSON result line. Returns the exit code:
    0, 1 when the job failed, 2 when its input was wrong."""
    out, err = out or sys.stdout, err or sys.stderr
    space = load_space(space_path)
    job_function = load_job(job or space.job)
    config = space.config_with(overrides, constants=True, job_keys=getattr(job_function, "config_keys", ()))
    epochs = space.budget.max_budget if budget is None else budget
    if not 0 < epochs < float("inf"):
        raise UserError(f"--budget: must be a finite number > 0 (got {epochs:g})")
    n_epochs = epochs_for_budget(epochs)
    context = JobContext(
        budget=float(epochs), max_budget=float(max(space.budget.max_budget, epochs)),
        min_budget=space.budget.min_budget, run_id="train", config_id=(0, 0, 0), seed=space.seed, device=device,
        data_root=data_root, working_directory=str(Path(work_dir or ".").resolve()), options=dict(options or {}),
        report_epoch=EpochPrinter(n_epochs, err if as_json else out),
    )
    if as_json:
        logger.info("config: %s", json.dumps(config))
    else:
        print(f"{space.job if job is None else job}, {n_epochs} epoch{'' if n_epochs == 1 else 's'}: "
              f"{_config_text(config)}", file=out, flush=True)
    started = time.time()
    result = job_function(config, context)
    finished = time.time()
    if isinstance(result, dict) and isinstance(result.get("info"), dict):  # as a worker completes it
        result["info"].setdefault("worker", f"{socket.gethostname()}:{os.getpid()}:train")
        result["info"].setdefault("wall_time", finished - started)
    if as_json:
        timestamps = {"submitted": started, "started": started, "finished": finished}
        line = to_json_safe([[0, 0, 0], float(epochs), timestamps, with_state(result, None), None])
        print(json.dumps(line, indent=indent), file=out)
    elif not is_failure(result):  # a failure is said once, below
        print(summary(result, n_epochs, finished - started), file=out)
    if not is_failure(result):
        return 0
    info = (result or {}).get("info") or {}
    reason, message = info.get("reason", "error"), info.get("message", "no result")
    print(f"hpo: job failed ({reason}): {message}", file=err)
    # the user's input (a value, the weights, the data) is wrong: exit 2 as for any bad input
    return 2 if reason in SETUP_REASONS else 1


def parse_set(items: Sequence[str]) -> dict:
    """``--set NAME=VALUE`` items as {name: value}, values read as YAML."""
    from hpo.space import parse_value

    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set {item!r}: expected NAME=VALUE")
        values[name.strip()] = parse_value(text)
    return values
