"""The attempts log: one line per job attempt lost with its worker (``attempts.json``).

A job whose worker dies runs again (:mod:`hpo.dispatcher`); each lost attempt is recorded here as
``[config_id, budget, {"attempt", "worker", "reason", "started", "lost"}]``, written and synced
as it happens. ``results.json`` keeps one line per job, its final outcome, whose ``info`` carries
``attempt`` (which attempt it came from) and ``lost_attempts``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from hpo.durable_files import append_log_line

ATTEMPTS_FILE = "attempts.json"


class AttemptsLog:
    """Appends lost attempts to ``DIR/attempts.json`` (made on the first one)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / ATTEMPTS_FILE
        self.count = 0
        self._lock = threading.Lock()

    def record(self, job, attempt: dict) -> None:
        with self._lock:
            append_log_line(self.path, [job.id, job.kwargs.get("budget"), attempt])
            self.count += 1
