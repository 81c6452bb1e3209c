"""A run as an Optuna study, so that ``optuna-dashboard STORAGE_URL`` (or any Optuna tool) shows it.

One trial per configuration: its searched hyperparameters as parameters, with the Optuna
distribution matching the space (``FloatDistribution`` with ``log``, ``IntDistribution``,
``CategoricalDistribution``); its per-epoch validation losses as intermediate values (step =
epoch, from the longest history; the loss at each budget where the log has no history); its value
the loss at the highest budget where it succeeded. A configuration that only failed is a ``FAIL``
trial. User attributes say which: ``config_id``, ``budget`` (of the value), ``budgets`` (every
budget it ran at), ``results_dir``, and a failure's ``reason``. The study is named after the run
(minimised) and holds the run's metadata as user attributes. Needs optuna (``pip install
hpo[export]``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np
import pandas as pd

from hpo.errors import UserError
from hpo.report.loading import RunLog, parse_history, read_run


@dataclass
class ExportSummary:
    study_name: str
    storage_url: str
    complete: int  # trials with a value
    failed: int  # trials of configurations that only failed
    skipped: int  # configurations logged without any result


def export_run(directory: str | os.PathLike, storage_url: str, study_name: Optional[str] = None) -> ExportSummary:
    """Write the run in ``directory`` to the Optuna storage ``storage_url`` as a new study."""
    optuna = _import_optuna()
    run = read_run(directory)
    name = study_name or str(run.metadata.get("run_id") or run.name)
    distributions = optuna_distributions(run)
    trials = [trial for trial in (_trial(run, config_id, rows, distributions) for config_id, rows in
                                  run.results.groupby("config_id", sort=False)) if trial is not None]
    trials.sort(key=lambda trial: trial.datetime_start or datetime.min.replace(tzinfo=timezone.utc))
    storage = _open_storage(optuna, storage_url)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        raise UserError(f"--optuna {storage_url}: a study named {name!r} exists there already; pick another name "
                        f"with --study-name (or another storage)") from None
    for key, value in _study_attributes(run).items():
        study.set_user_attr(key, value)
    study.add_trials(trials)
    complete = sum(1 for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE)
    skipped = len(set(run.configs.index) - set(run.results["config_id"]))
    return ExportSummary(name, storage_url, complete, len(trials) - complete, skipped)


def optuna_distributions(run: RunLog) -> dict[str, Any]:
    """The Optuna distribution of each searched hyperparameter, from ``run.json``'s space (or, for a
    log without it, from the values the configurations took)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    declared = {item.get("name"): item for item in run.metadata.get("hyperparameters") or [] if isinstance(item, dict)}
    found: dict[str, Any] = {}
    for hp in run.hyperparameters:
        item = declared.get(hp.name, {})
        seen = run.configs[hp.name].dropna() if hp.name in run.configs.columns else pd.Series([], dtype=object)
        if hp.numeric:
            low, high = item.get("low"), item.get("high")
            if low is None or high is None:
                if seen.empty:
                    continue
                low, high = seen.astype(float).min(), seen.astype(float).max()
            if hp.type == "int":
                found[hp.name] = IntDistribution(int(low), int(high), log=hp.log)
            else:
                found[hp.name] = FloatDistribution(float(low), float(high), log=hp.log)
        else:
            choices = list(hp.choices) or sorted({_plain(v) for v in seen}, key=str)
            extra = [value for value in (_plain(v) for v in seen.unique()) if value not in choices]
            if choices or extra:
                found[hp.name] = CategoricalDistribution([*choices, *extra])
    return found


