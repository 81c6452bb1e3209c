"""PNG plots of runs, drawn with matplotlib's Agg canvas (imported only when plotting).

One run gives ``incumbent.png``, ``loss_vs_budget.png``, ``learning_curves.png`` (when the log
has per-epoch histories) and ``hyperparameters.png``; several runs give one ``incumbent.png``
comparing them and the other plots per run, named ``<run>-<plot>.png``.

Every loss axis comes from :func:`hpo.report.loss_scale.loss_scale`: log or clipped, with the
losses above it drawn at its upper edge (a red triangle), and failed, crashed, lost and diverged
jobs drawn there too, each with their own marker: one diverged job never flattens the rest.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

from hpo.errors import UserError
from hpo.report.axis_values import budget_title, categories, loss_title, time_unit
from hpo.report.loading import Hyperparameter, parse_history
from hpo.report.loss_scale import LossScale, loss_scale
from hpo.report.tables import RunReport, successful
from hpo.report.trials import result_status

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger("hpo.report")

DPI = 110
#: At most this many points per scatter plot (a random sample beyond): keeps plots of huge logs fast.
MAX_POINTS = 20_000

#: How results that are not drawn at their loss are marked: (status, marker, colour, label).
EDGE_MARKERS = (
    ("outlier", "^", "tab:red", "loss above the axis"),
    ("diverged", "v", "tab:purple", "diverged"),
    ("failed", "x", "black", "failed / crashed / lost"),
)


@dataclass(frozen=True)
class Plot:
    filename: str
    title: str
    png: bytes


def render_plots(reports: list[RunReport]) -> list[Plot]:
    """Draw every plot of the reports as PNG bytes."""
    plots = [_png("incumbent.png", "Incumbent trajectory", incumbent_figure(reports))]
    several = len(reports) > 1
    for report in reports:
        prefix = f"{_file_part(report.name)}-" if several else ""
        label = f"{report.name}: " if several else ""
        plots.append(_png(f"{prefix}loss_vs_budget.png", f"{label}Loss against budget", loss_vs_budget_figure(report)))
        curves = learning_curves_figure(report)
        if curves is not None:
            plots.append(_png(f"{prefix}learning_curves.png", f"{label}Learning curves of the best configurations", curves))
        else:
            logger.info("%s: no per-epoch history in the log, no learning curves", report.name)
        space = hyperparameters_figure(report)
        if space is not None:
            plots.append(_png(f"{prefix}hyperparameters.png", f"{label}Loss against each hyperparameter", space))
    return plots


def write_plots(plots: list[Plot], directory: Path) -> list[Path]:
    """Write the PNG files into ``directory`` (created if needed)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{directory}: exists and is not a directory (--plots)") from None
    except OSError as error:
        raise UserError(f"{directory}: cannot create the plots directory ({error.strerror or error})") from None
    written = []
    for plot in plots:
        path = directory / plot.filename
        path.write_bytes(plot.png)
        written.append(path)
    return written


# --- figures ---------------------------------------------------------------------------------


def incumbent_figure(reports: list[RunReport]) -> "Figure":
    """Best loss so far against wall time and against epochs trained (one line per run)."""
    figure = _figure(1, 2, width=12, height=4.5)
    by_time, by_work = figure.axes
    longest = max((r.trajectory["wall_time"].max() for r in reports if not r.trajectory.empty), default=0.0)
    unit, scale = time_unit(longest)
    work_label = "epochs trained (all jobs)"
    losses = loss_scale(np.concatenate([r.trajectory["loss"].to_numpy(dtype=float) for r in reports]))
    for report in reports:
        trajectory = report.trajectory
        if trajectory.empty:
            continue
        label = report.name if len(reports) > 1 else None
        work = trajectory["epochs"]
        if work.isna().all():
            work, work_label = trajectory["budget_used"], "budget used (all jobs)"
        shown = losses.shown(trajectory["loss"])
        line = by_time.step(trajectory["wall_time"] / scale, shown, where="post", marker="o", markersize=3, label=label)
        by_work.step(work, shown, where="post", marker="o", markersize=3, color=line[0].get_color(), label=label)
        above = losses.is_outlier(trajectory["loss"])
        if above.any():
            for axes, x in ((by_time, trajectory["wall_time"] / scale), (by_work, work)):
                _edge_markers(axes, np.asarray(x)[above], losses, "outlier")
    for axes in figure.axes:
        _apply_loss_scale(axes, losses)
    by_time.set(xlabel=f"wall time since the run started [{unit}]", ylabel=loss_title(reports[0]), title="Incumbent loss over wall time")
    by_work.set(xlabel=work_label, ylabel=loss_title(reports[0]), title="Incumbent loss over compute")
    for axes in figure.axes:
        axes.grid(True, alpha=0.3)
        if len(reports) > 1:
            axes.legend(fontsize="small")
    figure.suptitle("Incumbent: best loss at the highest budget evaluated so far", fontsize="medium")
    return figure


