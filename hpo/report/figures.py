"""Interactive plotly figures of one run, shared by ``hpo dashboard`` and ``hpo-report --html``.

One function per chart, each taking a :class:`~hpo.report.tables.RunReport` and returning a
``plotly.graph_objects.Figure``. Loss axes survive outliers (a diverged job does not flatten the
rest: :mod:`hpo.report.loss_scale` decides every loss axis) and failed or crashed jobs are drawn
as their own marker at the axis' top edge. Every function copes with no successful result, one
budget and no histories (it then returns a figure saying so). The parallel coordinates are in
:mod:`hpo.report.parallel_coordinates`, what the charts share in :mod:`hpo.report.figure_parts`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hpo.report.axis_values import budget_title, categories, loss_title, time_unit
from hpo.report.display import budget_text
from hpo.report.figure_parts import (
    COLOURS, FAILED_COLOUR, FAILED_SYMBOL, OUTLIER_SYMBOL, PLOT_CONFIG, STATUS_COLOURS, empty_figure,
    headroom, jitter, sample_results, styled,
)
from hpo.report.loading import Hyperparameter, parse_history, run_start_time
from hpo.report.loss_scale import LossScale, loss_scale
from hpo.report.parallel_coordinates import parallel_coordinates
from hpo.report.status import read_attempts
from hpo.report.tables import RunReport, running_seconds, stopped_intervals, successful
from hpo.report.trials import result_status

__all__ = ["FIGURES", "PLOT_CONFIG", "all_figures", "budget_rank_correlation", "failures_by_reason",
           "incumbent_over_epochs", "incumbent_over_time", "learning_curves", "loss_vs_budget",
           "loss_vs_hyperparameters", "parallel_coordinates"]

#: Learning curves are drawn for at most this many configurations (the best ones).
MAX_CURVES = 30


# --- the charts ----------------------------------------------------------------------------------


def incumbent_over_time(report: RunReport) -> go.Figure:
    """Best loss at the highest budget evaluated so far, against wall time since the start."""
    trajectory = report.trajectory
    longest = float(trajectory["wall_time"].max()) if len(trajectory) else 0.0
    span = _run_span(report)
    unit, scale = time_unit(max(longest, span))
    figure = _incumbent(report, trajectory["wall_time"] / scale, span / scale)
    figure.update_layout(title="Incumbent loss over wall time", xaxis_title=f"wall time since the run started [{unit}]")
    return figure


def incumbent_over_epochs(report: RunReport) -> go.Figure:
    """Best loss at the highest budget evaluated so far, against the epochs all jobs trained."""
    trajectory = report.trajectory
    results = report.run.results
    if results["epochs"].notna().any():
        work, total, label = trajectory["epochs"], float(results["epochs"].sum()), "epochs trained (all jobs)"
    else:
        work, total, label = trajectory["budget_used"], float(results["budget"].sum()), "budget used (all jobs)"
    figure = _incumbent(report, work, total)
    figure.update_layout(title="Incumbent loss over compute", xaxis_title=label)
    return figure


def loss_vs_budget(report: RunReport) -> go.Figure:
    """Every result's loss at its budget (jittered), failed jobs at the top edge, the best paths."""
    results = sample_results(report.run.results)
    if results.empty:
        return empty_figure("Loss against budget", "no results yet")
    figure = go.Figure()
    ok = results[results["status"] == "ok"]
    axis = loss_scale(ok["loss"])
    budgets = np.sort(report.run.results["budget"].unique())
    log_x = len(budgets) > 2 and budgets[0] > 0 and budgets[-1] / budgets[0] >= 8
    x = results["budget"].to_numpy(dtype=float) * jitter(len(results), log_x)
    okm = (results["status"] == "ok").to_numpy()
    _add_loss_points(figure, axis, x[okm], ok, name="result", colour="rgba(90,90,90,0.55)")
    if (~okm).any():
        figure.add_trace(_failed_scatter(axis, x[~okm], results[~okm]))
    best = successful(report.run)
    for rank, config_id in enumerate(report.top["config_id"]):
        path = best[best["config_id"] == config_id].sort_values("budget")
        figure.add_trace(go.Scatter(
            x=path["budget"], y=axis.shown(path["loss"]), mode="lines+markers", name=f"#{rank + 1} {config_id}",
            line={"color": COLOURS[rank % len(COLOURS)]}, customdata=path["loss"],
            hovertemplate=f"{config_id}<br>budget %{{x}}<br>loss %{{customdata:.4g}}<extra></extra>",
        ))
    figure.update_layout(title="Loss against budget, every result", xaxis_title=budget_title(report),
                         yaxis_title=loss_title(report))
    figure.update_yaxes(range=headroom(axis), type=axis.scale)
    figure.update_xaxes(type="log" if log_x else "linear", tickvals=list(budgets),
                        ticktext=[budget_text(b) for b in budgets])
    return styled(figure)


