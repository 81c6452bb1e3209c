"""The one place that decides a loss axis that survives outliers (PNG plots and plotly figures).

One diverged job (a validation loss of 5,500 among losses near 0.5) must not flatten every
other point onto the axis. Outliers are found with a wide Tukey fence on the high side (in
log10 space when every loss is positive): above ``Q3 + 3·IQR``. The axis then spans the other
losses, on a log scale when they are all positive and span :data:`LOG_DECADES` decades or more,
else linearly; the outliers are drawn at its upper edge (:meth:`LossScale.shown`) with their own
marker. Low losses are never outliers: the best results are what a reader looks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: Inliers spanning at least this many decades (all positive) get a log axis.
LOG_DECADES = 1.5
#: Tukey fence factor: values above Q3 + FENCE * IQR are outliers.
FENCE = 3.0
#: Fewer finite values than this: no outliers (nothing to call typical).
MIN_VALUES = 4
#: Smallest spread used for the fence (decades in log space, else a fraction of the median's size),
#: so that many equal losses do not make every other value an outlier.
MIN_SPREAD_DECADES = 0.25
MIN_SPREAD_FRACTION = 0.1
#: Room left above and below the points, as a fraction of the axis (in its own scale).
MARGIN = 0.05


@dataclass(frozen=True)
class LossScale:
    """A loss axis: ``log`` or linear, its ``limits`` and the ``outliers`` (a mask over the input)."""

    log: bool
    limits: tuple[float, float]
    outliers: np.ndarray  # bool, one per value given; NaN/inf values are never outliers
    edge: float  # where outliers are drawn: just inside the upper limit

    @property
    def scale(self) -> str:
        """``"log"`` or ``"linear"`` (matplotlib's ``set_yscale``, plotly's ``yaxis.type``)."""
        return "log" if self.log else "linear"

    @property
    def plotly_range(self) -> list[float]:
        """The limits as plotly's ``yaxis.range`` wants them (log10 of each on a log axis)."""
        low, high = self.limits
        return [math.log10(low), math.log10(high)] if self.log else [low, high]

    def shown(self, values: Iterable[float]) -> np.ndarray:
        """``values`` with anything above the upper limit moved to :attr:`edge` (to be drawn there)."""
        array = _floats(values)
        return np.where(array > self.limits[1], self.edge, array)

    def is_outlier(self, values: Iterable[float]) -> np.ndarray:
        """Which of ``values`` (any values, not only those the scale was made from) lie above the axis."""
        array = _floats(values)
        return np.isfinite(array) & (array > self.limits[1])


def loss_scale(losses: Iterable[float]) -> LossScale:
    """Decide the loss axis for ``losses`` (NaN and infinite values are ignored)."""
    values = _floats(losses)
    finite = np.isfinite(values)
    data = values[finite]
    if data.size == 0:
        return LossScale(False, (0.0, 1.0), np.zeros(values.shape, dtype=bool), 1.0)
    positive = bool((data > 0).all())
    space = np.log10(data) if positive else data
    outlying = np.zeros(data.shape, dtype=bool)
    if data.size >= MIN_VALUES:
        q1, median, q3 = np.percentile(space, [25, 50, 75])
        floor = MIN_SPREAD_DECADES if positive else MIN_SPREAD_FRACTION * max(abs(median), 1e-12)
        outlying = space > q3 + FENCE * max(q3 - q1, floor)
    kept = data[~outlying]
    low, high = float(kept.min()), float(kept.max())
    log = positive and high / low >= 10 ** LOG_DECADES
    if log:
        span = math.log10(high) - math.log10(low)
        pad = MARGIN * span if span > 0 else 0.1
        limits = (low / 10 ** pad, high * 10 ** (pad if not outlying.any() else 2 * pad))
        edge = high * 10 ** (1.5 * pad) if outlying.any() else limits[1]
    else:
        span = high - low
        pad = MARGIN * span if span > 0 else (0.05 * abs(high) or 0.05)
        limits = (low - pad, high + (pad if not outlying.any() else 2 * pad))
        edge = high + 1.5 * pad if outlying.any() else limits[1]
    mask = np.zeros(values.shape, dtype=bool)
    mask[finite] = outlying
    return LossScale(log, limits, mask, edge)


def _floats(values: Iterable[float]) -> np.ndarray:
    return np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
