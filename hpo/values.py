"""Plain Python values: what crosses Pyro4 and what goes into JSON.

ConfigSpace 1.x with numpy 2 hands out ``numpy.str_``, ``numpy.int64``, ``numpy.bool_`` and
friends; Pyro4's serpent serializer cannot send them and JSON cannot hold some of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_builtin(value: Any) -> Any:
    """Return ``value`` with every numpy scalar/array turned into the equivalent Python value,
    recursively through dicts, lists and tuples (tuples stay tuples)."""
    if isinstance(value, dict):
        return {to_builtin(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        converted = [to_builtin(v) for v in value]
        return tuple(converted) if isinstance(value, tuple) else converted
    if isinstance(value, np.ndarray):
        return to_builtin(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json_safe(value: Any) -> Any:
    """Like :func:`to_builtin`, and non-finite floats become ``None`` (JSON has no NaN/Infinity)."""
    value = to_builtin(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    return value