def loss_vs_hyperparameters(report: RunReport) -> go.Figure:
    """Loss against each searched hyperparameter, one panel each, coloured by budget."""
    hyperparameters = [hp for hp in report.run.hyperparameters if hp.name in report.run.configs.columns]
    results = sample_results(report.run.results)
    if not hyperparameters:
        return empty_figure("Loss against each hyperparameter", "no searched hyperparameter is known (no configs.json?)")
    if results.empty:
        return empty_figure("Loss against each hyperparameter", "no results yet")
    columns = min(3, len(hyperparameters))
    rows = -(-len(hyperparameters) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[hp.name for hp in hyperparameters],
                           vertical_spacing=0.35 / rows, horizontal_spacing=0.08, shared_yaxes=True)
    values = report.run.configs.reindex(results["config_id"].to_numpy())
    axis = loss_scale(results.loc[results["status"] == "ok", "loss"])
    budgets = np.sort(results["budget"].unique())
    rng = np.random.default_rng(0)
    okm = (results["status"] == "ok").to_numpy()
    legend: set[str] = set()  # each budget and the failed marker once in the legend
    for index, hp in enumerate(hyperparameters):
        row, col = index // columns + 1, index % columns + 1
        column = values[hp.name].to_numpy()
        choices = categories(values[hp.name], hp) if not hp.numeric else []
        for number, budget in enumerate(budgets):
            at = (results["budget"] == budget).to_numpy() & pd.notna(column)
            if not (at & okm).any():
                continue
            name = f"budget {budget_text(budget)}"
            figure.add_trace(_loss_scatter(
                axis, _positions(column[at & okm], hp, choices, rng), results[at & okm], name=name,
                colour=COLOURS[number % len(COLOURS)], legendgroup=name, showlegend=name not in legend,
            ), row=row, col=col)
            legend.add(name)
        failed = pd.notna(column) & ~okm
        if failed.any():
            figure.add_trace(_failed_scatter(axis, _positions(column[failed], hp, choices, rng), results[failed],
                                             showlegend="failed" not in legend), row=row, col=col)
            legend.add("failed")
        if hp.numeric:
            figure.update_xaxes(type="log" if hp.log else "linear", title_text=hp.name + (" (log)" if hp.log else ""),
                                row=row, col=col)
        else:
            figure.update_xaxes(tickvals=list(range(len(choices))), ticktext=[str(c) for c in choices],
                                title_text=hp.name, row=row, col=col)
    figure.update_yaxes(range=headroom(axis), type=axis.scale)
    figure.update_yaxes(title_text=loss_title(report), col=1)
    figure.update_layout(title="Loss against each hyperparameter (colour: budget)", height=max(380, 300 * rows),
                         legend_title_text="budget")
    return styled(figure)


def learning_curves(report: RunReport, limit: int = MAX_CURVES) -> go.Figure:
    """Validation loss per epoch of the best configurations (the history of each one's highest-budget result)."""
    results = report.run.results
    ranked = _configs_by_rank(report)[:limit]
    curves = []
    for config_id in ranked:
        rows = results[(results["config_id"] == config_id) & results["history"].notna()]
        if rows.empty:
            continue
        row = rows.sort_values(["budget", "finished"]).iloc[-1]
        history = parse_history(row["history"])
        if history:
            frame = pd.DataFrame(history)
            if "val_loss" in frame:
                epochs = frame["epoch"] if "epoch" in frame else pd.Series(range(1, len(frame) + 1))
                losses = pd.to_numeric(frame["val_loss"], errors="coerce").to_numpy(dtype=float)
                curves.append((config_id, epochs.to_numpy(dtype=float), losses))
    if not curves:
        return empty_figure("Learning curves", "no per-epoch history in the log")
    axis = loss_scale(np.concatenate([losses for _, _, losses in curves]))
    figure = go.Figure()
    for rank, (config_id, epochs, losses) in enumerate(curves):
        figure.add_trace(go.Scatter(
            x=epochs, y=axis.shown(losses), mode="lines+markers", name=config_id, customdata=losses,
            line={"color": COLOURS[rank % len(COLOURS)], "width": 2 if rank < 5 else 1}, marker={"size": 4},
            opacity=1.0 if rank < 5 else 0.6,
            hovertemplate=f"{config_id}<br>epoch %{{x}}<br>val. loss %{{customdata:.4g}}<extra></extra>",
        ))
        out = axis.is_outlier(losses)
        if out.any():
            figure.add_trace(_outlier_marks(epochs[out], axis, losses[out], config_id))
    figure.update_layout(title=f"Learning curves: validation loss per epoch (best {len(curves)})",
                         xaxis_title="epoch", yaxis_title="validation loss")
    figure.update_yaxes(range=headroom(axis), type=axis.scale)
    return styled(figure)


