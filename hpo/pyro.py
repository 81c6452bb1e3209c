"""Pyro4 settings shared by every hpo process.

The numpy/Pyro4 break: with ConfigSpace 1.x and numpy 2, categorical values come out of
ConfigSpace as ``numpy.str_`` and hpbandster's budgets are ``numpy.float64``. Pyro4's serpent
serializer raises ``TypeError: don't know how to serialize class numpy.str_`` on the first, and
writes the second as ``np.float64(3.0)`` (numpy 2's repr), which the receiving side cannot parse:
as hpbandster sends jobs with one-way calls, the job is then dropped silently and the run hangs.

Both are mended here, once, at the serializer: every numpy scalar or array is written as the plain
Python value it holds (``str``, ``float``, ``int``, ``bool``, ``list``), so configurations, budgets
and results cross Pyro4 as plain values whoever produced them (ConfigSpace, hpbandster, a job).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import serpent


def _write_plain(obj: Any, serializer: serpent.Serializer, out: list, level: int) -> None:
    serializer._serialize(obj.tolist() if isinstance(obj, np.ndarray) else obj.item(), out, level)


def install() -> None:
    """Teach serpent (Pyro4's serializer) to send numpy values as plain Python values. Idempotent."""
    serpent.register_class(np.generic, _write_plain)
    serpent.register_class(np.ndarray, _write_plain)
