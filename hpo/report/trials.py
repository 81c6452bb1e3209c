"""Every result of a run as one table: the notebook API (``hpo.report.load_run``) and ``--all``.

Like Optuna's ``Study.trials_dataframe()``, one row per result (a configuration at a budget):

    import hpo.report
    trials = hpo.report.load_run("results/run1")
    trials[trials.status == "ok"].groupby("budget").loss.min()
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from hpo.report.loading import RunLog, read_run
from hpo.report.result_lines import INFO_NUMBERS

#: Failure reasons shown as their own status (besides ``ok``, ``failed`` and ``crashed``).
STATUS_REASONS = {"diverged": "diverged", "worker_lost": "lost"}

#: Result columns of :func:`trials_frame`, in order, after ``config_id``, ``iteration`` and the
#: hyperparameters; a hyperparameter named like one of them gets the prefix ``param_``.
RESULT_COLUMNS = (
    "budget", "loss", *[name for name in INFO_NUMBERS if name not in ("epochs", "wall_time")],
    "status", "reason", "message", "attempts", "lost_attempts",
    "submitted", "started", "finished", "duration", "wall_time", "epochs", "epochs_trained",
)

_NOT_EXTRA = frozenset({"config_id", "iteration", "history", "attempt", *RESULT_COLUMNS})


def result_status(status: str, reason: object) -> str:
    """``ok``, ``diverged``, ``lost`` (its worker died on every attempt), ``failed`` or ``crashed``."""
    if status == "failed" and isinstance(reason, str):
        return STATUS_REASONS.get(reason, "failed")
    return status


def trials_frame(run: RunLog) -> pd.DataFrame:
    """One row per result of ``run``, in the order the results finished.

    Columns: ``config_id``, ``iteration``; every key of the configuration (searched
    hyperparameters first, then constants; missing where a conditional one is inactive) and
    ``model_based_pick``; ``budget``, ``loss`` (NaN unless ok), the train/val/test losses and
    accuracies, any other numeric metric the job reported; ``status`` (ok, failed, diverged,
    crashed, lost), ``reason`` and ``message`` of a failure; ``attempts`` (which attempt gave the
    result, 1 unless a worker died) and ``lost_attempts``; ``submitted``, ``started``, ``finished``
    (timezone-aware UTC timestamps), ``duration`` (seconds from start to finish), ``wall_time``
    (seconds the job reports training), ``epochs`` (trained by this job) and ``epochs_trained`` (as
    the job reported it; missing where it did not say).

    A number from the job's ``info`` is an integer column (pandas' nullable ``Int64``, missing as
    ``<NA>``) when the log holds it only as integers (``seed``, ``trainable_params``, ``epochs``...),
    else float.
    """
    results = run.results.sort_values(["finished", "submitted"], kind="stable", na_position="last")
    results = results.reset_index(drop=True)
    frame = pd.DataFrame({"config_id": results["config_id"].astype(object), "iteration": results["iteration"]})
    searched = [hp.name for hp in run.hyperparameters if hp.name in run.configs.columns]
    others = [name for name in run.configs.columns if name not in searched and name != "model_based_pick"]
    configs = run.configs.reindex(results["config_id"].to_numpy())
    for name in [*searched, *others, "model_based_pick"]:
        if name not in configs.columns:
            continue
        column = f"param_{name}" if name in _NOT_EXTRA or name in frame.columns else name
        frame[column] = configs[name].to_numpy()
    frame["budget"] = results["budget"].to_numpy()
    frame["loss"] = results["loss"].to_numpy()
    for name in INFO_NUMBERS:
        if name not in ("epochs", "wall_time"):
            frame[name] = results[name].to_numpy()
    extras = [name for name in results.columns if name not in _NOT_EXTRA and name not in frame.columns]
    for name in extras:
        frame[name] = results[name].to_numpy()
    frame["status"] = [result_status(s, r) for s, r in zip(results["status"], results["reason"])]
    frame["reason"] = results["reason"].to_numpy()
    frame["message"] = results["message"].to_numpy()
    attempts = results["attempt"].to_numpy(dtype=float)
    frame["attempts"] = np.where(np.isnan(attempts), 1, attempts).astype("int64")
    frame["lost_attempts"] = results["lost_attempts"].to_numpy()
    for name in ("submitted", "started", "finished"):
        frame[name] = pd.to_datetime(results[name], unit="s", utc=True)
    frame["duration"] = (results["finished"] - results["started"]).to_numpy()
    frame["wall_time"] = results["wall_time"].to_numpy()
    frame["epochs"] = results["epochs"].to_numpy()
    frame["epochs_trained"] = results["epochs_trained"].to_numpy()
    for name in (*INFO_NUMBERS, "epochs_trained", *extras):  # the columns taken from info
        if name in run.integer_columns:
            frame[name] = pd.array(results[name].to_numpy(dtype=float), dtype="Int64")
    return frame


def load_run(path: str | os.PathLike) -> pd.DataFrame:
    """Every result of the run in ``path`` (a results directory) as a DataFrame: see :func:`trials_frame`.

    Reads this service's logs and hpbandster's own ``json_result_logger`` logs, also while the run
    is going. Raises :class:`hpo.errors.UserError` when ``path`` holds no readable log.
    """
    return trials_frame(read_run(path))


def all_trials(runs: list[RunLog]) -> pd.DataFrame:
    """Every result of several runs in one table, with a ``run`` column first."""
    frames = [trials_frame(run).assign(run=run.name) for run in runs]
    table = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame(columns=["run"])
    for name in table.columns:  # integers in one run: Int64 if the others hold integers or nothing, else floats
        if pd.api.types.is_float_dtype(table[name]) and any(_nullable_integers(frame, name) for frame in frames):
            having = [frame for frame in frames if name in frame.columns and frame[name].notna().any()]
            values = table[name].to_numpy(dtype=float, na_value=np.nan)
            integral = all(_nullable_integers(frame, name) for frame in having)
            table[name] = pd.array(values, dtype="Int64") if integral else values
    return table[["run", *[c for c in table.columns if c != "run"]]]


def _nullable_integers(frame: pd.DataFrame, name: str) -> bool:
    return name in frame.columns and isinstance(frame[name].dtype, pd.Int64Dtype)


def trials_csv(table: pd.DataFrame) -> str:
    """The table as CSV, times in ISO 8601."""
    return _with_iso_times(table).to_csv(index=False, lineterminator="\n")


def trials_json(table: pd.DataFrame) -> str:
    """The table as a JSON list of objects (one per result), times in ISO 8601, null where missing."""
    from hpo.report.formatting import json_safe

    records = _with_iso_times(table).to_dict(orient="records")
    return json.dumps(json_safe(records), indent=1, allow_nan=False) + "\n"


def _with_iso_times(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for name in ("submitted", "started", "finished"):
        if name in table.columns:
            table[name] = [None if pd.isna(t) else t.isoformat() for t in table[name]]
    return table
