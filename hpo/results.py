"""The results log of a run: hpbandster's ``configs.json``/``results.json`` line format, plus ``run.json``.

The log is durable. A configuration's or a result's line is in its file (read by ``hpo-report``,
kept if the master process is killed) when :class:`ResultsLog` returns; it is ``fsync``-ed (on
disk, kept through a power cut or an OS crash) by a background thread within
:data:`hpo.line_sync.SYNC_INTERVAL` plus the time of one ``fsync`` (normally under 50 ms), and always before
:meth:`ResultsLog.close` returns, which the master calls before it records the run's final status.
A new file's directory is synced at once. The master writes the lines while it holds its lock;
the ``fsync`` (about 1 ms each) is kept out of it. So a power cut loses at most the lines of the
last 50 ms or so, and the last line left may be torn (cut short, or ending in zeros):
:func:`hpo.durable_files.repair_torn_line` cuts it away before a run is resumed, and a resumed
run runs the lost jobs again. ``run.json`` is replaced
atomically (a temporary file in the same directory, fsync, rename, fsync of the directory), so a
reader sees the old metadata or the new, never half a file.

Lines are appended as each configuration and result arrives, so
``hpbandster.core.result.logged_results_to_HBS_result(dir)`` and ``hpo-report`` can read a run
while it goes. Values are JSON-native only: a non-finite loss is written as ``null``. Files are
created with mode ``0666`` less the user's umask (``0644`` under the usual ``022``).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import threading
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Optional

from hpbandster.core.result import json_result_logger

from hpo.durable_files import (
    append_log_line,
    create_file,
    first_line,
    make_directory,
    read_log_lines,
    repair_torn_line,
    replace_file,
)
from hpo.errors import UserError
from hpo.jobs import is_failure
from hpo.line_sync import LineSyncer
from hpo.values import to_json_safe

CONFIGS_FILE = "configs.json"
RESULTS_FILE = "results.json"
LOG_FILES = (CONFIGS_FILE, RESULTS_FILE)
RUN_FILE = "run.json"
CONFIGSPACE_FILE = "configspace.json"  # ConfigSpace's own JSON of the run's space (DeepCAVE, CAVE)
#: ``info.state`` of a failed job by its ``info.reason`` (the states DeepCAVE's BOHB converter reads);
#: any other failure is ``CRASHED``, a job that succeeded ``SUCCESS``.
FAILURE_STATES = {"oom": "MEMOUT", "timeout": "TIMEOUT", "worker_lost": "TIMEOUT"}
VERSIONED_PACKAGES = ("hpo", "hpbandster", "ConfigSpace", "Pyro4", "numpy", "pandas", "torch", "torchvision")


class ResultsLog(json_result_logger):
    """hpbandster's JSON result logger (same files, same lines), durable and JSON-native.

    ``resume=False`` (a new run): the directory must not hold a run (:func:`check_free`); it is
    created if needed. ``resume=True``: the directory's existing log is continued: a torn last
    line of either file is cut (the warnings are in :attr:`repairs`) and the configurations
    already logged are not logged again.
    """

    def __init__(self, directory: str | os.PathLike, resume: bool = False) -> None:
        # json_result_logger.__init__ is not called: it truncates or refuses existing files and
        # syncs nothing. The attributes it would set are set here.
        self.directory = Path(directory)
        self.config_fn = str(self.directory / CONFIGS_FILE)
        self.results_fn = str(self.directory / RESULTS_FILE)
        self.config_ids: set = set()
        self.repairs: list[str] = []
        self._lock = threading.Lock()
        if resume:
            if not self.directory.is_dir():
                raise UserError(f"{directory}: no such results directory to resume")
            for path in (self.config_fn, self.results_fn):
                warning = repair_torn_line(path)
                if warning:
                    self.repairs.append(warning)
            self.config_ids = {tuple(line[0]) for line in read_log_lines(self.config_fn)}
        else:
            check_free(directory)
        for path in (self.config_fn, self.results_fn):
            create_file(path)
        self._syncer = LineSyncer((self.config_fn, self.results_fn))

    def new_config(self, config_id, config, config_info) -> None:
        with self._lock:
            if config_id in self.config_ids:
                return
            append_log_line(self.config_fn, [config_id, config, config_info], sync=False)
            self.config_ids.add(config_id)
        self._syncer.mark()

    def __call__(self, job) -> None:
        with self._lock:
            if job.id not in self.config_ids:
                append_log_line(self.config_fn, [job.id, job.kwargs["config"], {}], sync=False)
                self.config_ids.add(job.id)
            result = with_state(job.result, job.exception)
            append_log_line(self.results_fn, [job.id, job.kwargs["budget"], job.timestamps, result, job.exception],
                            sync=False)
        self._syncer.mark()

    def flush(self) -> None:
        """fsync every line written so far (raises the error of a failed background fsync)."""
        self._syncer.flush()

    def close(self) -> None:
        """Stop the background syncer and fsync every line written; safe to call twice."""
        self._syncer.close()


def with_state(result: Any, exception: Optional[str]) -> dict:
    """The result as logged: its ``info`` with ``state`` (``SUCCESS``, ``CRASHED``, ``MEMOUT``,
    ``TIMEOUT``) as DeepCAVE's and CAVE's BOHB converters read it. A job that raised (no result)
    gets ``{"loss": null, "info": {"state": "CRASHED", "status": "failed", "reason": "crashed",
    "message": <the exception's last line>}}``; its traceback stays in the line's ``exception``.
    ``result`` itself is not changed."""
    if not isinstance(result, dict):
        lines = [line.strip() for line in str(exception or "").strip().splitlines() if line.strip()]
        info = {"status": "failed", "reason": "crashed", "message": lines[-1] if lines else "no result"}
        return {"loss": None, "info": {**info, "state": "CRASHED"}}
    info = result.get("info") if isinstance(result.get("info"), dict) else {}
    failed = info.get("status") == "failed" or is_failure(result)
    state = FAILURE_STATES.get(info.get("reason"), "CRASHED") if failed else "SUCCESS"
    return {**result, "info": {**info, "state": state}}


def write_configspace(directory: str | os.PathLike, configspace) -> Path:
    """Write the run's space as ``configspace.json`` (``ConfigurationSpace.to_json``), atomically."""
    import io

    buffer = io.StringIO()
    configspace.to_json(buffer)
    return replace_file(Path(directory) / CONFIGSPACE_FILE, buffer.getvalue().encode())


# --- the results directory ------------------------------------------------------------------------


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def check_free(directory: str | os.PathLike) -> None:
    """Make sure ``directory`` can take a new run, creating it if needed.

    Refused, with a one-line :class:`UserError` naming the directory: a directory that already
    holds a run (a ``run.json``, even alone, or a non-empty log file): nothing recorded is ever
    overwritten; a path that is, or lies under, something that is not a directory; a directory
    that cannot be created or written.
    """
    path = Path(directory)
    if path.is_dir():
        held = [name for name in LOG_FILES if _nonempty(path / name)]
        run_file = path / RUN_FILE
        if run_file.exists() or run_file.is_symlink():
            status = read_run_metadata(directory).get("status") or "unknown"
            raise UserError(
                f"{directory}: already holds a run ({', '.join([RUN_FILE, *held])}; status {status}); "
                f"continue it with --resume {directory}, or pick another --results directory"
            )
        if held:
            raise UserError(
                f"{directory}: already holds a run ({', '.join(held)}); continue it with --resume {directory}, "
                f"or pick another --results directory"
            )
    elif path.exists() or path.is_symlink():
        raise UserError(f"{directory}: exists and is not a directory; pick another --results directory")
    else:
        ancestor = path.parent
        while not (ancestor.exists() or ancestor.is_symlink()) and ancestor.parent != ancestor:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise UserError(f"{directory}: cannot create the results directory: {ancestor} is not a directory")
        try:
            make_directory(path)
        except OSError as exc:
            raise UserError(f"{directory}: cannot create the results directory ({exc.strerror or exc})") from None
    probe = path / f".hpo-write-test-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{directory}: results directory not writable ({exc.strerror or exc})") from None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a run's results (those installed here)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_run_metadata(directory: str | os.PathLike, metadata: Mapping[str, Any]) -> Path:
    """Replace ``run.json`` atomically and durably: a reader sees the old file or the new one,
    never half a file, and after a crash one of them is there.

    The new content goes to a temporary file in the same directory (mode 0666 less the umask),
    which is synced, renamed over ``run.json``, and the directory synced.
    """
    path = Path(directory) / RUN_FILE
    data = (json.dumps(to_json_safe(dict(metadata)), indent=2, allow_nan=False) + "\n").encode()
    return replace_file(path, data)




def update_run_metadata(directory: str | os.PathLike, **changes: Any) -> dict:
    """Read ``run.json``, apply ``changes`` (e.g. ``status="finished", finished_at=utc_now()``) and
    write it back atomically; returns the new metadata."""
    metadata = {**read_run_metadata(directory, strict=True), **changes}
    write_run_metadata(directory, metadata)
    return metadata


def read_run_metadata(directory: str | os.PathLike, strict: bool = False) -> dict:
    """``run.json`` as a dict; ``{}`` when it is missing. One that cannot be read or is not a
    JSON object gives ``{}`` too, or with ``strict`` a :class:`UserError` naming it."""
    path = Path(directory) / RUN_FILE
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        if not strict:
            return {}
        raise UserError(f"{path}: cannot read ({first_line(exc)})") from None
    if not isinstance(value, dict):
        if strict:
            raise UserError(f"{path}: expected a JSON object, got {type(value).__name__}")
        return {}
    return value
