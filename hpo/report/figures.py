"""Interactive plotly figures of one run, shared by ``hpo dashboard`` and ``hpo-report --html``.

One function per chart, each taking a :class:`~hpo.report.tables.RunReport` and returning a
``plotly.graph_objects.Figure``. Loss axes survive outliers (a diverged job does not flatten the
rest: :mod:`hpo.report.loss_scale` decides every loss axis) and failed or crashed jobs are drawn
as their own marker at the axis' top edge. Every function copes with no successful result, one budget and no histories
(it then returns a figure saying so).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from hpo.report.loading import Hyperparameter, parse_history, run_start_time
from hpo.report.loss_scale import LossScale, loss_scale
from hpo.report.status import read_attempts
from hpo.report.tables import RunReport, successful
from hpo.report.trials import result_status

#: Most results drawn per chart (a fixed random sample beyond, failures always kept): keeps the
#: figures of huge logs small enough to redraw every few seconds.
MAX_POINTS = 5_000
#: Learning curves are drawn for at most this many configurations (the best ones).
MAX_CURVES = 30
COLOURS = qualitative.Plotly
FAILED_COLOUR = "#d62728"
FAILED_SYMBOL = "x"
STATUS_COLOURS = {"failed": FAILED_COLOUR, "diverged": "#9467bd", "crashed": "#8c564b", "lost": "#ff7f0e"}
OUTLIER_SYMBOL = "triangle-up"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


# --- the charts ----------------------------------------------------------------------------------


def incumbent_over_time(report: RunReport) -> go.Figure:
    """Best loss at the highest budget evaluated so far, against wall time since the start."""
    trajectory = report.trajectory
    longest = float(trajectory["wall_time"].max()) if len(trajectory) else 0.0
    unit, scale = _time_unit(max(longest, _run_span(report)))
    figure = _incumbent(report, trajectory["wall_time"] / scale, _run_span(report) / scale)
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
    results = _sample(report.run.results)
    if results.empty:
        return _empty("Loss against budget", "no results yet")
    figure = go.Figure()
    ok = results[results["status"] == "ok"]
    axis = loss_scale(ok["loss"])
    budgets = np.sort(report.run.results["budget"].unique())
    log_x = len(budgets) > 2 and budgets[0] > 0 and budgets[-1] / budgets[0] >= 8
    x = results["budget"].to_numpy(dtype=float) * _jitter(len(results), log_x)
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
    figure.update_layout(title="Loss against budget, every result", xaxis_title=_budget_title(report), yaxis_title=_loss_title(report))
    figure.update_yaxes(range=_headroom(axis), type=axis.scale)
    figure.update_xaxes(type="log" if log_x else "linear", tickvals=list(budgets), ticktext=[_budget_text(b) for b in budgets])
    return _styled(figure)


def loss_vs_hyperparameters(report: RunReport) -> go.Figure:
    """Loss against each searched hyperparameter, one panel each, coloured by budget."""
    hyperparameters = [hp for hp in report.run.hyperparameters if hp.name in report.run.configs.columns]
    results = _sample(report.run.results)
    if not hyperparameters:
        return _empty("Loss against each hyperparameter", "no searched hyperparameter is known (no configs.json?)")
    if results.empty:
        return _empty("Loss against each hyperparameter", "no results yet")
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
        categories = _categories(values[hp.name], hp) if not hp.numeric else []
        for number, budget in enumerate(budgets):
            at = (results["budget"] == budget).to_numpy() & pd.notna(column)
            if not (at & okm).any():
                continue
            name = f"budget {_budget_text(budget)}"
            figure.add_trace(_loss_scatter(
                axis, _positions(column[at & okm], hp, categories, rng), results[at & okm], name=name,
                colour=COLOURS[number % len(COLOURS)], legendgroup=name, showlegend=name not in legend,
            ), row=row, col=col)
            legend.add(name)
        failed = pd.notna(column) & ~okm
        if failed.any():
            figure.add_trace(_failed_scatter(axis, _positions(column[failed], hp, categories, rng), results[failed],
                                             showlegend="failed" not in legend), row=row, col=col)
            legend.add("failed")
        if hp.numeric:
            figure.update_xaxes(type="log" if hp.log else "linear", title_text=hp.name + (" (log)" if hp.log else ""), row=row, col=col)
        else:
            figure.update_xaxes(tickvals=list(range(len(categories))), ticktext=[str(c) for c in categories],
                                title_text=hp.name, row=row, col=col)
    figure.update_yaxes(range=_headroom(axis), type=axis.scale)
    figure.update_yaxes(title_text=_loss_title(report), col=1)
    figure.update_layout(title="Loss against each hyperparameter (colour: budget)", height=max(380, 300 * rows),
                         legend_title_text="budget")
    return _styled(figure)


def parallel_coordinates(report: RunReport) -> go.Figure:
    """One line per result across every hyperparameter, the budget and the loss (colour: loss).

    Categorical values are encoded by position with their names as tick labels, log-scaled ones
    as log10 with decade labels; inactive values and failed losses get their own tick.
    """
    results = _sample(report.run.results)
    if results.empty:
        return _empty("Parallel coordinates", "no results yet")
    values = report.run.configs.reindex(results["config_id"].to_numpy())
    dimensions = []
    for hp in report.run.hyperparameters:
        if hp.name in values.columns:
            dimensions.append(_dimension(values[hp.name], hp))
    budgets = np.sort(results["budget"].unique())
    dimensions.append({"label": "budget", "values": results["budget"].to_numpy(dtype=float),
                       "tickvals": list(budgets), "ticktext": [_budget_text(b) for b in budgets]})
    ok = (results["status"] == "ok").to_numpy()
    axis = loss_scale(results.loc[ok, "loss"])
    low, high = axis.plotly_range  # log10 of the limits on a log axis: parcoords has no log axes
    failed_at = high + 0.08 * (high - low)
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = axis.shown(results["loss"].to_numpy(dtype=float))
        loss = np.where(ok, np.log10(shown) if axis.log else shown, failed_at)
    ticks = list(np.linspace(low, high, 5))
    labels = [f"{10 ** t if axis.log else t:.3g}" for t in ticks]
    dimensions.append({"label": _loss_title(report) + (" (log)" if axis.log else ""), "values": loss,
                       "range": [low, failed_at], "tickvals": [*ticks, failed_at], "ticktext": [*labels, "failed"]})
    figure = go.Figure(go.Parcoords(
        line={"color": loss, "colorscale": "Viridis", "reversescale": True, "showscale": True,
              "cmin": low, "cmax": failed_at, "colorbar": {"title": {"text": "loss"}}},
        dimensions=dimensions,
    ))
    figure.update_layout(title="Parallel coordinates (one line per result; colour: loss, failed at the top)")
    figure.update_layout(margin={"t": 110, "l": 80, "r": 40}, title_y=0.97)
    return _styled(figure)


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
                curves.append((config_id, epochs.to_numpy(dtype=float), pd.to_numeric(frame["val_loss"], errors="coerce").to_numpy(dtype=float)))
    if not curves:
        return _empty("Learning curves", "no per-epoch history in the log")
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
    figure.update_yaxes(range=_headroom(axis), type=axis.scale)
    return _styled(figure)


def budget_rank_correlation(report: RunReport) -> go.Figure:
    """Spearman rank correlation of the losses of configurations evaluated on both budgets of each pair."""
    ok = successful(report.run)
    losses = ok.pivot_table(index="config_id", columns="budget", values="loss", aggfunc="min")
    budgets = list(losses.columns)
    if len(budgets) < 2:
        return _empty("Budget rank correlation", "needs results on at least two budgets")
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
    labels = [_budget_text(b) for b in budgets]
    text = [[("-" if math.isnan(matrix[i, j]) else f"{matrix[i, j]:.2f}") + f"<br>n={counts[i, j]}" for j in range(size)]
            for i in range(size)]
    figure = go.Figure(go.Heatmap(
        z=np.where(np.isnan(matrix), None, matrix).tolist(), x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu",
        text=text, texttemplate="%{text}", hovertemplate="budgets %{y} and %{x}<br>rho %{z:.2f}<extra></extra>",
        colorbar={"title": {"text": "Spearman"}},
    ))
    figure.update_layout(title="Budget rank correlation (configurations on both budgets; n < 3: -)",
                         xaxis_title="budget", yaxis_title="budget", xaxis_type="category", yaxis_type="category")
    return _styled(figure)


def failures_by_reason(report: RunReport) -> go.Figure:
    """How many jobs failed or crashed, by reason (and, when the run lost any, attempts lost with their worker)."""
    failed = report.run.results[report.run.results["status"] != "ok"]
    failed = failed.assign(status=[result_status(s, r) for s, r in zip(failed["status"], failed["reason"])])
    counts = failed.groupby(["status", "reason"]).size().reset_index(name="jobs") if len(failed) else pd.DataFrame()
    attempts = read_attempts(report.run.directory)
    lost = attempts["reason"].fillna("worker lost").astype(str).value_counts().to_dict() if len(attempts) else {}
    if counts.empty and not lost:
        return _empty("Failures", "no failed job")
    figure = go.Figure()
    for status, group in (counts.groupby("status") if len(counts) else []):
        figure.add_trace(go.Bar(x=group["reason"].astype(str), y=group["jobs"], name=str(status),
                                marker_color=STATUS_COLOURS.get(str(status), "#8c564b")))
    if lost:
        figure.add_trace(go.Bar(x=list(lost), y=list(lost.values()), name="attempt lost (run again)", marker_color="#ff7f0e"))
    figure.update_layout(title="Failures by reason", xaxis_title="reason", yaxis_title="jobs", barmode="stack")
    return _styled(figure)


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
        return {key: _empty(title, "no results yet") for key, title, _ in FIGURES}
    return {key: function(report) for key, _, function in FIGURES}


# --- building blocks -----------------------------------------------------------------------------


def _incumbent(report: RunReport, x: pd.Series, end: float) -> go.Figure:
    trajectory = report.trajectory
    if trajectory.empty:
        return _empty("Incumbent", "no successful result yet")
    axis = loss_scale(trajectory["loss"])
    xs = list(x.to_numpy(dtype=float))
    ys = list(axis.shown(trajectory["loss"]))
    if end > xs[-1]:  # the incumbent holds until the last result
        xs.append(end)
        ys.append(ys[-1])
    custom = [[c, _budget_text(b)] for c, b in zip(trajectory["config_id"], trajectory["budget"])]
    custom += custom[-1:] * (len(xs) - len(custom))
    figure = go.Figure(go.Scatter(
        x=xs, y=ys, mode="lines+markers", line_shape="hv", name="incumbent", customdata=custom,
        hovertemplate="%{customdata[0]} at budget %{customdata[1]}<br>loss %{y:.4g}<extra></extra>",
    ))
    figure.update_yaxes(title_text=_loss_title(report), range=_headroom(axis), type=axis.scale)
    return _styled(figure)


def _loss_scatter(axis: LossScale, x: np.ndarray, rows: pd.DataFrame, name: str, colour: str, **extra: Any) -> go.Scatter:
    losses = rows["loss"].to_numpy(dtype=float)
    out = axis.is_outlier(losses)
    return go.Scatter(
        x=x, y=axis.shown(losses), mode="markers", name=name,
        marker={"color": colour, "size": np.where(out, 10, 6), "symbol": np.where(out, OUTLIER_SYMBOL, "circle").tolist()},
        text=rows["config_id"].astype(str).tolist(), customdata=losses,
        hovertemplate="%{text}<br>loss %{customdata:.4g}<extra>" + name + "</extra>", **extra,
    )


def _add_loss_points(figure: go.Figure, axis: LossScale, x: np.ndarray, rows: pd.DataFrame, name: str, colour: str) -> None:
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


def _dimension(column: pd.Series, hp: Hyperparameter) -> dict:
    values = column.to_numpy(dtype=object)
    present = pd.notna(values)
    if not hp.numeric:
        categories = _categories(column, hp)
        position = {value: index for index, value in enumerate(categories)}
        encoded = np.array([position.get(v, len(categories)) if p else len(categories) for v, p in zip(values, present)], dtype=float)
        labels = [str(c) for c in categories] + (["inactive"] if not present.all() else [])
        return {"label": hp.name, "values": encoded, "tickvals": list(range(len(labels))), "ticktext": labels}
    numbers = np.array([float(v) if p else math.nan for v, p in zip(values, present)], dtype=float)
    log = hp.log and np.nanmin(numbers, initial=np.inf) > 0 if present.any() else False
    shown = np.log10(numbers) if log else numbers
    finite = shown[np.isfinite(shown)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = high - low or 1.0
    tickvals = list(np.linspace(low, high, 5)) if high > low else [low]
    ticktext = [f"{10 ** v if log else v:.3g}" for v in tickvals]
    if not present.all():  # inactive (a condition not met): below the range, with its own tick
        inactive = low - 0.15 * span
        shown = np.where(np.isfinite(shown), shown, inactive)
        tickvals, ticktext = [inactive, *tickvals], ["inactive", *ticktext]
        low = inactive
    label = f"{hp.name} (log)" if log else hp.name
    return {"label": label, "values": shown, "tickvals": tickvals, "ticktext": ticktext, "range": [low, high]}


def _configs_by_rank(report: RunReport) -> list[str]:
    """Configuration ids, best first: by the highest budget reached, then by loss there."""
    ok = successful(report.run)
    if ok.empty:
        return []
    best = ok.sort_values(["budget", "loss"], ascending=[False, True], kind="stable").drop_duplicates("config_id")
    return list(best["config_id"])


def _categories(column: pd.Series, hp: Hyperparameter) -> list:
    """The categories in the space's order, then any others the log holds."""
    seen = list(hp.choices)
    extra = sorted((v for v in column.dropna().unique() if v not in seen), key=str)
    return [*seen, *extra]


