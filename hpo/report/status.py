"""A run's honest status: finished, failed, interrupted, running or stopped without a status.

``run.json`` says ``running`` from the master's start until it writes the final status. A master
killed outright (SIGKILL, a power cut) never writes it, so ``running`` alone proves nothing: the
master's host and pid (``starts``) and its heartbeat (``heartbeat_at``, refreshed every
:data:`hpo.heartbeat.HEARTBEAT_INTERVAL` seconds) decide whether it still lives. Lost and retried
jobs come from ``attempts.json`` and the results' ``info.attempt``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from hpo.heartbeat import HEARTBEAT_INTERVAL, STALE_INTERVALS
from hpo.report.loading import RunLog, parse_time
from hpo.report.result_lines import config_id_text

ATTEMPTS_FILE = "attempts.json"
#: Seconds without a heartbeat after which a ``running`` master counts as gone.
STALE_AFTER = STALE_INTERVALS * HEARTBEAT_INTERVAL

FINISHED, FAILED, INTERRUPTED, RUNNING, STOPPED, UNKNOWN = (
    "finished", "failed", "interrupted", "running", "stopped without a status", "unknown")

LOST_COLUMNS = ["config_id", "budget", "attempt", "worker", "reason", "started", "lost"]


@dataclass
class RunStatus:
    """What became of a run, and of the jobs it lost."""

    state: str  # one of FINISHED, FAILED, INTERRUPTED, RUNNING, STOPPED, UNKNOWN
    detail: str  # one line: why this state (the failure reason, the master's liveness)
    lost_attempts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LOST_COLUMNS))
    retried: pd.DataFrame = field(default_factory=pd.DataFrame)  # results that needed more than one attempt
    unfinished: list[str] = field(default_factory=list)  # configurations logged without any result

    @property
    def ended(self) -> bool:
        """True when no master is working on the run any more."""
        return self.state in (FINISHED, FAILED, INTERRUPTED, STOPPED)

    @property
    def text(self) -> str:
        """``run finished``, ``run stopped without a status (...)``: for the report's description."""
        return f"run {self.state}" + (f" ({self.detail})" if self.detail else "")


def run_status(run: RunLog, now: Optional[float] = None, hostname: Optional[str] = None) -> RunStatus:
    """The state of ``run`` (at unix time ``now``, seen from ``hostname``; default: here, now)."""
    now = time.time() if now is None else now
    state, detail = _state(run.metadata, now, hostname or socket.gethostname())
    if run.metadata_problem:  # there, but unreadable: not "no run.json"
        detail = f"run.json: {run.metadata_problem}"
    lost = read_attempts(run.directory)
    results = run.results
    retried_mask = (results["attempt"].fillna(1) > 1) | (results["lost_attempts"] > 0)
    retried = results.loc[retried_mask, ["config_id", "budget", "attempt", "lost_attempts", "status", "reason"]]
    unfinished: list[str] = []
    if state != FINISHED and not run.configs.empty:
        done = set(results["config_id"])
        unfinished = [cid for cid in run.configs.index if cid not in done]
    return RunStatus(state, detail, lost, retried.reset_index(drop=True), unfinished)


def _state(metadata: dict, now: float, hostname: str) -> tuple[str, str]:
    if not metadata:
        return UNKNOWN, "no run.json: a log of hpbandster's own, or of a run that never started"
    status = metadata.get("status")
    reason = metadata.get("reason")
    if metadata.get("finished_at") or status in (FINISHED, FAILED, INTERRUPTED):
        if status == FAILED:
            return FAILED, str(reason or "no reason recorded")
        if status == INTERRUPTED:
            return INTERRUPTED, "stopped by Ctrl-C or a signal before its iterations were done; --resume continues it"
        if status in (FINISHED, None):  # a run.json from before statuses were recorded has finished_at only
            return FINISHED, ""
        return UNKNOWN, f"run.json has finished_at but status {status!r}"
    if status not in (None, RUNNING):
        return UNKNOWN, f"run.json says status {status!r}"
    alive, why = master_alive(metadata, now, hostname)
    if alive is False:
        return STOPPED, f"{why}; --resume continues it"
    return RUNNING, why


def master_alive(metadata: dict, now: float, hostname: str) -> tuple[Optional[bool], str]:
    """Whether the run's latest master lives: True, False, or None (cannot tell), and why."""
    starts = metadata.get("starts")
    latest = starts[-1] if isinstance(starts, list) and starts and isinstance(starts[-1], dict) else {}
    host = latest.get("master_host") or metadata.get("master_host")
    pid = latest.get("pid")
    started = parse_time(latest.get("at") or metadata.get("started_at"))
    heartbeat = parse_time(metadata.get("heartbeat_at"))
    if host == hostname and isinstance(pid, int):
        if not _process_alive(pid, started):
            return False, f"its master (pid {pid} on {host}) is gone"
        if heartbeat is not None and now - heartbeat > STALE_AFTER:
            return True, f"master pid {pid} alive, but no heartbeat for {_ago(now - heartbeat)}"
        return True, f"master pid {pid} on {host}"
    if heartbeat is not None:
        if now - heartbeat > STALE_AFTER:
            return False, f"no heartbeat from its master on {host or 'an unknown host'} for {_ago(now - heartbeat)}"
        return True, f"master on {host or 'an unknown host'}, heartbeat {_ago(now - heartbeat)} ago"
    return None, f"master on {host or 'an unknown host'}, no heartbeat recorded to check"


def _process_alive(pid: int, started: Optional[float]) -> bool:
    """True if ``pid`` runs here and (where /proc tells) began no later than ``started``: a pid
    reused by a later process does not count."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    begun = _process_start_time(pid)
    return begun is None or started is None or begun <= started + 5.0


def _process_start_time(pid: int) -> Optional[float]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        ticks = float(stat.rsplit(")", 1)[1].split()[19])
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def read_attempts(directory: str | os.PathLike) -> pd.DataFrame:
    """The lost attempts of ``DIR/attempts.json``, one row each (empty when there is none)."""
    rows: list[dict[str, Any]] = []
    path = Path(directory) / ATTEMPTS_FILE
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            config_id, budget, record = json.loads(line)
        except (ValueError, TypeError):
            continue  # a torn last line of a run being written
        if not isinstance(record, dict):
            continue
        rows.append({"config_id": config_id_text(config_id), "budget": budget, "attempt": record.get("attempt"),
                     "worker": record.get("worker"), "reason": record.get("reason"),
                     "started": record.get("started"), "lost": record.get("lost")})
    return pd.DataFrame(rows, columns=LOST_COLUMNS)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