def budget_rank_correlation(report: RunReport) -> go.Figure:
    """Spearman rank correlation of the losses of configurations evaluated on both budgets of each pair."""
    ok = successful(report.run)
    losses = ok.pivot_table(index="config_id", columns="budget", values="loss", aggfunc="min")
    budgets = list(losses.columns)
    if len(budgets) < 2:
        return empty_figure("Budget rank correlation", "needs results on at least two budgets")
    size = len(budgets)
    matrix = np.full((size, size), np.nan)
    counts = np.zeros((size, size), dtype=int)
    for i, low in enumerate(budgets):
        for j, high in enumerate(budgets):
            pair = losses[[low, high]].dropna() if i != j else losses[[low]].dropna()
            counts[i, j] = len(pair)
            if i == j:
                matrix[i, j] = 1.0 if len(pair) else np.nan
            elif len(pair) >= 3:
                ranks = pair.rank()
                matrix[i, j] = ranks[low].corr(ranks[high])
    labels = [budget_text(b) for b in budgets]
    text = [[("-" if math.isnan(matrix[i, j]) else f"{matrix[i, j]:.2f}") + f"<br>n={counts[i, j]}" for j in range(size)]
            for i in range(size)]
    figure = go.Figure(go.Heatmap(
        z=np.where(np.isnan(matrix), None, matrix).tolist(), x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu",
        text=text, texttemplate="%{text}", hovertemplate="budgets %{y} and %{x}<br>rho %{z:.2f}<extra></extra>",
        colorbar={"title": {"text": "Spearman"}},
    ))
    figure.update_layout(title="Budget rank correlation (configurations on both budgets; n < 3: -)",
                         xaxis_title="budget", yaxis_title="budget", xaxis_type="category", yaxis_type="category")
    return styled(figure)


def failures_by_reason(report: RunReport) -> go.Figure:
    """How many jobs failed or crashed, by reason (and, when the run lost any, attempts lost with their worker)."""
    failed = report.run.results[report.run.results["status"] != "ok"]
    failed = failed.assign(status=[result_status(s, r) for s, r in zip(failed["status"], failed["reason"])])
    counts = failed.groupby(["status", "reason"]).size().reset_index(name="jobs") if len(failed) else pd.DataFrame()
    attempts = report.status.lost_attempts if report.status is not None else read_attempts(report.run.directory)
    lost = attempts["reason"].fillna("worker lost").astype(str).value_counts().to_dict() if len(attempts) else {}
    if counts.empty and not lost:
        return empty_figure("Failures", "no failed job")
    figure = go.Figure()
    for status, group in (counts.groupby("status") if len(counts) else []):
        figure.add_trace(go.Bar(x=group["reason"].astype(str), y=group["jobs"], name=str(status),
                                marker_color=STATUS_COLOURS.get(str(status), "#8c564b")))
    if lost:
        figure.add_trace(go.Bar(x=list(lost), y=list(lost.values()), name="attempt lost (run again)",
                                marker_color=STATUS_COLOURS["lost"]))
    figure.update_layout(title="Failures by reason", xaxis_title="reason", yaxis_title="jobs", barmode="stack")
    return styled(figure)


#: Every chart, in the order pages show them: (id, title, function).
FIGURES: tuple[tuple[str, str, Callable[[RunReport], go.Figure]], ...] = (
    ("incumbent_time", "Incumbent over wall time", incumbent_over_time),
    ("incumbent_epochs", "Incumbent over epochs", incumbent_over_epochs),
    ("loss_vs_budget", "Loss against budget", loss_vs_budget),
    ("hyperparameters", "Loss against each hyperparameter", loss_vs_hyperparameters),
    ("parallel", "Parallel coordinates", parallel_coordinates),
    ("learning_curves", "Learning curves", learning_curves),
    ("rank_correlation", "Budget rank correlation", budget_rank_correlation),
    ("failures", "Failures", failures_by_reason),
)


def all_figures(report: Optional[RunReport]) -> dict[str, go.Figure]:
    """Every chart of a run, by id (placeholders saying "no results yet" when ``report`` is None)."""
    if report is None:
        return {key: empty_figure(title, "no results yet") for key, title, _ in FIGURES}
    return {key: function(report) for key, _, function in FIGURES}


# --- building blocks -----------------------------------------------------------------------------


