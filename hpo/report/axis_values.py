"""What the report's charts put on their axes, whatever draws them (matplotlib PNGs, plotly)."""

from __future__ import annotations

import pandas as pd

from hpo.report.loading import Hyperparameter
from hpo.report.tables import RunReport


def categories(column: pd.Series, hp: Hyperparameter) -> list:
    """The categories in the space's order (an ordinal's sequence), then any others the log holds."""
    seen = list(hp.choices)
    extra = sorted((v for v in column.dropna().unique() if v not in seen), key=str)
    return [*seen, *extra]


def budget_title(report: RunReport) -> str:
    """``budget [epochs]`` for the image classifier, plain ``budget`` for jobs whose unit is unknown."""
    return "budget [epochs]" if report.run.metadata.get("job", "image_classifier") == "image_classifier" else "budget"


def loss_title(report: RunReport) -> str:
    """``loss (val loss)``: the loss axis' title, naming the metric the jobs minimised when known."""
    metric = report.run.loss_metric
    return f"loss ({metric.replace('_', ' ')})" if metric else "loss"


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit to show a span of ``seconds`` in, and its length in seconds."""
    if seconds >= 2 * 86400:
        return "days", 86400.0
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 120:
        return "minutes", 60.0
    return "seconds", 1.0
