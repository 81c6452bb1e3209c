"""The worker process: an hpbandster ``Worker`` that runs jobs it knows, for the dispatcher that sent them.

A worker trusts nothing it is sent to name code or places:

* **jobs** run only when known locally: the worker's own ``--job``, the job its own ``--space``
  file names, or a name registered under the ``hpo.jobs`` entry points of its installed packages.
  Any other job name from the master is refused (a failure with reason ``job``); nothing is
  imported. ``module:callable`` jobs are allowed by naming them on the worker's command line;
* the job's **working directory** must lie under the worker's work root (``--work-dir``, default
  ``./results``), or the job is refused; so must the run's **checkpoint root** (the master's
  ``context["checkpoint_root"]``), or under the worker's own ``--checkpoint-dir`` when given. The
  job gets its configuration's directory there (:func:`hpo.checkpoints.config_directory`);
* its **result** goes back with the ticket the dispatcher sent with the job, so the dispatcher can
  tell it from a forged one (:mod:`hpo.dispatcher`); delivery is retried a few times.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import Pyro4
import Pyro4.errors
from hpbandster.core.worker import Worker

from hpo.checkpoints import config_directory
from hpo.jobs import DEFAULT_JOB, JobContext, failure, is_failure, load_job, registered_jobs
from hpo.names import check_run_id
from hpo.network import local_address_towards, wait_for_nameserver
from hpo.presence import DEFAULT_MASTER_TIMEOUT, Presence
from hpo.transport import CALL_TIMEOUT, Transport, check_listen_address, configure

logger = logging.getLogger("hpo.worker")


@dataclass
class WorkerSettings:
    run_id: str
    nameserver_host: str = "127.0.0.1"
    nameserver_port: int = 9090
    host: Optional[str] = None  # interface to listen on; None: the one routing to the nameserver
    job: Optional[str] = None  # None: the job the master's search space names (if allowed here)
    space_job: Optional[str] = None  # the job named by the worker's own --space file: allowed too
    device: Optional[str] = None
    data_root: Optional[str] = None
    work_dir: str = "results"  # work root: job working directories must lie under it
    checkpoint_dir: Optional[str] = None  # where checkpoint roots may lie besides the work root
    options: Mapping[str, Any] = field(default_factory=dict)
    nameserver_timeout: float = 300.0
    master_timeout: float = DEFAULT_MASTER_TIMEOUT  # exit (0) after this long without a reachable master
    transport: Transport = field(default_factory=Transport)

    def allowed_jobs(self) -> set[str]:
        """Job names this worker runs: its own --job and --space job, and the registered jobs."""
        return set(registered_jobs()) | {name for name in (self.job, self.space_job) if name}


#: Attempts, and seconds between them, to deliver a result to the dispatcher.
DELIVERY_ATTEMPTS, DELIVERY_INTERVAL = 5, 2.0


class JobWorker(Worker):
    """Runs one job at a time; jobs are loaded by name and their results made JSON-safe."""

    def __init__(self, settings: WorkerSettings, host: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        super().__init__(
            run_id=settings.run_id,
            nameserver=settings.nameserver_host,
            nameserver_port=settings.nameserver_port,
            host=host,
            logger=logging.getLogger("hpo.worker.hpbandster"),
            # hpbandster names a worker <hostname>.<pid>: containers on one host network often share
            # both (pid 1, 7...), so a random suffix keeps every worker's Pyro name unique.
            id=suffix,
        )
        self.settings = settings
        # what results record as their worker: unique even for containers sharing a host network
        self.name = f"{socket.gethostname()}:{os.getpid()}:{suffix}"
        self.allowed_jobs = settings.allowed_jobs()
        self.work_root = Path(settings.work_dir).resolve()
        self.checkpoint_roots = [self.work_root] + (
            [Path(settings.checkpoint_dir).resolve()] if settings.checkpoint_dir else [])
        self._jobs: dict[str, Any] = {}

    def _job(self, name: str):
        """The job callable, resolved once per name."""
        if name not in self._jobs:
            self._jobs[name] = load_job(name)
        return self._jobs[name]

    def _refusal(self, context: dict, working_directory: str) -> Optional[dict]:
        """A failure result when the master asks for a job or a place this worker does not allow."""
        requested = context.get("job")
        if requested is not None and (not isinstance(requested, str) or requested not in self.allowed_jobs):
            return failure("job", f"job {requested!r} is not allowed on worker {self.name}: it runs "
                                  f"{', '.join(sorted(self.allowed_jobs))}; start it with --job or --space to allow more")
        if not isinstance(working_directory, str) or not Path(working_directory).resolve().is_relative_to(
                self.work_root):
            return failure("job", f"working directory {working_directory!r} is outside worker {self.name}'s "
                                  f"work root {self.work_root} (--work-dir)")
        root = context.get("checkpoint_root")
        if root is not None and (not isinstance(root, str) or not any(
                Path(root).resolve().is_relative_to(allowed) for allowed in self.checkpoint_roots)):
            return failure("job", f"checkpoint directory {root!r} is outside worker {self.name}'s work root "
                                  f"{self.work_root} (--work-dir) and --checkpoint-dir")
        return None

    def compute(self, config_id, config: dict, budget: float, working_directory: str,
                context: Optional[dict] = None) -> dict:
        context = dict(context or {})
        refusal = self._refusal(context, working_directory)
        if refusal is not None:
            logger.warning("job %s refused: %s", config_id, refusal["info"]["message"])
            refusal["info"]["worker"] = self.name
            return refusal
        job_name = self.settings.job or context.get("job") or DEFAULT_JOB
        job = self._job(job_name)
        job_context = JobContext(
            budget=float(budget),
            max_budget=float(context.get("max_budget", budget)),
            min_budget=float(context.get("min_budget", budget)),
            run_id=str(context.get("run_id", self.settings.run_id)),
            config_id=tuple(config_id),
            seed=int(context.get("seed", 0)),
            device=self.settings.device,
            data_root=self.settings.data_root,
            working_directory=str(Path(working_directory).resolve()),
            options=dict(self.settings.options),
            checkpoint_dir=(str(config_directory(Path(context["checkpoint_root"]).resolve(), config_id))
                            if context.get("checkpoint_root") is not None else None),
            previous_budget=_budget_or_none(context.get("previous_budget")),
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
        if is_failure(result):  # the job itself does not log its failure: said here, once
            why = info if isinstance(info, dict) else {}
            logger.warning("job %s failed (%s): %s", tuple(config_id), why.get("reason", "error"),
                           why.get("message", "no message"))
        return result

    def _run(self) -> None:
        """Serve jobs until shut down (hpbandster's loop, with :class:`~hpo.presence.Presence` keeping
        the worker registered and watching for its master)."""
        self.pyro_daemon = Pyro4.core.Daemon(host=self.host)
        uri = str(self.pyro_daemon.register(self, self.worker_id))
        self.presence = Presence(self.worker_id, uri, str(self.run_id), (self.nameserver, self.nameserver_port),
                                 self.settings.master_timeout)
        self.presence.start(busy=lambda: self.busy, give_up=self.shutdown)
        try:
            self.pyro_daemon.requestLoop()
        finally:
            self.presence.stop()

    @Pyro4.expose
    @Pyro4.oneway
    def start_computation(self, callback, id, *args, ticket: Optional[str] = None, **kwargs) -> None:
        """Run one job (hpbandster's protocol), then deliver its result with the dispatch's ticket."""
        with self.thread_cond:
            while self.busy:
                self.thread_cond.wait()
            self.busy = True
        try:
            result = {"result": self.compute(*args, config_id=id, **kwargs), "exception": None}
        except Exception:
            result = {"result": None, "exception": traceback.format_exc()}
        with self.thread_cond:
            self.busy = False
            self._deliver(callback, id, result, ticket)
            self.thread_cond.notify()

    def _deliver(self, callback, job_id, result: dict, ticket: Optional[str]) -> None:
        callback._pyroTimeout = CALL_TIMEOUT
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                callback.register_result(job_id, result, ticket)
                return
            except (Pyro4.errors.PyroError, OSError) as exc:
                logger.warning("job %s: could not deliver its result (attempt %d/%d): %s", job_id, attempt,
                               DELIVERY_ATTEMPTS, exc)
                if attempt < DELIVERY_ATTEMPTS:
                    time.sleep(DELIVERY_INTERVAL)
                    callback._pyroRelease()
        logger.error("job %s: result lost, the dispatcher could not be reached", job_id)


def _budget_or_none(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_worker(settings: WorkerSettings) -> None:
    """Wait for the nameserver, register, and serve jobs until the master shuts this worker down."""
    check_run_id(settings.run_id, "run id")
    configure(settings.transport)
    if settings.job and settings.job not in registered_jobs():
        load_job(settings.job)  # a --job that cannot be imported is the user's error, found now
    wait_for_nameserver(settings.nameserver_host, settings.nameserver_port, settings.nameserver_timeout)
    host = settings.host or local_address_towards(settings.nameserver_host, settings.nameserver_port)
    check_listen_address(host, settings.transport)
    worker = JobWorker(settings, host=host)
    _shut_down_on_signals(worker)
    logger.info("worker %s for run %s serving on %s (nameserver %s:%d)", worker.name, settings.run_id, host,
                settings.nameserver_host, settings.nameserver_port)
    worker.run(background=False)
    if worker.presence.master_gone:
        logger.info("worker %s: the master of run %s is gone; exiting", worker.name, settings.run_id)
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
