"""``results.json`` lines as the columns of a run's results table (:attr:`hpo.report.loading.RunLog.results`):
status and reason of each result, the ``info`` measurements, a job's own metrics, which columns hold
only integers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

#: Per-result measurements copied from ``info`` into columns of the results table.
INFO_NUMBERS = (
    "epochs",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "wall_time",
)


def config_id_text(config_id: Any) -> Optional[str]:
    """``[0, 0, 3]`` -> ``"(0, 0, 3)"``, hpbandster's own notation; None if not an id."""
    if type(config_id) is list and len(config_id) == 3:
        first, second, third = config_id
        if type(first) is int and type(second) is int and type(third) is int:
            return f"({first}, {second}, {third})"
    if isinstance(config_id, (list, tuple)) and config_id and all(type(x) is int for x in config_id):
        return "(" + ", ".join(str(x) for x in config_id) + ")"
    return None


def results_frame(
    rows: list[tuple[int, Any]], history_texts: list[str], path: Path, warnings: list[str]
) -> tuple[pd.DataFrame, Optional[str], frozenset[str]]:
    """``results.json``'s (line number, value) ``rows`` as :attr:`RunLog.results` columns, the loss
    metric the log names, and the columns holding only integers; bad lines go to ``warnings``."""
    ids: list[str] = []
    iterations: list[int] = []
    budgets: list[Any] = []
    stamps: list[dict] = []
    losses: list[Any] = []
    statuses: list[str] = []
    reasons: list[Optional[str]] = []
    messages: list[Optional[str]] = []
    infos: list[dict] = []
    histories: list[Any] = []
    empty: dict = {}
    for number, row in rows:
        if type(row) is not list or len(row) != 5:
            warnings.append(f"{path}:{number}: not a result line [config_id, budget, time_stamps, result, exception], skipped")
            continue
        config_id, budget, stamp, result, exception = row
        cid = config_id_text(config_id)
        if cid is None or not is_number(budget):
            warnings.append(f"{path}:{number}: bad config id or budget, line skipped")
            continue
        if type(result) is dict:
            info = result.get("info")
            if type(info) is not dict:
                info = empty
            loss = result.get("loss")
            if type(loss) is float and math.isfinite(loss) or type(loss) is int:
                if info.get("status") == "failed":
                    statuses.append("failed")
                    reasons.append(str(info.get("reason") or "failed"))
                    messages.append(str(info.get("message") or ""))
                    loss = None
                else:
                    statuses.append("ok")
                    reasons.append(None)
                    messages.append(None)
            else:  # a job that raised is logged with reason "crashed" (and its traceback in exception)
                statuses.append("crashed" if info.get("reason") == "crashed" else "failed")
                reasons.append(str(info.get("reason") or ("no loss" if loss is None else "non-finite loss")))
                messages.append(str(info.get("message") or _last_line(exception) or ""))
                loss = None
        else:
            info = empty
            loss = None
            statuses.append("crashed")
            reasons.append("crashed")
            messages.append(_last_line(exception) or "")
        ids.append(cid)
        iterations.append(config_id[0])
        budgets.append(budget)
        stamps.append(stamp if type(stamp) is dict else empty)
        losses.append(loss)
        infos.append(info)
        history = info.get("history")
        histories.append(history_texts[history] if type(history) is int else (history or None))
    columns: dict[str, Any] = {
        "config_id": pd.Series(ids, dtype=object),
        "iteration": np.asarray(iterations, dtype="int64"),
        "budget": np.asarray(budgets, dtype=float),
    }
    for name in ("submitted", "started", "finished"):
        columns[name] = _numbers([stamp.get(name) for stamp in stamps])
    columns["loss"] = _numbers(losses)
    columns["status"] = pd.Series(statuses, dtype=object)
    columns["reason"] = pd.Series(reasons, dtype=object)
    columns["message"] = pd.Series(messages, dtype=object)
    integers: set[str] = set()

    def info_column(name: str, values: list[Any]) -> None:
        columns[name] = _numbers(values)
        if _integers_only(values):
            integers.add(name)

    for name in INFO_NUMBERS:
        info_column(name, [info.get(name) for info in infos])
    # "epochs" is what the job trained: a job that continued from a checkpoint records the model's
    # epochs in all as info.epochs and its own as info.epochs_trained
    info_column("epochs", [info.get("epochs_trained", info.get("epochs")) for info in infos])
    info_column("epochs_trained", [info.get("epochs_trained") for info in infos])
    columns["history"] = pd.Series(histories, dtype=object)
    # which attempt a result came from (a job whose worker died ran again) and how many were lost
    columns["attempt"] = _numbers([info.get("attempt") for info in infos])
    columns["lost_attempts"] = np.asarray(
        [len(lost) if type(lost := info.get("lost_attempts", info.get("attempts"))) is list else 0 for info in infos],
        dtype="int64")
    for name in _extra_metrics(infos):
        info_column(name, [info.get(name) for info in infos])
    metric = next((info["loss_metric"] for info in infos if isinstance(info.get("loss_metric"), str)), None)
    return pd.DataFrame(columns), metric, frozenset(integers)


#: ``info`` keys that are not measurements (or are already columns).
_NOT_METRICS = frozenset({*INFO_NUMBERS, "epochs_trained", "budget", "attempt", "history", "status", "reason",
                          "message", "loss_metric", "lost_attempts", "attempts", "previous_budget", "loss",
                          "config_id", "iteration"})


def _extra_metrics(infos: list[dict]) -> list[str]:
    """Numeric ``info`` keys beyond :data:`INFO_NUMBERS` (a job's own metrics), in first-seen order."""
    found: dict[str, None] = {}
    for info in infos:
        for key, value in info.items():
            if key not in found and key not in _NOT_METRICS and type(value) in (int, float):
                found[key] = None
    return list(found)


def _numbers(values: list[Any]) -> np.ndarray:
    """Numbers as floats; anything else (None, text, booleans) as NaN."""
    try:
        return np.asarray(values, dtype=float)  # the common case: only numbers and None
    except (TypeError, ValueError):
        return np.asarray([float(v) if is_number(v) else math.nan for v in values], dtype=float)


#: Integers a float holds exactly: larger ones (a 64-bit seed) keep the column a float column.
EXACT_INTEGER = 2 ** 53


def _integers_only(values: list[Any]) -> bool:
    """True if some value is a JSON integer and every other is missing (None or absent), not a float or
    text, nor an integer beyond :data:`EXACT_INTEGER` (the column is read as floats first)."""
    found = False
    for value in values:
        if type(value) is int and abs(value) <= EXACT_INTEGER:
            found = True
        elif value is not None:
            return False
    return found


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _last_line(text: Any) -> Optional[str]:
    if not isinstance(text, str):
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None
