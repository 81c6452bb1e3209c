"""Errors the image-classifier job turns into failure results (one line, no traceback).

Each carries the ``reason`` that lands in the result's ``info``: ``config`` for a bad
configuration value, ``weights`` for weights that cannot be fetched or loaded, ``data`` for
a data set that is missing or cannot be downloaded, ``images`` for a corrupt image under
``strict_images``.
"""

from __future__ import annotations

from hpo.errors import UserError


class JobSetupError(UserError):
    """Something the user must fix before the job can train."""

    reason = "config"


class WeightsUnavailable(JobSetupError):
    reason = "weights"


class DataUnavailable(JobSetupError):
    reason = "data"


class CorruptImage(JobSetupError):
    reason = "images"


class Diverged(Exception):
    """The training loss became NaN or infinite."""
