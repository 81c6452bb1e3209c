"""The master's live progress: a tqdm bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import Callable, Optional, TextIO

from hpo.master_loop import ProgressCounts

logger = logging.getLogger("hpo.progress")


def _format_elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Shows iteration, jobs finished / running / queued, best loss and elapsed time."""

    def __init__(self, counts: ProgressCounts, snapshot: Callable[[], tuple[int, int]],
                 current_iteration: Callable[[], int], stream: Optional[TextIO] = None,
                 interactive: Optional[bool] = None) -> None:
        self.counts = counts
        self.snapshot = snapshot
        self.current_iteration = current_iteration
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._bar = None
        self._redirect = None
        self._last_finished = -1

    def line(self) -> str:
        running, queued = self.snapshot()
        with self.counts.lock:
            finished, failed, best = self.counts.finished, self.counts.failed, self.counts.best_loss
        best_text = "-" if best is None else f"{best:.4g}"
        failed_text = f" ({failed} failed)" if failed else ""
        return (
            f"iteration {max(self.current_iteration(), 1)}/{self.counts.iterations} | "
            f"jobs {finished}/{self.counts.total_jobs} finished{failed_text}, {running} running, {queued} queued | "
            f"best loss {best_text} | elapsed {_format_elapsed(time.monotonic() - self.started)}"
        )

    def start(self) -> "Progress":
        if self.interactive:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
            self._redirect.__enter__()
            self._bar = tqdm(total=self.counts.total_jobs, file=self.stream, unit="job",
                             ncols=max(shutil.get_terminal_size((100, 24)).columns, 60))
        self._thread = threading.Thread(target=self._loop, name="hpo-progress", daemon=True)
        self._thread.start()
        return self

    def update(self) -> None:
        """Refresh now (the display also refreshes by itself every second)."""
        with self.counts.lock:
            finished = self.counts.finished
        if self._bar is not None:
            running, queued = self.snapshot()
            best = self.counts.best_loss
            self._bar.set_description_str(f"iteration {max(self.current_iteration(), 1)}/{self.counts.iterations}")
            self._bar.set_postfix_str(
                f"{running} running, {queued} queued, best loss {'-' if best is None else f'{best:.4g}'}")
            self._bar.n = finished
            self._bar.refresh()
        elif finished != self._last_finished:
            logger.info(self.line())
        self._last_finished = finished

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.update()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.update()
        if self._bar is not None:
            self._bar.close()
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
