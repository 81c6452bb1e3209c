"""What every plotly figure of :mod:`hpo.report.figures` shares: colours and markers, the sample
of results a chart draws, the loss axis' headroom, placeholders and the common style (and its
template, which :func:`lean_figure_json` leaves out of a figure's JSON to be sent once).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from hpo.report.loss_scale import LossScale

#: Most results drawn per chart (a fixed random sample beyond, failures always kept): keeps the
#: figures of huge logs small enough to redraw every few seconds.
MAX_POINTS = 5_000
COLOURS = qualitative.Plotly
FAILED_COLOUR = "#d62728"
FAILED_SYMBOL = "x"
STATUS_COLOURS = {"failed": FAILED_COLOUR, "diverged": "#9467bd", "crashed": "#8c564b", "lost": "#ff7f0e"}
OUTLIER_SYMBOL = "triangle-up"
#: plotly.js' config for every chart (the dashboard's and the static page's).
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
#: The plotly template of every chart (:func:`styled`).
TEMPLATE = "plotly_white"


def sample_results(results: pd.DataFrame, limit: int = MAX_POINTS) -> pd.DataFrame:
    """``results`` itself, or at most ``limit`` of them: every failure and a fixed random sample of the rest."""
    if len(results) <= limit:
        return results
    failed = results[results["status"] != "ok"]
    ok = results[results["status"] == "ok"]
    kept = ok.sample(max(limit - len(failed), 0), random_state=0) if len(ok) > limit - len(failed) else ok
    return pd.concat([kept, failed.head(limit)]).sort_index()


def headroom(axis: LossScale) -> list[float]:
    """The axis range with room above its edge, where outliers and failed jobs are drawn whole."""
    low, high = axis.plotly_range
    return [low, high + 0.04 * (high - low)]


def jitter(count: int, log: bool, seed: int = 0) -> np.ndarray:
    """Factors that spread ``count`` points around their x value (multiplicative, so log axes too)."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(-0.06, 0.06, count)) if log else 1 + rng.uniform(-0.02, 0.02, count)


def empty_figure(title: str, message: str) -> go.Figure:
    """A placeholder saying why a chart has nothing to draw."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 16})
    figure.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=260)
    return styled(figure)


def styled(figure: go.Figure) -> go.Figure:
    """``figure`` in the common style (white template, margins it has not set itself, closest hover)."""
    margin = {"l": 60, "r": 30, "t": 60, "b": 50}
    margin.update({side: value for side, value in figure.layout.margin.to_plotly_json().items() if value is not None})
    figure.update_layout(template=TEMPLATE, margin=margin, hovermode="closest")
    return figure


@functools.lru_cache(maxsize=1)
def _template_text() -> str:
    return json.dumps(json.loads(go.Figure(layout={"template": TEMPLATE}).to_json())["layout"]["template"])


def template_json() -> dict:
    """:data:`TEMPLATE` as plotly figure JSON (``layout.template``): about 6.5 KB."""
    return json.loads(_template_text())


def lean_figure_json(figure: go.Figure) -> dict[str, Any]:
    """``figure`` as plotly JSON without ``layout.template`` when it is :data:`TEMPLATE` (most of a
    small figure's bytes): whoever draws it sets ``layout.template`` to :func:`template_json` again."""
    value = json.loads(figure.to_json())
    layout = value.get("layout")
    if isinstance(layout, dict) and layout.get("template") == template_json():
        del layout["template"]
    return value
