"""The runs under a results root, read once per change: what the dashboard's endpoints serve.

A run is any directory holding ``results.json`` (nested at any depth; a run's own ``checkpoints/``
and ``logs/`` are not searched). Each run's parsed log, figures and table are cached under the
size and modification time of its files, so polling a big log that has not changed costs a few
``stat`` calls.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hpo.errors import UserError

#: The files a run's view is computed from; a change of any of them means reading the run again.
RUN_FILES = ("results.json", "configs.json", "run.json", "attempts.json")
#: Directories never searched for runs (a run's checkpoints and process logs, version control).
SKIPPED_DIRECTORIES = frozenset({"checkpoints", "logs", ".git", "__pycache__", "node_modules"})
#: How deep under the root runs are looked for.
MAX_DEPTH = 8
#: How long a directory walk is reused before the root is searched for new runs again (seconds).
DISCOVERY_TTL = 1.5


def find_runs(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself included), sorted by path."""
    found = []
    root = Path(root)
    base_depth = len(root.parts)
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        path = Path(directory)
        if "results.json" in files:
            found.append(path)
            subdirectories[:] = []  # a run's own folders (checkpoints...) hold no other run
            continue
        if len(path.parts) - base_depth >= max_depth:
            subdirectories[:] = []
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES and not d.startswith("."))
    return sorted(found)


