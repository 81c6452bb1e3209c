"""The parallel-coordinates chart: one line per result across every hyperparameter, the budget and the loss.

plotly's ``Parcoords`` has numeric axes only, so values are encoded: categorical ones by their
position (names as tick labels, the space's order first), log-scaled ones as log10 with their
values as tick labels, inactive values (a condition not met) below the range with their own tick.
The loss axis is :mod:`hpo.report.loss_scale`'s (log10 when it is a log axis, outliers at its
edge); failed jobs get a ``failed`` tick above it when the run has any.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hpo.report.axis_values import categories, loss_title
from hpo.report.display import budget_text
from hpo.report.figure_parts import empty_figure, sample_results, styled
from hpo.report.loading import Hyperparameter
from hpo.report.loss_scale import loss_scale
from hpo.report.tables import RunReport


def parallel_coordinates(report: RunReport) -> go.Figure:
    """One line per result across every hyperparameter, the budget and the loss (colour: loss)."""
    results = sample_results(report.run.results)
    if results.empty:
        return empty_figure("Parallel coordinates", "no results yet")
    values = report.run.configs.reindex(results["config_id"].to_numpy())
    dimensions = [hyperparameter_dimension(values[hp.name], hp) for hp in report.run.hyperparameters
                  if hp.name in values.columns]
    budgets = np.sort(results["budget"].unique())
    dimensions.append({"label": "budget", "values": results["budget"].to_numpy(dtype=float),
                       "tickvals": list(budgets), "ticktext": [budget_text(b) for b in budgets]})
    ok = (results["status"] == "ok").to_numpy()
    axis = loss_scale(results.loc[ok, "loss"])
    low, high = axis.plotly_range  # log10 of the limits on a log axis: parcoords has no log axes
    failed_at = high + 0.08 * (high - low)
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = axis.shown(results["loss"].to_numpy(dtype=float))
        loss = np.where(ok, np.log10(shown) if axis.log else shown, failed_at)
    tickvals = list(np.linspace(low, high, 5))
    ticktext = [f"{10 ** t if axis.log else t:.3g}" for t in tickvals]
    top = high
    if not ok.all():  # failed jobs above the losses, with their own tick
        tickvals, ticktext, top = [*tickvals, failed_at], [*ticktext, "failed"], failed_at
    dimensions.append({"label": loss_title(report) + (" (log)" if axis.log else ""), "values": loss,
                       "range": [low, top], "tickvals": tickvals, "ticktext": ticktext})
    figure = go.Figure(go.Parcoords(
        line={"color": loss, "colorscale": "Viridis", "reversescale": True, "showscale": True,
              "cmin": low, "cmax": top, "colorbar": {"title": {"text": "loss"}}},
        dimensions=dimensions,
    ))
    failed_note = ", failed at the top" if not ok.all() else ""
    figure.update_layout(title=f"Parallel coordinates (one line per result; colour: loss{failed_note})")
    figure.update_layout(margin={"t": 110, "l": 80, "r": 40}, title_y=0.97)
    return styled(figure)


def hyperparameter_dimension(column: pd.Series, hp: Hyperparameter) -> dict:
    """One ``Parcoords`` dimension for ``hp``'s values in ``column`` (encoded as the module says)."""
    values = column.to_numpy(dtype=object)
    present = pd.notna(values)
    if not hp.numeric:
        choices = categories(column, hp)
        position = {value: index for index, value in enumerate(choices)}
        encoded = np.array([position.get(v, len(choices)) if p else len(choices) for v, p in zip(values, present)],
                           dtype=float)
        labels = [str(c) for c in choices] + (["inactive"] if not present.all() else [])
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
