"""hpbandster's Dispatcher, mended at its seams: results bound to their dispatch, no lost lock, lost jobs rerun.

What changes, and why:

* **a result counts only from the worker that got the job, once.** Each dispatch carries a fresh
  random ticket (sent to that worker only, over TLS in distributed mode); :meth:`register_result`
  drops, and logs, a result whose job is unknown, already finished, or whose ticket does not match;
* **no thread dies holding a lock.** hpbandster's ``job_runner`` and ``discover_workers`` take the
  dispatcher's lock outside ``with`` blocks and call workers and the nameserver under it: a worker
  or nameserver that vanished raised there, the thread died with the lock held and the master
  hung. Here every lock is taken in a ``with`` block, released around callbacks with
  :meth:`_unlocked`, every remote call is bounded in time (:func:`hpo.transport.proxy`), and a
  failed call is logged and survived (a job that could not be handed to a worker is queued again);
* **a dead worker is noticed within seconds** (:data:`LIVENESS_INTERVAL`, not at the next
  nameserver ping) and **its job runs again** on another worker, up to ``max_retries`` times;
  every lost attempt is reported to ``attempt_callback``; when retries run out the job finishes
  as a failure with reason ``worker_lost`` (BOHB sees +inf only then). A worker that went idle
  without its result arriving within :data:`RESULT_GRACE` seconds counts as having lost it;
* **the nameserver may restart**: the dispatcher registers itself again when its name is gone,
  and keeps serving the workers it knows meanwhile;
* the master's Dispatcher class is chosen at hpbandster's one seam for it, see :func:`dispatcher_class`.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import threading
import time
from typing import Callable, Iterator, Optional

import Pyro4
import Pyro4.errors
import hpbandster.core.master
from hpbandster.core.dispatcher import Dispatcher, Job, Worker

from hpo.jobs import failure
from hpo.transport import CALL_TIMEOUT, ensure_registered, nameserver_proxy

#: Errors a remote call to a worker or the nameserver may raise when the other side is gone.
REMOTE_ERRORS = (Pyro4.errors.PyroError, OSError)
#: Seconds between liveness checks of the known workers.
LIVENESS_INTERVAL = 2.0
#: Seconds a worker may be idle while the result of its job has not arrived (workers retry delivery).
RESULT_GRACE = 60.0
#: Default number of times a job whose worker died runs again.
DEFAULT_MAX_RETRIES = 2

_SEAM_LOCK = threading.Lock()


class ServiceDispatcher(Dispatcher):
    """Dispatcher whose results are bound to their dispatch and whose threads survive failed calls."""

    max_retries: int = DEFAULT_MAX_RETRIES
    #: Called (without the lock) with the job and a record of each lost attempt.
    attempt_callback: Optional[Callable[[Job, dict], None]] = None

    # --- life cycle ---------------------------------------------------------------------------

    def run(self) -> None:
        self.pyro_daemon = Pyro4.core.Daemon(host=self.host)
        self.uri = str(self.pyro_daemon.register(self, self.pyro_id))
        self._register_with_nameserver()
        self.threads = [threading.Thread(target=self.discover_workers, name="discover_workers", daemon=True),
                        threading.Thread(target=self.job_runner, name="job_runner", daemon=True)]
        for thread in self.threads:
            thread.start()
        self.logger.info("DISPATCHER: Pyro daemon running on %s", self.pyro_daemon.locationStr)
        self.pyro_daemon.requestLoop()
        with self.discover_cond:
            self.shutdown_all_threads = True
            self.runner_cond.notify_all()
        for thread in self.threads:
            thread.join(timeout=2 * LIVENESS_INTERVAL + 1)
        with contextlib.suppress(*REMOTE_ERRORS):
            with nameserver_proxy(self.nameserver, self.nameserver_port, timeout=5) as ns:
                ns.remove(self.pyro_id)
        self.logger.info("DISPATCHER: shut down complete")

    def threads_alive(self) -> bool:
        """False once a thread of the dispatcher died (it never should); threads not started yet count as alive."""
        return not any(thread.ident is not None and not thread.is_alive() for thread in getattr(self, "threads", []))

    def shutdown(self, shutdown_workers: bool = False) -> None:
        if shutdown_workers:
            self.shutdown_all_workers()
        daemon = getattr(self, "pyro_daemon", None)
        if daemon is not None:
            daemon.shutdown()

    def shutdown_all_workers(self, rediscover: bool = False) -> None:
        with self.discover_cond:
            workers = list(self.worker_pool.items())
        for name, worker in workers:
            try:
                worker.shutdown()
            except REMOTE_ERRORS as exc:
                self.logger.info("DISPATCHER: could not shut %s down (%s)", name, exc)

    def _register_with_nameserver(self) -> bool:
        """Register (again) under this run's dispatcher name; False when the nameserver is unreachable."""
        try:
            if ensure_registered((self.nameserver, self.nameserver_port), self.pyro_id, self.uri):
                again = getattr(self, "_registered", False)
                (self.logger.warning if again else self.logger.info)(
                    "DISPATCHER: registered %swith the nameserver as %s", "again " if again else "", self.pyro_id)
                self._registered = True
            return True
        except REMOTE_ERRORS as exc:
            self.logger.warning("DISPATCHER: cannot reach the nameserver (%s); serving the known workers", exc)
            return False

    # --- handing out jobs ---------------------------------------------------------------------

    def job_runner(self) -> None:
        with self.runner_cond:
            while True:
                while not self.shutdown_all_threads and (self.waiting_jobs.empty() or not self.idle_workers):
                    self.runner_cond.wait()
                if self.shutdown_all_threads:
                    return
                job = self.waiting_jobs.get()
                name = self.idle_workers.pop()
                worker = self.worker_pool[name]
                job.time_it("started")
                job.worker_name = name
                job.ticket = secrets.token_urlsafe(24)
                job.attempt = getattr(job, "attempt", 1)
                job.idle_since = None
                worker.runs_job = job.id
                self.running_jobs[job.id] = job
                try:
                    worker.proxy.start_computation(self, job.id, ticket=job.ticket, **job.kwargs)
                except REMOTE_ERRORS as exc:
                    # The worker is gone or unreachable: the job goes back to the queue (no attempt
                    # was made); the next liveness check removes the worker if it is dead.
                    self.logger.warning("DISPATCHER: could not hand job %s to %s (%s); queued again", job.id, name, exc)
                    del self.running_jobs[job.id]
                    worker.runs_job = None
                    job.ticket = None
                    self.waiting_jobs.put(job)
                    self.discover_cond.notify()
                    self.runner_cond.wait(1.0)  # let discovery look at the worker before the next try

    # --- results ------------------------------------------------------------------------------

    @Pyro4.expose
    @Pyro4.callback
    @Pyro4.oneway
    def register_result(self, id=None, result=None, ticket=None) -> None:
        """Called by a worker when its job is done; dropped unless the ticket is that job's."""
        job_id = tuple(id) if isinstance(id, list) else id
        with self.runner_cond:
            try:
                job = self.running_jobs.get(job_id)
            except TypeError:  # unhashable id
                job = None
            late = self._lost_attempt(job_id, ticket)
            if late is not None:  # its worker was declared lost: the job ran again, or runs, or waits to
                record, now = late
                self.logger.warning("DISPATCHER: dropped a late result for job %r from attempt %d on %s, declared "
                                    "lost (%s); %s", job_id, record["attempt"], record["worker"], record["reason"],
                                    f"attempt {now.attempt} keeps the job" if job is now else
                                    "the job runs again or has finished")
                return
            if job is None:
                self.logger.warning("DISPATCHER: dropped a result for job %r: no such job is running "
                                    "(unknown, or already finished)", job_id)
                return
            expected = getattr(job, "ticket", None)
            if not isinstance(ticket, str) or expected is None or not hmac.compare_digest(ticket, expected):
                self.logger.warning("DISPATCHER: dropped a result for job %r: it does not come from the worker "
                                    "the job was dispatched to (%s)", job_id, job.worker_name)
                return
            if not isinstance(result, dict) or not {"result", "exception"} <= set(result):
                result = {"result": None, "exception": f"malformed result from {job.worker_name}"}
        self._finish_job(job, result)

    def _lost_attempt(self, job_id: object, ticket: object) -> Optional[tuple[dict, Job]]:
        """(the lost attempt's record, the job) when ``ticket`` was given to an attempt of ``job_id``
        that was declared lost, else None."""
        if not isinstance(ticket, str):
            return None
        for lost_ticket, (lost_id, record, job) in vars(self).get("lost_tickets", {}).items():
            if lost_id == job_id and hmac.compare_digest(ticket, lost_ticket):
                return record, job
        return None

    def _finish_job(self, job: Job, result: dict) -> None:
        """Record ``result`` for a running job, free its worker, and hand the job to the master."""
        with self.runner_cond:
            if self.running_jobs.pop(job.id, None) is None:
                return  # finished meanwhile (e.g. its worker was declared dead just before)
            job.time_it("finished")
            job.result = result.get("result")
            job.exception = result.get("exception")
            worker = self.worker_pool.get(job.worker_name)
            if worker is not None and worker.runs_job == job.id:
                worker.runs_job = None
                self.idle_workers.add(job.worker_name)
                self.runner_cond.notify()
        # the master's callback runs without the lock: it may submit the next job at once
        self.new_result_callback(job)

    def _attempt_lost(self, job: Job, reason: str) -> None:
        """A job's worker died (or lost its result): run it again, or finish it as ``worker_lost``."""
        with self.runner_cond:
            if self.running_jobs.get(job.id) is not job:
                return
            record = {"attempt": job.attempt, "worker": job.worker_name, "reason": reason,
                      "started": job.timestamps.get("started"), "lost": time.time()}
            if isinstance(getattr(job, "ticket", None), str):  # to name a result it may still deliver
                vars(self).setdefault("lost_tickets", {})[job.ticket] = (job.id, record, job)
            job.lost_attempts = [*getattr(job, "lost_attempts", []), record]
            retry = job.attempt <= self.max_retries
            if retry:
                del self.running_jobs[job.id]
                job.attempt += 1
                job.ticket = None
                self.waiting_jobs.put(job)
                self.runner_cond.notify()
        self.logger.warning("DISPATCHER: job %s lost on %s (attempt %d: %s); %s", job.id, record["worker"],
                            record["attempt"], reason,
                            "it runs again" if retry else f"no retries left (--max-retries {self.max_retries})")
        if self.attempt_callback is not None:
            self.attempt_callback(job, record)
        if not retry:
            lost = failure("worker_lost", f"the job's worker was lost on each of its {record['attempt']} attempts "
                                          f"(last: {reason})", attempts=job.lost_attempts)
            self._finish_job(job, {"result": lost, "exception": None})

    # --- workers ------------------------------------------------------------------------------

    _next_listing = 0.0  # monotonic time of the next look at the nameserver

    def discover_workers(self) -> None:
        with self.discover_cond:
            while not self.shutdown_all_threads:
                changed = False
                if time.monotonic() >= self._next_listing:
                    self._next_listing = time.monotonic() + self.ping_interval
                    with self._unlocked():
                        registered = self._registered_workers()
                    changed = self._add_workers(registered)
                changed, lost = self._check_workers(changed)
                if changed:
                    if self.queue_callback is not None:
                        with self._unlocked():
                            self.queue_callback(len(self.worker_pool))
                    self.runner_cond.notify()
                for job, reason in lost:
                    with self._unlocked():
                        self._attempt_lost(job, reason)
                self.discover_cond.wait(min(self.ping_interval, LIVENESS_INTERVAL))
            self.runner_cond.notify()

    @Pyro4.expose
    @Pyro4.oneway
    def trigger_discover_worker(self) -> None:
        with self.discover_cond:
            self._next_listing = 0.0
            self.discover_cond.notify()

    def _registered_workers(self) -> dict:
        """Name → URI of this run's workers in the nameserver (also re-registers this dispatcher)."""
        if not self._register_with_nameserver():
            return {}
        try:
            with nameserver_proxy(self.nameserver, self.nameserver_port) as ns:
                return ns.list(prefix=f"hpbandster.run_{self.run_id}.worker.")
        except REMOTE_ERRORS as exc:
            self.logger.warning("DISPATCHER: cannot list workers (%s)", exc)
            return {}

    def _add_workers(self, registered: dict) -> bool:
        """Add the registered workers that are new and answer (called with the lock held)."""
        new = {name: uri for name, uri in registered.items() if name not in self.worker_pool}
        with self._unlocked():
            candidates = [Worker(name, uri) for name, uri in new.items()]
            for worker in candidates:
                worker.proxy._pyroTimeout = CALL_TIMEOUT
            answering = [worker for worker in candidates if _alive(worker)]
        for worker in answering:
            if worker.name not in self.worker_pool:
                self.logger.info("DISPATCHER: discovered new worker, %s", worker.name)
                self.worker_pool[worker.name] = worker
        return bool(answering)

    def _check_workers(self, changed: bool) -> tuple[bool, list]:
        """Drop dead workers (returning their jobs as lost), note idle ones (called with the lock
        held; the workers are asked without it)."""
        lost = []
        pool = dict(self.worker_pool)
        with self._unlocked():
            answers = {name: (_busy(worker) if _alive(worker) else None) for name, worker in pool.items()}
        for name, busy in answers.items():
            worker = self.worker_pool.get(name)
            if worker is None:
                continue
            job = self.running_jobs.get(worker.runs_job) if worker.runs_job is not None else None
            if busy is None:
                self.logger.info("DISPATCHER: removing dead worker, %s", name)
                changed = True
                del self.worker_pool[name]
                self.idle_workers.discard(name)
                if job is not None:
                    lost.append((job, "worker died"))
            elif job is not None and busy:
                job.idle_since = None
            elif job is not None:
                # done, and its result should be on its way; lost if it never comes
                job.idle_since = job.idle_since or time.monotonic()
                if time.monotonic() - job.idle_since > RESULT_GRACE:
                    lost.append((job, "its result never arrived"))
            elif not busy and worker.runs_job is None:
                self.idle_workers.add(name)
        return changed, lost

    @contextlib.contextmanager
    def _unlocked(self) -> Iterator[None]:
        """Release the dispatcher's lock (held by the caller) for a block, and take it back after."""
        self.thread_lock.release()
        try:
            yield
        finally:
            self.thread_lock.acquire()


def _alive(worker: Worker) -> bool:
    try:
        worker.proxy._pyroReconnect(1)
        return True
    except REMOTE_ERRORS:
        return False


def _busy(worker: Worker) -> Optional[bool]:
    """True/False, or None when the worker does not answer."""
    try:
        return bool(worker.is_busy())
    except REMOTE_ERRORS:
        return None


@contextlib.contextmanager
def dispatcher_class(cls: type) -> Iterator[None]:
    """hpbandster's ``Master.__init__`` builds (and starts) ``hpbandster.core.master.Dispatcher``;
    inside this block, that name is ``cls``. Masters are built one at a time, under a lock."""
    with _SEAM_LOCK:
        original = hpbandster.core.master.Dispatcher
        hpbandster.core.master.Dispatcher = cls
        try:
            yield
        finally:
            hpbandster.core.master.Dispatcher = original