def _incumbent(report: RunReport, x: pd.Series, end: float) -> go.Figure:
    trajectory = report.trajectory
    if trajectory.empty:
        return empty_figure("Incumbent", "no successful result yet")
    axis = loss_scale(trajectory["loss"])
    xs = list(x.to_numpy(dtype=float))
    ys = list(axis.shown(trajectory["loss"]))
    if end > xs[-1]:  # the incumbent holds until the last result
        xs.append(end)
        ys.append(ys[-1])
    custom = [[c, budget_text(b)] for c, b in zip(trajectory["config_id"], trajectory["budget"])]
    custom += custom[-1:] * (len(xs) - len(custom))
    figure = go.Figure(go.Scatter(
        x=xs, y=ys, mode="lines+markers", line_shape="hv", name="incumbent", customdata=custom,
        hovertemplate="%{customdata[0]} at budget %{customdata[1]}<br>loss %{y:.4g}<extra></extra>",
    ))
    figure.update_yaxes(title_text=loss_title(report), range=headroom(axis), type=axis.scale)
    return styled(figure)


def _loss_scatter(axis: LossScale, x: np.ndarray, rows: pd.DataFrame, name: str, colour: str, **extra: Any) -> go.Scatter:
    losses = rows["loss"].to_numpy(dtype=float)
    out = axis.is_outlier(losses)
    return go.Scatter(
        x=x, y=axis.shown(losses), mode="markers", name=name,
        marker={"color": colour, "size": np.where(out, 10, 6), "symbol": np.where(out, OUTLIER_SYMBOL, "circle").tolist()},
        text=rows["config_id"].astype(str).tolist(), customdata=losses,
        hovertemplate="%{text}<br>loss %{customdata:.4g}<extra>" + name + "</extra>", **extra,
    )


def _add_loss_points(figure: go.Figure, axis: LossScale, x: np.ndarray, rows: pd.DataFrame, name: str,
                     colour: str) -> None:
    """``rows`` as points, and a legend entry for the outliers' triangles when there are any."""
    figure.add_trace(_loss_scatter(axis, x, rows, name, colour))
    out = axis.is_outlier(rows["loss"].to_numpy(dtype=float))
    if out.any():  # a legend entry saying what the triangles are
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"loss above {axis.limits[1]:.3g} (at the edge)",
                                    marker={"symbol": OUTLIER_SYMBOL, "size": 10, "color": colour}))


def _failed_scatter(axis: LossScale, x: np.ndarray, rows: pd.DataFrame, showlegend: bool = True) -> go.Scatter:
    reasons = (rows["status"].astype(str) + ": " + rows["reason"].fillna("").astype(str)).to_numpy()
    return go.Scatter(
        x=x, y=np.full(len(rows), axis.edge), mode="markers", name="failed / crashed", legendgroup="failed",
        showlegend=showlegend, marker={"color": FAILED_COLOUR, "symbol": FAILED_SYMBOL, "size": 9},
        customdata=np.stack([rows["config_id"].astype(str).to_numpy(), reasons], axis=-1),
        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<extra>failed</extra>",
    )


def _outlier_marks(x: np.ndarray, axis: LossScale, losses: np.ndarray, config_id: str) -> go.Scatter:
    return go.Scatter(x=x, y=np.full(len(x), axis.edge), mode="markers", showlegend=False, customdata=losses,
                      marker={"symbol": OUTLIER_SYMBOL, "size": 10, "color": FAILED_COLOUR},
                      hovertemplate=f"{config_id}<br>epoch %{{x}}<br>val. loss %{{customdata:.4g}} (off the axis)<extra></extra>")


def _configs_by_rank(report: RunReport) -> list[str]:
    """Configuration ids, best first: by the highest budget reached, then by loss there."""
    ok = successful(report.run)
    if ok.empty:
        return []
    best = ok.sort_values(["budget", "loss"], ascending=[False, True], kind="stable").drop_duplicates("config_id")
    return list(best["config_id"])


def _positions(values: np.ndarray, hp: Hyperparameter, choices: list, rng: np.random.Generator) -> np.ndarray:
    """Where values of ``hp`` go on its axis: numbers as they are, categories at their index (jittered)."""
    if hp.numeric:
        return values.astype(float)
    position = {value: index for index, value in enumerate(choices)}
    return np.array([position[v] for v in values], dtype=float) + rng.uniform(-0.2, 0.2, len(values))


def _run_span(report: RunReport) -> float:
    results = report.run.results
    if results.empty:
        return 0.0
    span = running_seconds(run_start_time(report.run), float(results["finished"].max()), stopped_intervals(report.run))
    return span if math.isfinite(span) else 0.0