def _trial(run: RunLog, config_id: str, rows: pd.DataFrame, distributions: dict[str, Any]):
    from optuna.trial import FrozenTrial, TrialState

    ok = rows[rows["status"] == "ok"]
    config = run.configs.loc[config_id] if config_id in run.configs.index else pd.Series(dtype=object)
    params, used = {}, {}
    for name, distribution in distributions.items():
        value = config.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # inactive (a conditional hyperparameter)
        value = _param_value(distribution, _plain(value))
        if value is not None:
            params[name], used[name] = value, distribution
    attrs: dict[str, Any] = {"config_id": config_id, "results_dir": str(run.directory),
                             "budgets": sorted({float(b) for b in rows["budget"]})}
    if ok.empty:
        state, value = TrialState.FAIL, None
        last = rows.sort_values("budget").iloc[-1]
        attrs["reason"] = str(last["reason"])
        if isinstance(last["message"], str) and last["message"]:
            attrs["message"] = last["message"][:500]
    else:
        best = ok.sort_values(["budget", "finished"]).iloc[-1]
        state, value = TrialState.COMPLETE, float(best["loss"])
        attrs["budget"] = float(best["budget"])
        for metric in ("val_accuracy", "test_accuracy"):
            if pd.notna(best.get(metric)):
                attrs[metric] = float(best[metric])
    return FrozenTrial(
        number=0, trial_id=0, state=state, value=value,
        datetime_start=_time(rows["started"].min()), datetime_complete=_time(rows["finished"].max()),
        params=params, distributions=used, user_attrs=attrs, system_attrs={},
        intermediate_values=_intermediate_values(ok),
    )


def _intermediate_values(ok: pd.DataFrame) -> dict[int, float]:
    """Validation loss per epoch: every history the configuration's results hold (a later epoch of a
    longer one wins); the loss at each budget (step: its epochs) where there is none."""
    values: dict[int, float] = {}
    for _, row in ok.sort_values("budget").iterrows():
        history = parse_history(row["history"])
        if history:
            for number, entry in enumerate(history, start=1):
                epoch, loss = entry.get("epoch", number), entry.get("val_loss")
                if isinstance(epoch, (int, float)) and isinstance(loss, (int, float)) and math.isfinite(loss):
                    values[int(epoch)] = float(loss)
        else:
            step = row["epochs"] if pd.notna(row["epochs"]) else row["budget"]
            values.setdefault(int(round(step)), float(row["loss"]))
    return values


def _study_attributes(run: RunLog) -> dict[str, Any]:
    meta = run.metadata
    attrs = {"results_dir": str(run.directory), "source": "hpo export"}
    for key in ("run_id", "space_file", "space_name", "optimizer", "job", "min_budget", "max_budget", "eta",
                "iterations", "seed", "started_at", "finished_at", "status"):
        if meta.get(key) is not None:
            attrs[key] = meta[key]
    if run.loss_metric:
        attrs["loss_metric"] = run.loss_metric
    constants = {item["name"]: item.get("value") for item in meta.get("hyperparameters") or []
                 if isinstance(item, dict) and item.get("type") == "constant" and "name" in item}
    if constants:
        attrs["constants"] = constants
    return attrs


def _open_storage(optuna, url: str):
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # a bad URL, a missing driver, a directory that is not there...
        lines = str(exc).strip().splitlines()
        raise UserError(f"--optuna {url}: cannot open the storage ({lines[0] if lines else type(exc).__name__})") \
            from None


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("hpo export --optuna needs optuna: pip install 'hpo[export]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


def _param_value(distribution: Any, value: Any) -> Any:
    """``value`` as ``distribution`` holds it (an int for an IntDistribution...), or None when it
    lies outside (a log that disagrees with its run.json)."""
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(distribution, IntDistribution) and isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(distribution, FloatDistribution) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        inside = distribution._contains(distribution.to_internal_repr(value))  # what Optuna itself checks
    except (ValueError, TypeError):
        return None
    return value if inside else None


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (what Optuna stores)."""
    return value.item() if isinstance(value, np.generic) else value


def _time(unix: float) -> Optional[datetime]:
    return None if unix is None or not math.isfinite(unix) else datetime.fromtimestamp(float(unix), tz=timezone.utc)