def _positions(values: np.ndarray, hp: Hyperparameter, categories: list, rng: np.random.Generator) -> np.ndarray:
    if hp.numeric:
        return values.astype(float)
    position = {value: index for index, value in enumerate(categories)}
    return np.array([position[v] for v in values], dtype=float) + rng.uniform(-0.2, 0.2, len(values))


def _jitter(count: int, log: bool) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.exp(rng.uniform(-0.06, 0.06, count)) if log else 1 + rng.uniform(-0.02, 0.02, count)


def _sample(results: pd.DataFrame) -> pd.DataFrame:
    if len(results) <= MAX_POINTS:
        return results
    failed = results[results["status"] != "ok"]
    ok = results[results["status"] == "ok"]
    kept = ok.sample(max(MAX_POINTS - len(failed), 0), random_state=0) if len(ok) > MAX_POINTS - len(failed) else ok
    return pd.concat([kept, failed.head(MAX_POINTS)]).sort_index()


def _run_span(report: RunReport) -> float:
    results = report.run.results
    if results.empty:
        return 0.0
    span = float(results["finished"].max() - run_start_time(report.run))
    return span if math.isfinite(span) else 0.0


def _headroom(axis: LossScale) -> list[float]:
    """The axis range with room above its edge, where outliers and failed jobs are drawn whole."""
    low, high = axis.plotly_range
    return [low, high + 0.04 * (high - low)]


def _empty(title: str, message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 16})
    figure.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=260)
    return _styled(figure)


def _styled(figure: go.Figure) -> go.Figure:
    margin = {"l": 60, "r": 30, "t": 60, "b": 50}
    margin.update({side: value for side, value in figure.layout.margin.to_plotly_json().items() if value is not None})
    figure.update_layout(template="plotly_white", margin=margin, hovermode="closest")
    return figure


def _loss_title(report: RunReport) -> str:
    metric = report.run.loss_metric
    return f"loss ({metric.replace('_', ' ')})" if metric else "loss"


def _budget_title(report: RunReport) -> str:
    return "budget [epochs]" if report.run.metadata.get("job", "image_classifier") == "image_classifier" else "budget"


def _budget_text(budget: Any) -> str:
    value = float(budget)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds >= 2 * 86400:
        return "days", 86400.0
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 120:
        return "minutes", 60.0
    return "seconds", 1.0