def loss_vs_budget_figure(report: RunReport) -> "Figure":
    """Every successful result's loss at its budget; the best configurations' paths highlighted."""
    figure = _figure(1, 1, width=8, height=5)
    axes = figure.axes[0]
    ok = _sample(successful(report.run))
    budgets = np.sort(report.run.results["budget"].unique())
    rng = np.random.default_rng(0)
    log_x = len(budgets) > 2 and budgets[0] > 0 and budgets[-1] / budgets[0] >= 8
    jitter = np.exp(rng.uniform(-0.06, 0.06, len(ok))) if log_x else 1 + rng.uniform(-0.02, 0.02, len(ok))
    losses = loss_scale(ok["loss"])
    inside = ~losses.outliers
    axes.scatter((ok["budget"] * jitter)[inside], ok["loss"][inside], s=6, alpha=0.35, color="tab:gray", label="a result",
                 rasterized=True)
    _edge_markers(axes, (ok["budget"] * jitter)[~inside], losses, "outlier")
    failed = _sample(report.run.results[report.run.results["status"] != "ok"])
    failed_jitter = np.exp(rng.uniform(-0.06, 0.06, len(failed))) if log_x else 1 + rng.uniform(-0.02, 0.02, len(failed))
    _failure_markers(axes, failed["budget"] * failed_jitter, failed, losses)
    best = successful(report.run)
    for rank, config_id in enumerate(report.top["config_id"]):
        path = best[best["config_id"] == config_id].sort_values("budget")
        axes.plot(path["budget"], losses.shown(path["loss"]), marker="o", markersize=4, linewidth=1.2,
                  label=f"#{rank + 1} {config_id}")
    if log_x:
        axes.set_xscale("log")
    axes.set_xticks(budgets, [_budget_label(b) for b in budgets])
    axes.minorticks_off() if log_x else None
    _apply_loss_scale(axes, losses)
    axes.set(xlabel=budget_title(report), ylabel=loss_title(report), title=f"{report.name}: loss against budget, every result")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="upper right")
    return figure


def learning_curves_figure(report: RunReport) -> Optional["Figure"]:
    """Train and validation loss and accuracy per epoch of the best configurations at the top budget."""
    results = successful(report.run)
    at_top = results[np.isclose(results["budget"], report.top_budget)] if report.top_budget is not None else results.iloc[:0]
    curves = []
    for rank, config_id in enumerate(report.top["config_id"]):
        rows = at_top[at_top["config_id"] == config_id]
        history = parse_history(rows["history"].iloc[0]) if len(rows) else None
        if history:
            curves.append((rank, config_id, pd.DataFrame(history)))
    if not curves:
        return None
    figure = _figure(1, 2, width=12, height=4.5)
    loss_axes, accuracy_axes = figure.axes
    losses = loss_scale(np.concatenate([history[column].to_numpy(dtype=float) for _, _, history in curves
                                        for column in ("val_loss", "train_loss") if column in history]))
    for rank, config_id, history in curves:
        epochs = history["epoch"] if "epoch" in history else pd.Series(range(1, len(history) + 1))
        color = f"C{rank % 10}"
        label = f"#{rank + 1} {config_id}"
        for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
            for split, style in (("val", {"label": f"{label} validation"}),
                                 ("train", {"linestyle": "--", "alpha": 0.7, "label": f"{label} train"})):
                if f"{split}_{metric}" not in history:
                    continue
                values = history[f"{split}_{metric}"].to_numpy(dtype=float)
                if metric == "loss":
                    above = losses.is_outlier(values)
                    values = losses.shown(values)
                    _edge_markers(loss_axes, np.asarray(epochs)[above], losses, "outlier")
                axes.plot(epochs, values, color=color, **style)
    _apply_loss_scale(loss_axes, losses)
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss per epoch (dashed: train, solid: validation)")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy [fraction correct]", title="Accuracy per epoch (dashed: train, solid: validation)")
    for axes in figure.axes:
        axes.grid(True, alpha=0.3)
    handles, labels = loss_axes.get_legend_handles_labels()
    keep = [(h, l) for h, l in zip(handles, labels) if l.endswith("validation")]
    if losses.outliers.any():
        marker = next(h for h, l in zip(handles, labels) if l == EDGE_MARKERS[0][3])
        loss_axes.legend([marker], [EDGE_MARKERS[0][3]], fontsize="small")
    if keep:
        accuracy_axes.legend([h for h, _ in keep], [l.removesuffix(" validation") for _, l in keep], fontsize="small")
    figure.suptitle(f"{report.name}: learning curves of the best {len(curves)} at budget {_budget_label(report.top_budget)}", fontsize="medium")
    return figure


