"""The report's tables, as pandas DataFrames: best configurations and the run's summary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from hpo.errors import UserError
from hpo.report.loading import RunLog, parse_time, run_start_time
from hpo.report.status import RunStatus, run_status

DEFAULT_TOP = 6

#: Measurement columns of the best-configurations table, in order (as in the seed's Tables 13/14).
METRIC_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_accuracy")


@dataclass
class RunReport:
    """A run and every table the report shows about it."""

    run: RunLog
    top_budget: Optional[float]
    top: pd.DataFrame
    budgets: pd.DataFrame
    failures: pd.DataFrame
    trajectory: pd.DataFrame
    correlations: pd.DataFrame
    compute: dict
    status: Optional[RunStatus] = None  # finished, failed, interrupted, running, stopped without a status

    @property
    def name(self) -> str:
        return self.run.name


def build_report(run: RunLog, top: int = DEFAULT_TOP, budget: Optional[float] = None) -> RunReport:
    """Compute all tables of one run."""
    top_budget = budget if budget is not None else highest_budget(run)
    status = run_status(run)
    return RunReport(
        run=run,
        top_budget=top_budget,
        top=top_configurations(run, top, top_budget),
        budgets=budget_summary(run),
        failures=failures(run),
        trajectory=incumbent_trajectory(run),
        correlations=rank_correlations(run),
        compute=compute_used(run, status),
        status=status,
    )


def successful(run: RunLog) -> pd.DataFrame:
    results = run.results
    return results[results["status"] == "ok"]


def highest_budget(run: RunLog) -> Optional[float]:
    """The highest budget with at least one successful result (None if none succeeded)."""
    ok = successful(run)
    return float(ok["budget"].max()) if not ok.empty else None


def top_configurations(run: RunLog, k: int = DEFAULT_TOP, budget: Optional[float] = None) -> pd.DataFrame:
    """The ``k`` best configurations at ``budget`` (default: the highest reached), best first.

    Columns: each searched hyperparameter (NaN/None where inactive), ``loss``, the
    :data:`METRIC_COLUMNS` the log holds, ``budget``, ``config_id``.
    """
    names = [hp.name for hp in run.hyperparameters]
    ok = successful(run)
    if budget is None:
        budget = highest_budget(run)
    if budget is not None and not ok.empty:
        known = np.unique(run.results["budget"].to_numpy())
        if not np.isclose(known, budget).any():
            shown = ", ".join(_budget_text(b) for b in known)
            raise UserError(f"{run.directory}: no result at budget {_budget_text(budget)} (budgets: {shown})")
        ok = ok[np.isclose(ok["budget"].to_numpy(), budget)]
    best = ok.sort_values(["loss", "finished"], kind="stable").drop_duplicates("config_id").head(k)
    hyper = run.configs.reindex(best["config_id"].to_numpy(), columns=names)
    table = pd.DataFrame({name: hyper[name].to_numpy() for name in names}, index=range(len(best)))
    metrics = [m for m in METRIC_COLUMNS if best[m].notna().any()]
    table["loss"] = best["loss"].to_numpy()
    for metric in metrics:
        table[metric] = best[metric].to_numpy()
    table["budget"] = best["budget"].to_numpy()
    table["config_id"] = best["config_id"].to_numpy()
    return table


def budget_summary(run: RunLog) -> pd.DataFrame:
    """Per budget: configurations, results, failures, epochs trained, the best loss and its config."""
    results = run.results
    grouped = results.groupby("budget", sort=True)
    table = pd.DataFrame(
        {
            "configs": grouped["config_id"].nunique(),
            "runs": grouped.size(),
            "failed": grouped["status"].agg(lambda s: int((s != "ok").sum())),
            "epochs": grouped["epochs"].sum(min_count=1),
            "best_loss": grouped["loss"].min(),
        }
    )
    ok = successful(run)
    if not ok.empty:
        best_rows = ok.loc[ok.groupby("budget")["loss"].idxmin()]
        table["best_config"] = best_rows.set_index("budget")["config_id"].reindex(table.index)
        table["median_loss"] = ok.groupby("budget")["loss"].median().reindex(table.index)
    else:
        table["best_config"] = None
        table["median_loss"] = math.nan
    return table.reset_index()[["budget", "configs", "runs", "failed", "epochs", "best_loss", "median_loss", "best_config"]]


def failures(run: RunLog) -> pd.DataFrame:
    """Every failed or crashed result with its reason and message, in the order they finished."""
    failed = run.results[run.results["status"] != "ok"].sort_values("finished", kind="stable")
    return failed[["config_id", "budget", "status", "reason", "message"]].reset_index(drop=True)


def incumbent_trajectory(run: RunLog) -> pd.DataFrame:
    """Each time the incumbent changed: hpbandster's definition, the best loss at the highest budget
    evaluated so far (a first result on a higher budget replaces the incumbent).

    ``wall_time`` is seconds the run ran since it started (a resumed run's time stopped left out, see
    :func:`stopped_intervals`), ``epochs`` the epochs trained by all jobs
    finished so far (NaN when the log records none), ``budget_used`` the sum of their budgets.
    """
    results = run.results.sort_values("finished", kind="stable")
    start = run_start_time(run)
    pauses = stopped_intervals(run)
    epochs = results["epochs"].fillna(0.0).cumsum() if results["epochs"].notna().any() else results["epochs"]
    budget_used = results["budget"].cumsum()
    ok_mask = (results["status"] == "ok").to_numpy()
    budgets = np.where(ok_mask, results["budget"].to_numpy(), -np.inf)
    level = np.maximum.accumulate(budgets)
    losses = np.where(ok_mask & (budgets == level), results["loss"].to_numpy(), np.inf)
    frame = pd.DataFrame({"level": level, "loss": losses})
    incumbent = frame.groupby("level", sort=False)["loss"].cummin().to_numpy()
    changed = np.isfinite(incumbent) & ok_mask & (losses == incumbent)
    previous = np.concatenate([[np.nan], incumbent[:-1]])
    previous_level = np.concatenate([[np.nan], level[:-1]])
    changed &= (incumbent != previous) | (level != previous_level)
    picked = results[changed]
    return pd.DataFrame(
        {
            "wall_time": np.asarray([running_seconds(start, t, pauses) for t in picked["finished"]], dtype=float),
            "epochs": epochs[changed].to_numpy(),
            "budget_used": budget_used[changed].to_numpy(),
            "budget": picked["budget"].to_numpy(),
            "loss": picked["loss"].to_numpy(),
            "config_id": picked["config_id"].to_numpy(),
        }
    )


def rank_correlations(run: RunLog) -> pd.DataFrame:
    """Spearman rank correlation of the losses of configurations evaluated on successive budgets.

    High values say the low budget already predicts the high one's ranking.
    """
    ok = successful(run)
    losses = ok.pivot_table(index="config_id", columns="budget", values="loss", aggfunc="min")
    budgets = list(losses.columns)
    rows = []
    for low, high in zip(budgets, budgets[1:]):
        pair = losses[[low, high]].dropna()
        # Spearman's rho is Pearson's r of the (average) ranks; this avoids pandas' scipy import.
        ranks = pair.rank()
        value = ranks[low].corr(ranks[high]) if len(pair) >= 3 else math.nan
        rows.append({"budget_low": low, "budget_high": high, "configs": len(pair), "spearman": value})
    return pd.DataFrame(rows, columns=["budget_low", "budget_high", "configs", "spearman"])


def stopped_intervals(run: RunLog) -> list[tuple[float, float]]:
    """(from, to) of each time a resumed run was stopped: from its last result (or start) before a
    resume to that resume (``run.json``'s ``starts``). Empty for a run started once."""
    listed = run.metadata.get("starts")
    starts = sorted(t for t in (parse_time(s.get("at")) for s in (listed if isinstance(listed, list) else [])
                                if isinstance(s, dict)) if t is not None)
    finished = np.sort(run.results["finished"].dropna().to_numpy(dtype=float))
    intervals = []
    for previous, resumed in zip(starts, starts[1:]):
        before = finished[(finished >= previous) & (finished <= resumed)]
        last = float(before[-1]) if len(before) else previous
        if resumed > last:
            intervals.append((last, resumed))
    return intervals


def running_seconds(start: float, moment: float, stopped: list[tuple[float, float]]) -> float:
    """Seconds from ``start`` to ``moment`` less the time stopped in between."""
    pause = sum(max(0.0, min(end, moment) - begin) for begin, end in stopped if begin < moment)
    return moment - start - pause


def compute_used(run: RunLog, status: Optional[RunStatus] = None) -> dict:
    """Compute spent: results, epochs trained, summed budgets, worker-hours and the run's wall time.

    ``status`` is the run's state (see :mod:`hpo.report.status`; ``unknown`` without ``run.json``).
    """
    results = run.results
    busy = (results["finished"] - results["started"]).clip(lower=0).sum()
    started = parse_time(run.metadata.get("started_at"))
    finished = parse_time(run.metadata.get("finished_at"))
    pauses = stopped_intervals(run)
    if started is None or finished is None:
        started, finished = run_start_time(run), results["finished"].max()
    wall = running_seconds(started, finished, pauses)
    return {
        "configs": int(results["config_id"].nunique()),
        "results": int(len(results)),
        "failed": int((results["status"] != "ok").sum()),
        "epochs": float(results["epochs"].sum()) if results["epochs"].notna().any() else None,
        "budget_used": float(results["budget"].sum()),
        "worker_hours": float(busy) / 3600.0,
        "wall_time": _finite_or_none(wall),  # time stopped between a run's starts left out
        "stopped_time": sum(end - begin for begin, end in pauses),
        "status": (status or run_status(run)).state,
    }


def comparison_table(reports: list[RunReport]) -> pd.DataFrame:
    """One row per run, for comparing runs side by side."""
    rows = []
    for report in reports:
        meta = report.run.metadata
        best = report.top.iloc[0] if not report.top.empty else None
        rows.append(
            {
                "run": report.name,
                "optimizer": meta.get("optimizer"),
                "configs": report.compute["configs"],
                "results": report.compute["results"],
                "failed": report.compute["failed"],
                "max_budget": report.top_budget,
                "best_loss": best["loss"] if best is not None else math.nan,
                "best_val_accuracy": best["val_accuracy"] if best is not None and "val_accuracy" in best else math.nan,
                "best_test_accuracy": best["test_accuracy"] if best is not None and "test_accuracy" in best else math.nan,
                "best_config": best["config_id"] if best is not None else None,
                "epochs": report.compute["epochs"],
                "worker_hours": report.compute["worker_hours"],
                "wall_time": report.compute["wall_time"],
            }
        )
    return pd.DataFrame(rows)


def combined_top(reports: list[RunReport]) -> pd.DataFrame:
    """The best configurations of several runs in one table, with a ``run`` column first."""
    frames = [report.top.assign(run=report.name) for report in reports if not report.top.empty]
    if not frames:
        return pd.DataFrame(columns=["run"])
    table = pd.concat(frames, ignore_index=True, sort=False)
    tail = [c for c in ("loss", *METRIC_COLUMNS, "budget", "config_id") if c in table.columns]
    head = [c for c in table.columns if c not in tail and c != "run"]
    return table[["run", *head, *tail]]


def _budget_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _finite_or_none(value: float) -> Optional[float]:
    return float(value) if value is not None and math.isfinite(value) else None