def signature(directory: Path) -> tuple:
    """Size and modification time of each of a run's :data:`RUN_FILES` (absent ones as None)."""
    parts = []
    for name in RUN_FILES:
        try:
            stat = os.stat(directory / name)
            parts.append((name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            parts.append((name, None, None))
    return tuple(parts)


@dataclass
class RunView:
    """One run as last read: its log and report (None when it has no result yet) or why not."""

    run_id: str
    directory: Path
    signature: tuple
    report: Any = None  # hpo.report.tables.RunReport
    error: Optional[str] = None
    metadata: dict = field(default_factory=dict)
    metadata_problem: Optional[str] = None  # what is wrong with run.json, in hpo-report's words
    payload: Optional[dict] = None  # figures and table, built on first request
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def version(self) -> str:
        """A short hash of :attr:`signature`: what a page sends back to learn whether the run changed."""
        return hashlib.sha1(repr(self.signature).encode()).hexdigest()[:16]


class RunCatalog:
    """The runs under ``root``, each parsed again only when one of its files changed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._views: dict[str, RunView] = {}
        self._lock = threading.Lock()
        self._found: tuple[float, list[str], frozenset[str]] = (0.0, [], frozenset())  # when, ids, ids as a set

    def run_ids(self) -> list[str]:
        """The runs under the root by their path under it (``.`` for the root itself), searched again
        at most every :data:`DISCOVERY_TTL` seconds; runs that disappeared are forgotten."""
        return list(self._discovered()[0])

    def _discovered(self) -> tuple[list[str], frozenset[str]]:
        now = time.monotonic()
        with self._lock:
            stamp, ids, known = self._found
            if now - stamp > DISCOVERY_TTL:
                ids = [self._run_id(path) for path in find_runs(self.root)]
                known = frozenset(ids)
                self._found = (now, ids, known)
                for gone in [run_id for run_id in self._views if run_id not in known]:
                    del self._views[gone]  # a run directory deleted or moved away
        return ids, known

    def summaries(self) -> list[dict]:
        """One line per run for the run list: name, status, counts, best loss."""
        return [self.summary(self.view(run_id)) for run_id in self.run_ids()]

    def view(self, run_id: str) -> Optional[RunView]:
        """The run called ``run_id`` (its path under the root), read again if its files changed; None if unknown."""
        directory = self._directory(run_id)
        if directory is None:
            return None
        current = signature(directory)
        with self._lock:
            view = self._views.get(run_id)
            if view is None or view.signature != current:
                view = RunView(run_id, directory, current)
                self._views[run_id] = view
        with view.lock:
            if view.report is None and view.error is None:
                _read(view)
        return view

    def payload(self, run_id: str) -> Optional[dict]:
        """The run's figures (plotly JSON) and every result (a table), cached per version."""
        view = self.view(run_id)
        if view is None:
            return None
        with view.lock:
            if view.payload is None:
                view.payload = _payload(view)
            return view.payload

    def summary(self, view: Optional[RunView]) -> dict:
        """A run's line in the run list (``{}`` for None): status, counts, best loss and its budget."""
        from hpo.report.formatting import json_safe
        from hpo.report.status import run_status

        if view is None:
            return {}
        line: dict[str, Any] = {"id": view.run_id, "version": view.version, "name": view.run_id}
        report = view.report
        if report is None:
            state, detail = _state_without_results(view)
            line.update(name=str(view.metadata.get("run_id") or view.run_id), status=state, detail=detail,
                        results=0, configs=0, failed=0, lost=0, best_loss=None, budget=None)
            return line
        status = run_status(report.run)
        best = report.top.iloc[0] if len(report.top) else None
        results = report.run.results
        line.update(
            name=report.name, status=status.state, detail=status.detail, results=int(len(results)),
            configs=int(results["config_id"].nunique()), failed=int((results["status"] != "ok").sum()),
            lost=int(len(status.lost_attempts)),
            best_loss=json_safe(float(best["loss"])) if best is not None else None,
            budget=json_safe(report.top_budget),
        )
        return line

    def _directory(self, run_id: str) -> Optional[Path]:
        if run_id not in self._discovered()[1]:  # only discovered runs: no path from a request is opened as given
            return None
        return self.root if run_id == "." else self.root / run_id

    def _run_id(self, path: Path) -> str:
        relative = path.relative_to(self.root).as_posix()
        return relative or "."


def _read(view: RunView) -> None:
    from hpo.report.loading import RUN_FILE, read_metadata, read_run
    from hpo.report.tables import build_report

    view.metadata, problem = read_metadata(view.directory / RUN_FILE)
    view.metadata_problem = f"{RUN_FILE}: {problem}" if problem else None
    try:
        view.report = build_report(read_run(view.directory))
    except UserError as error:
        view.error = "no results yet" if "empty log" in str(error) else str(error)
    except Exception as error:  # a log this reader cannot make sense of must not take the server down
        logging.getLogger("hpo.dashboard").exception("%s: cannot read the run", view.directory)
        view.error = f"cannot read the run: {type(error).__name__}: {error}"


def _state_without_results(view: RunView) -> tuple[str, str]:
    """A run with no result to read: ``run.json``'s status, but "stopped without a status" when it
    says ``running`` and its master is gone (as :func:`hpo.report.status.run_status` decides it)."""
    from hpo.report.status import RUNNING, STOPPED, UNKNOWN, master_alive

    stated = str(view.metadata.get("status") or UNKNOWN)
    detail = "; ".join(part for part in (view.metadata_problem, view.error) if part)
    if stated == RUNNING and not view.metadata.get("finished_at"):
        alive, why = master_alive(view.metadata, time.time(), socket.gethostname())
        if alive is False:
            return STOPPED, f"{why}; {detail}" if detail else why
    return stated, detail


def _payload(view: RunView) -> dict:
    """The run's figures, lean (``template`` names the plotly template their layouts leave out: the page
    holds it and puts it back), and every result as a table."""
    from hpo.report.figure_parts import TEMPLATE, lean_figure_json
    from hpo.report.figures import FIGURES, all_figures
    from hpo.report.html import trials_table

    report = view.report
    figures = all_figures(report)
    titles = {key: title for key, title, _ in FIGURES}
    return {
        "id": view.run_id,
        "version": view.version,
        "name": report.name if report is not None else view.run_id,
        "error": view.error,
        "warnings": list(report.run.warnings[:20]) if report is not None else [],
        "template": TEMPLATE,
        "figures": [{"key": key, "title": titles[key], "figure": lean_figure_json(figure)}
                    for key, figure in figures.items()],
        "table": trials_table(report.run) if report is not None else {"columns": [], "rows": []},
    }
