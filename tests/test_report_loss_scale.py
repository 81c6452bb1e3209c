"""hpo.report.loss_scale: loss axes that survive outliers."""

from __future__ import annotations

import math

import numpy as np

from hpo.report.loss_scale import loss_scale


def test_one_diverged_loss_is_an_outlier_and_the_axis_spans_the_rest():
    losses = [0.3, 0.35, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0, 5500.0, math.nan]
    scale = loss_scale(losses)
    assert scale.outliers.tolist() == [False] * 9 + [True, False]
    assert not scale.log
    low, high = scale.limits
    assert 0.2 < low < 0.3 and 1.0 < high < 1.2
    assert low < scale.shown([5500.0])[0] <= high  # drawn at the edge, inside the axis


def test_losses_spanning_decades_get_a_log_axis():
    scale = loss_scale(np.geomspace(1e-4, 1.0, 20))
    assert scale.log and scale.scale == "log" and not scale.outliers.any()
    assert scale.limits[0] < 1e-4 and scale.limits[1] > 1.0
    assert scale.plotly_range[0] < -4


def test_equal_or_negative_losses_or_none_are_fine():
    assert not loss_scale([0.5] * 10).outliers.any()
    negative = loss_scale([-0.9, -0.8, -0.85, -0.7, -0.75, 3.0])
    assert not negative.log and negative.outliers.tolist() == [False] * 5 + [True]
    assert loss_scale([]).limits == (0.0, 1.0)