def hyperparameters_figure(report: RunReport) -> Optional["Figure"]:
    """Loss against each searched hyperparameter, one panel each, coloured by budget."""
    hyperparameters = [hp for hp in report.run.hyperparameters if hp.name in report.run.configs.columns]
    if not hyperparameters:
        return None
    ok = _sample(successful(report.run))
    values = report.run.configs.reindex(ok["config_id"].to_numpy())
    failed = _sample(report.run.results[report.run.results["status"] != "ok"])
    failed_values = report.run.configs.reindex(failed["config_id"].to_numpy())
    all_values = pd.concat([values, failed_values])
    columns = min(3, len(hyperparameters))
    rows = -(-len(hyperparameters) // columns)
    figure = _figure(rows, columns, width=4.2 * columns, height=3.5 * rows)
    budgets = np.sort(ok["budget"].unique())
    losses = loss_scale(ok["loss"])
    outlying = losses.outliers
    rng = np.random.default_rng(0)
    for axes, hp in zip(figure.axes, hyperparameters):
        column = values[hp.name].to_numpy()
        for index, budget in enumerate(budgets):
            at = (ok["budget"] == budget).to_numpy() & ~outlying
            x, y = column[at], ok["loss"].to_numpy()[at]
            present = pd.notna(x)
            x, y = x[present], y[present]
            axes.scatter(_positions(x, hp, all_values[hp.name], rng), y, s=6, alpha=0.4, color=f"C{index % 10}",
                         label=_budget_label(budget), rasterized=True)
        x = column[outlying]
        _edge_markers(axes, _positions(x[pd.notna(x)], hp, all_values[hp.name], rng), losses, "outlier")
        x = failed_values[hp.name].to_numpy()
        present = pd.notna(x)
        _failure_markers(axes, _positions(x[present], hp, all_values[hp.name], rng), failed[present], losses)
        if hp.numeric and hp.log:
            _log_axis(axes, integers=hp.type == "int")
        if not hp.numeric:
            names = categories(all_values[hp.name], hp)
            axes.set_xticks(range(len(names)), [str(c) for c in names])
        scale = " (log scale)" if hp.numeric and hp.log else ""
        _apply_loss_scale(axes, losses)
        axes.set(xlabel=f"{hp.name}{scale}", ylabel=loss_title(report), title=hp.name)
        axes.grid(True, alpha=0.3)
    for axes in figure.axes[len(hyperparameters):]:
        axes.set_visible(False)
    legend: dict = {}
    for axes in figure.axes[: len(hyperparameters)]:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    figure.legend(list(legend.values()), list(legend.keys()), title="budget", fontsize="small", markerscale=2,
                  loc="outside right upper")
    figure.suptitle(f"{report.name}: loss against each searched hyperparameter (colour: budget)", fontsize="medium")
    return figure


# --- helpers -----------------------------------------------------------------------------------


def _log_axis(axes: "Axes", integers: bool) -> None:
    """A log-scaled x axis; integer hyperparameters (batch sizes) get plain powers of two as ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_xscale("log", base=2 if integers else 10)
    if integers:
        axes.xaxis.set_major_locator(LogLocator(base=2))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())


def _figure(rows: int, columns: int, width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.subplots(rows, columns, squeeze=False)
    return figure


def _png(filename: str, title: str, figure: "Figure") -> Plot:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return Plot(filename, title, buffer.getvalue())


def _sample(results: pd.DataFrame) -> pd.DataFrame:
    return results.sample(MAX_POINTS, random_state=0) if len(results) > MAX_POINTS else results


def _apply_loss_scale(axes: "Axes", losses: LossScale) -> None:
    """Put ``losses``' scale and limits on the y axis."""
    if losses.log:
        axes.set_yscale("log")
    axes.set_ylim(*losses.limits)


def _edge_markers(axes: "Axes", x, losses: LossScale, kind: str) -> None:
    """Results not drawn at their loss (``kind``: see :data:`EDGE_MARKERS`) at the axis' upper edge."""
    x = np.asarray(x, dtype=float)
    if not len(x):
        return
    _, marker, color, label = next(entry for entry in EDGE_MARKERS if entry[0] == kind)
    axes.scatter(x, np.full(len(x), losses.edge), marker=marker, s=28, color=color, label=label, clip_on=False,
                 zorder=3, linewidths=1.2)


def _failure_markers(axes: "Axes", x, failed: pd.DataFrame, losses: LossScale) -> None:
    """Failed, crashed, lost and diverged results at the upper edge, diverged ones with their own marker."""
    x = np.asarray(x, dtype=float)
    kinds = np.array([result_status(s, r) for s, r in zip(failed["status"], failed["reason"])], dtype=object)
    diverged = kinds == "diverged"
    _edge_markers(axes, x[diverged], losses, "diverged")
    _edge_markers(axes, x[~diverged], losses, "failed")


def _positions(x: np.ndarray, hp: Hyperparameter, column: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """Where values of ``hp`` go on its axis: numbers as they are, categories at their index (jittered)."""
    if hp.numeric:
        return np.asarray(x, dtype=float)
    return _categorical_positions(x, hp, column, rng)


def _budget_label(budget: Optional[float]) -> str:
    if budget is None:
        return "-"
    return str(int(budget)) if float(budget).is_integer() else f"{budget:g}"


def _categorical_positions(x: np.ndarray, hp: Hyperparameter, column: pd.Series, rng: np.random.Generator) -> np.ndarray:
    position = {value: index for index, value in enumerate(categories(column, hp))}
    return np.array([position[v] for v in x], dtype=float) + rng.uniform(-0.2, 0.2, len(x))


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "run"
