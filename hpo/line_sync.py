"""Append-only files fsync-ed shortly after their lines are written, by a background thread.

The results log (:mod:`hpo.results`) writes a line while the master holds its lock; the ``fsync``
that makes it durable (about 1 ms, more on a busy disk) runs here, outside that lock, once per
file for all the lines of a short interval.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Iterable, Optional

#: Seconds the background syncer gathers lines before it fsyncs them (one fsync per file per round).
SYNC_INTERVAL = 0.02

logger = logging.getLogger("hpo.results")


class LineSyncer:
    """A daemon thread that fsyncs a few append-only files shortly after lines are written to them.

    :meth:`mark` (after a write) wakes it; it waits :data:`SYNC_INTERVAL` to gather more lines, then
    fsyncs each file once. :meth:`flush` fsyncs every file in the caller's thread, so what was
    written before it was called is on disk when it returns."""

    def __init__(self, paths: Iterable, interval: Optional[float] = None) -> None:
        self.paths = tuple(str(p) for p in paths)
        self.interval = SYNC_INTERVAL if interval is None else interval
        self._cond = threading.Condition()
        self._dirty = False
        self._closed = False
        self._error: Optional[OSError] = None
        self._thread = threading.Thread(target=self._loop, name="hpo-log-syncer", daemon=True)
        self._thread.start()

    def mark(self) -> None:
        """Lines were written: sync them soon."""
        with self._cond:
            if not self._dirty:
                self._dirty = True
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._closed:
                    self._cond.wait()
                if not self._closed:
                    self._cond.wait(self.interval)  # gather the next lines into one fsync (close() wakes it)
                if self._closed:
                    return  # close() syncs what is left
                self._dirty = False
            self._sync_all()

    def _sync_all(self) -> None:
        for path in self.paths:
            try:
                _fsync_path(path)
            except OSError as exc:
                logger.error("cannot sync %s (%s)", path, exc)
                self._error = exc

    def flush(self) -> None:
        with self._cond:
            self._dirty = False
        self._sync_all()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        with self._cond:
            already = self._closed
            self._closed = True
            self._cond.notify()
        if not already:
            self._thread.join(timeout=5)
        self.flush()


def _fsync_path(path: str) -> None:
    """fsync a file by its path (the kernel syncs the file's data whichever descriptor asks); a
    missing file is skipped (deleted mid-run: its next line makes and syncs it again)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
