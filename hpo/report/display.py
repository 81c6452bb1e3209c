"""What a value or a table looks like on the page: cell text for numbers, budgets, counts,
durations and hyperparameter values, and the summary tables turned into display strings.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import numpy as np
import pandas as pd

from hpo.report.loading import Hyperparameter

MISSING = "-"

HEADERS = {
    "loss": "loss",
    "train_loss": "train loss",
    "train_accuracy": "train acc.",
    "val_loss": "val. loss",
    "val_accuracy": "val. acc.",
    "test_accuracy": "test acc.",
    "budget": "budget",
    "config_id": "config",
    "run": "run",
}



# --- values -------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def number_text(value: Any, digits: int = 4) -> str:
    return MISSING if is_missing(value) else f"{float(value):.{digits}f}"


def budget_text(value: Any) -> str:
    if is_missing(value):
        return MISSING
    return str(int(value)) if float(value).is_integer() else f"{float(value):g}"


def count_text(value: Any) -> str:
    return MISSING if is_missing(value) else f"{int(value):,}"


def hours_text(hours: Any) -> str:
    if is_missing(hours):
        return MISSING
    return f"{hours:,.2f}" if hours < 10 else f"{hours:,.1f}"


def duration_text(seconds: Any) -> str:
    """``5400`` -> ``"1h 30m"``: the two largest units."""
    if is_missing(seconds):
        return MISSING
    total = int(round(float(seconds)))
    if total < 60:
        return f"{total}s"
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if total >= size:
            return f"{total // size}{unit} {(total % size) // smaller_size}{smaller}"
    return f"{total}s"


def hyperparameter_text(value: Any, hyperparameter: Optional[Hyperparameter]) -> str:
    """A hyperparameter value as shown in tables: ``1.33e-02`` when log-scaled, a dash when inactive."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if isinstance(value, (int, np.integer)) or (hyperparameter is not None and hyperparameter.type == "int"):
        return str(int(value))
    if hyperparameter is not None and hyperparameter.log:
        return f"{value:.2e}"
    return f"{value:.4g}"


# --- tables for display ----------------------------------------------------------------------


def top_display(top: pd.DataFrame, hyperparameters: Iterable[Hyperparameter]) -> pd.DataFrame:
    """The best-configurations table as strings; the loss column only when it is not the val. loss."""
    by_name = {hp.name: hp for hp in hyperparameters}
    shown = pd.DataFrame(index=top.index)
    redundant_loss = "val_loss" in top.columns and np.allclose(
        top["loss"].to_numpy(dtype=float), top["val_loss"].to_numpy(dtype=float), equal_nan=True
    )
    for column in top.columns:
        values = top[column]
        if column == "run":
            shown["run"] = values.astype(str)
        elif column == "loss":
            if not redundant_loss:
                shown["loss"] = values.map(number_text)
        elif column in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_accuracy"):
            shown[HEADERS[column]] = values.map(number_text)
        elif column == "budget":
            shown["budget"] = values.map(budget_text)
        elif column == "config_id":
            shown["config"] = values.astype(str)
        else:
            hp = by_name.get(column)
            shown[column] = values.map(lambda v, hp=hp: hyperparameter_text(v, hp))
    return shown.reset_index(drop=True)


def budgets_display(budgets: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "budget": budgets["budget"].map(budget_text),
            "configs": budgets["configs"].map(count_text),
            "runs": budgets["runs"].map(count_text),
            "failed": budgets["failed"].map(count_text),
            "epochs": budgets["epochs"].map(count_text),
            "best loss": budgets["best_loss"].map(number_text),
            "median loss": budgets["median_loss"].map(number_text),
            "best config": budgets["best_config"].map(lambda v: MISSING if is_missing(v) else str(v)),
        }
    )


def failures_display(failures: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "config": failures["config_id"].astype(str),
            "budget": failures["budget"].map(budget_text),
            "reason": failures["reason"].astype(str),
            "message": failures["message"].map(lambda m: MISSING if is_missing(m) or m == "" else shorten(str(m), 100)),
        }
    )


def trajectory_display(trajectory: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "wall time": trajectory["wall_time"].map(duration_text),
            "epochs trained": trajectory["epochs"].map(count_text),
            "budget": trajectory["budget"].map(budget_text),
            "loss": trajectory["loss"].map(number_text),
            "config": trajectory["config_id"].astype(str),
        }
    )


def correlations_display(correlations: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "budgets": [f"{budget_text(a)} -> {budget_text(b)}" for a, b in zip(correlations["budget_low"], correlations["budget_high"])],
            "configs on both": correlations["configs"].map(count_text),
            "Spearman rho": correlations["spearman"].map(lambda v: number_text(v, 3)),
        }
    )


def comparison_display(comparison: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run": comparison["run"].astype(str),
            "optimizer": comparison["optimizer"].map(lambda v: MISSING if is_missing(v) else str(v)),
            "configs": comparison["configs"].map(count_text),
            "results": comparison["results"].map(count_text),
            "failed": comparison["failed"].map(count_text),
            "max budget": comparison["max_budget"].map(budget_text),
            "best loss": comparison["best_loss"].map(number_text),
            "best val. acc.": comparison["best_val_accuracy"].map(number_text),
            "its test acc.": comparison["best_test_accuracy"].map(number_text),
            "epochs": comparison["epochs"].map(count_text),
            "worker-hours": comparison["worker_hours"].map(hours_text),
            "wall time": comparison["wall_time"].map(duration_text),
        }
    )


def compute_text(compute: dict) -> str:
    """One line: results, epochs, budget, worker-hours, wall time, and the run's state when known."""
    epochs = "" if compute["epochs"] is None else f"{count_text(compute['epochs'])} epochs trained, "
    used = compute["budget_used"]
    used_text = count_text(used) if float(used).is_integer() else budget_text(used)
    state = compute.get("status")
    known = f" (run {state})" if state and state != "unknown" else ""
    stopped = (f" (not counting {duration_text(compute['stopped_time'])} stopped between starts)"
               if compute.get("stopped_time") else "")
    return (
        f"{count_text(compute['results'])} results of {count_text(compute['configs'])} configurations "
        f"({count_text(compute['failed'])} failed); {epochs}budget used {used_text}; "
        f"{hours_text(compute['worker_hours'])} worker-hours; wall time {duration_text(compute['wall_time'])}"
        f"{stopped}{known}"
    )


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``...`` when cut."""
    return text if len(text) <= width else text[: width - 3] + "..."
