"""``hpo run``: nameserver, workers and master on one machine, as separate OS processes.

The nameserver and the workers are child processes (``python -m hpo ...``); the master runs in
this process so it can show progress. Children get their own session (so Ctrl-C reaches only this
process, which then stops them in order) and, on Linux, die with this process even if it is killed.
"""

from __future__ import annotations

import _thread
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from hpo.errors import UserError
from hpo.master import MasterSettings, RunSummary, run_master
from hpo.network import free_port
from hpo.results import check_free
from hpo.space import SearchSpace
from hpo.transport import Transport

if TYPE_CHECKING:
    from hpo.resume import RunToResume

logger = logging.getLogger("hpo.launcher")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class ChildProcesses:
    """Child processes started with their output in log files, stopped in order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen] = {}

    def spawn(self, name: str, args: Sequence[str], env: Optional[dict] = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "hpo", *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        self.children[name] = process
        logger.debug("started %s (pid %d), log %s", name, process.pid, log_path)
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def wait(self, names: Sequence[str], timeout: float) -> bool:
        """Wait until the named children exit; False if some are still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        for name in names:
            try:
                self.children[name].wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def stop(self, names: Optional[Sequence[str]] = None, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds, for every named child still running."""
        targets = [self.children[n] for n in (names or list(self.children)) if n in self.children]
        for process in targets:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in targets:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def detect_gpus() -> list[str]:
    """``cuda:i`` for every GPU ``nvidia-smi -L`` lists (none when it is missing); torch-free."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [f"cuda:{i}" for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def check_cuda_devices(devices: Sequence[str], flag: str = "--devices") -> None:
    """Refuse ``cuda`` devices this host cannot give its workers (no torch, no CUDA, too few GPUs),
    before anything starts. Imports torch only when a ``cuda`` device is named (``hpo run``'s workers
    run here, so what torch sees here is what they get)."""
    wanted = [d for d in devices if d == "cuda" or d.startswith("cuda:")]
    if not wanted:
        return
    text = ",".join(devices)
    try:
        import torch
    except ImportError:
        raise UserError(f"{flag} {text}: torch is not installed here, and the workers need it for "
                        f"{wanted[0]} (pip install -e '.[worker]')") from None
    if not torch.cuda.is_available():
        build = "torch built without CUDA" if torch.version.cuda is None else f"torch {torch.__version__} finds no GPU"
        raise UserError(f"{flag} {text}: CUDA is not available on this host ({build}); "
                        f"use --devices cpu or leave --devices out")
    count = torch.cuda.device_count()
    for device in wanted:
        index = device.partition(":")[2]
        if index and int(index) >= count:
            raise UserError(f"{flag} {text}: no GPU {device} on this host (torch sees {count}: "
                            f"{', '.join(f'cuda:{i}' for i in range(count))})")


def run_local(space: SearchSpace, settings: MasterSettings, n_workers: int, worker_args: Sequence[str] = (),
              devices: Optional[Sequence[str]] = None, transport: Optional[Transport] = None,
              resume: Optional["RunToResume"] = None) -> RunSummary:
    """Run nameserver, ``n_workers`` worker processes and the master here, then stop them all.

    ``transport`` None: mutual TLS with certificates made for this run alone (in a private
    temporary directory, deleted at the end). ``resume``: continue that run (see :mod:`hpo.resume`)."""
    if n_workers < 1:
        raise UserError(f"--workers: must be >= 1 (got {n_workers})")
    if resume is None:
        check_free(settings.results_dir)
    with tempfile.TemporaryDirectory(prefix="hpo-tls-") as scratch:
        if transport is None:
            from hpo.certificates import make_deployment

            make_deployment(Path(scratch) / "tls", ["127.0.0.1", "localhost"])
            transport = Transport(tls_dir=str(Path(scratch) / "tls"))
        return _run_local(space, replace(settings, transport=transport), n_workers, worker_args, devices, resume)


def _run_local(space: SearchSpace, settings: MasterSettings, n_workers: int, worker_args: Sequence[str],
               devices: Optional[Sequence[str]], resume: Optional["RunToResume"]) -> RunSummary:
    port = free_port("127.0.0.1")
    settings = replace(settings, nameserver_host="127.0.0.1", nameserver_port=port, host="127.0.0.1",
                       min_workers=n_workers)
    transport_args = settings.transport.args()
    devices = list(devices) if devices else detect_gpus()
    children = ChildProcesses(Path(settings.results_dir) / "logs")
    worker_names = [f"worker-{i + 1}" for i in range(n_workers)]
    env = dict(os.environ)
    if not devices and "OMP_NUM_THREADS" not in env:
        # CPU workers share the cores instead of each starting one thread per core.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n_workers))
    finished = threading.Event()
    try:
        children.spawn("nameserver", ["nameserver", "--host", "127.0.0.1", "--port", str(port), *transport_args])
        for i, name in enumerate(worker_names):
            args = ["worker", "--run-id", settings.run_id, "--nameserver", f"127.0.0.1:{port}", "--host", "127.0.0.1",
                    "--work-dir", settings.results_dir, *transport_args, *worker_args]
            if devices:
                args += ["--device", devices[i % len(devices)]]
            children.spawn(name, args, env=env)
        logger.info("started a nameserver on 127.0.0.1:%d and %d worker process(es); logs in %s",
                    port, n_workers, children.log_dir)
        watchdog = threading.Thread(target=_watch_workers, args=(children, worker_names, finished), daemon=True)
        watchdog.start()
        summary = run_master(space, settings, resume=resume)
        finished.set()
        if not children.wait(worker_names, timeout=30):
            logger.warning("some workers did not exit after the run; stopping them")
        return summary
    finally:
        finished.set()
        children.stop(worker_names)
        children.stop(["nameserver"])


def _watch_workers(children: ChildProcesses, names: Sequence[str], finished: threading.Event) -> None:
    """Report workers that die; stop the run (as Ctrl-C would) when every one has died.

    A worker exiting 0 was shut down by the master (the run is ending), not dead."""
    died: set[str] = set()
    while not finished.wait(1.0):
        for name in names:
            code = children.children[name].poll()
            if code not in (None, 0) and name not in died:
                died.add(name)
                logger.error("%s exited with code %s; see %s", name, code, children.log_path(name))
        if len(died) == len(names) and not finished.is_set():
            logger.error("no worker left; stopping the run")
            _thread.interrupt_main()
            return
