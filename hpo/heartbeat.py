"""The master's heartbeat: ``heartbeat_at`` in ``run.json``, refreshed while the master lives.

With the master's host and pid (``starts`` in ``run.json``) it lets a reader tell a running run
from one whose master died without writing a final status (``hpo.report.status``).
"""

from __future__ import annotations

import logging
import os
import threading

#: Seconds between heartbeats.
HEARTBEAT_INTERVAL = 30.0
#: A heartbeat older than this many intervals means the master is gone.
STALE_INTERVALS = 4

logger = logging.getLogger("hpo.master")


class Heartbeat:
    """A daemon thread that sets ``heartbeat_at`` in ``DIR/run.json`` every ``interval`` seconds.

    :meth:`stop` before writing the final status, so a late beat never overwrites it.
    """

    def __init__(self, directory: str | os.PathLike, interval: float = HEARTBEAT_INTERVAL) -> None:
        self.directory = directory
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="hpo-heartbeat")

    def start(self) -> "Heartbeat":
        self._beat_once()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval):
            self._beat_once()

    def _beat_once(self) -> None:
        from hpo.results import update_run_metadata, utc_now

        try:
            update_run_metadata(self.directory, heartbeat_at=utc_now())
        except Exception as exc:  # a missed beat must never stop the run
            logger.warning("could not refresh the heartbeat in run.json: %s", exc)
