"""The worker process: an hpbandster ``Worker`` that runs the job the search space names."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from hpbandster.core.worker import Worker

from hpo.jobs import DEFAULT_JOB, JobContext, load_job
from hpo.network import local_address_towards, wait_for_nameserver
import hpo.pyro

logger = logging.getLogger("hpo.worker")


@dataclass
class WorkerSettings:
    run_id: str
    nameserver_host: str = "127.0.0.1"
    nameserver_port: int = 9090
    host: Optional[str] = None  # interface to listen on; None: the one routing to the nameserver
    job: Optional[str] = None  # None: the job the master's search space names
    device: Optional[str] = None
    data_root: Optional[str] = None
    work_dir: Optional[str] = None  # None: the master's results directory (shared file systems)
    options: Mapping[str, Any] = field(default_factory=dict)
    nameserver_timeout: float = 300.0


class JobWorker(Worker):
    """Runs one job at a time; jobs are loaded by name and their results made JSON-safe."""

    def __init__(self, settings: WorkerSettings, host: str) -> None:
        super().__init__(
            run_id=settings.run_id,
            nameserver=settings.nameserver_host,
            nameserver_port=settings.nameserver_port,
            host=host,
            logger=logging.getLogger("hpo.worker.hpbandster"),
            # hpbandster names a worker <hostname>.<pid>: containers on one host network often share
            # both (pid 1, 7...), so a random suffix keeps every worker's Pyro name unique.
            id=uuid.uuid4().hex[:8],
        )
        self.settings = settings
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def compute(self, config_id, config: dict, budget: float, working_directory: str,
                context: Optional[dict] = None) -> dict:
        context = dict(context or {})
        job_name = self.settings.job or context.get("job") or DEFAULT_JOB
        job = load_job(job_name)
        job_context = JobContext(
            budget=float(budget),
            max_budget=float(context.get("max_budget", budget)),
            min_budget=float(context.get("min_budget", budget)),
            run_id=str(context.get("run_id", self.settings.run_id)),
            config_id=tuple(config_id),
            seed=int(context.get("seed", 0)),
            device=self.settings.device,
            data_root=self.settings.data_root,
            working_directory=self.settings.work_dir or working_directory,
            options=dict(self.settings.options),
        )
        logger.info("job %s: %s at budget %g", tuple(config_id), job_name, budget)
        started = time.time()
        result = job(config, job_context)
        if not isinstance(result, dict) or "loss" not in result:
            raise TypeError(f"job {job_name} returned {type(result).__name__}, expected a dict with 'loss' and 'info'")
        info = result.setdefault("info", {})
        if isinstance(info, dict):
            info.setdefault("worker", self.name)
            info.setdefault("wall_time", time.time() - started)
        logger.info("job %s done: loss %s", tuple(config_id), result.get("loss"))
        return result


def run_worker(settings: WorkerSettings) -> None:
    """Wait for the nameserver, register, and serve jobs until the master shuts this worker down."""
    hpo.pyro.install()
    wait_for_nameserver(settings.nameserver_host, settings.nameserver_port, settings.nameserver_timeout)
    host = settings.host or local_address_towards(settings.nameserver_host, settings.nameserver_port)
    worker = JobWorker(settings, host=host)
    _shut_down_on_signals(worker)
    logger.info("worker %s for run %s serving on %s (nameserver %s:%d)", worker.name, settings.run_id, host,
                settings.nameserver_host, settings.nameserver_port)
    worker.run(background=False)
    logger.info("worker %s shut down", worker.name)
    if worker.busy:
        # Stopped by a signal mid-job: the job's thread cannot be stopped, and letting the interpreter
        # shut down under it crashes (torch aborts). The master records the job as crashed.
        logger.warning("worker %s: abandoning the job still running", worker.name)
        logging.shutdown()
        os._exit(0)


def _shut_down_on_signals(worker: JobWorker) -> None:
    """SIGTERM/SIGINT (docker stop, Ctrl-C) end the worker as the master does: its Pyro daemon stops,
    it leaves the nameserver, and the process exits 0. A job still running is lost (and recorded
    as crashed by the master)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame) -> None:
        if getattr(worker, "pyro_daemon", None) is None:  # not serving yet
            raise KeyboardInterrupt
        logger.info("worker %s: signal %d, shutting down", worker.name, signum)
        threading.Thread(target=worker.shutdown, name="hpo-worker-shutdown", daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
