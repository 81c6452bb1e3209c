"""hpbandster's Dispatcher, mended at its seams: results bound to their dispatch, locks in ``with`` blocks.

What changes, and why:

* **a result counts only from the worker that got the job, once.** Each dispatch carries a fresh
  random ticket (sent to that worker only, over TLS in distributed mode); :meth:`register_result`
  drops, and logs, a result whose job is unknown, already finished, or whose ticket does not match;
* **no thread dies holding a lock.** hpbandster's ``job_runner`` and ``discover_workers`` take the
  dispatcher's lock outside ``with`` blocks and call workers and the nameserver under it: a worker
  or nameserver that vanished raised there, the thread died with the lock held and the master
  hung. Here every lock is taken in a ``with`` block, released around callbacks with
  :meth:`_unlocked`, and a failed remote call is logged and survived (a job that could not be
  handed to a worker goes back to the queue);
* the master's Dispatcher class is chosen at hpbandster's one seam for it, see :func:`dispatcher_class`.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import threading
from typing import Iterator

import Pyro4
import Pyro4.errors
import hpbandster.core.master
from hpbandster.core.dispatcher import Dispatcher, Worker

#: Errors a remote call to a worker or the nameserver may raise when the other side is gone.
REMOTE_ERRORS = (Pyro4.errors.PyroError, OSError)

_SEAM_LOCK = threading.Lock()


class ServiceDispatcher(Dispatcher):
    """Dispatcher whose results are bound to their dispatch and whose threads survive failed calls."""

    def job_runner(self) -> None:
        with self.runner_cond:
            while True:
                while not self.shutdown_all_threads and (self.waiting_jobs.empty() or not self.idle_workers):
                    self.runner_cond.wait()
                if self.shutdown_all_threads:
                    self.discover_cond.notify()
                    return
                job = self.waiting_jobs.get()
                name = self.idle_workers.pop()
                worker = self.worker_pool[name]
                job.time_it("started")
                job.worker_name = name
                job.ticket = secrets.token_urlsafe(24)
                worker.runs_job = job.id
                self.running_jobs[job.id] = job
                try:
                    worker.proxy.start_computation(self, job.id, ticket=job.ticket, **job.kwargs)
                except REMOTE_ERRORS as exc:
                    # The worker is gone (or unreachable): the job goes back to the queue; the next
                    # discovery removes the worker if it is dead.
                    self.logger.warning("DISPATCHER: could not hand job %s to %s (%s); queued again", job.id, name, exc)
                    del self.running_jobs[job.id]
                    worker.runs_job = None
                    job.ticket = None
                    self.waiting_jobs.put(job)
                    self.discover_cond.notify()
                    self.runner_cond.wait(1.0)  # let discovery look at the worker before the next try

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

    def _finish_job(self, job, result: dict) -> None:
        """Record ``result`` for a running job, free its worker, and hand the job to the master."""
        with self.runner_cond:
            if self.running_jobs.pop(job.id, None) is None:
                return  # finished meanwhile (e.g. its worker was declared dead just before)
            job.time_it("finished")
            job.result = result.get("result")
            job.exception = result.get("exception")
            worker = self.worker_pool.get(job.worker_name)
            if worker is not None:
                worker.runs_job = None
                with contextlib.suppress(*REMOTE_ERRORS):
                    worker.proxy._pyroRelease()
                self.idle_workers.add(job.worker_name)
                self.runner_cond.notify()
        # the master's callback runs without the lock: it may submit the next job at once
        self.new_result_callback(job)

    def discover_workers(self) -> None:
        with self.discover_cond:
            while not self.shutdown_all_threads:
                try:
                    changed, lost_jobs = self._refresh_worker_pool()
                except REMOTE_ERRORS as exc:
                    self.logger.warning("DISPATCHER: cannot reach the nameserver (%s); trying again", exc)
                    changed, lost_jobs = False, []
                if changed:
                    if self.queue_callback is not None:
                        with self._unlocked():
                            self.queue_callback(len(self.worker_pool))
                    self.runner_cond.notify()
                for job in lost_jobs:
                    with self._unlocked():
                        self._finish_job(job, {"result": None, "exception": "Worker died unexpectedly."})
                self.discover_cond.wait(self.ping_interval)
            self.runner_cond.notify()

    def _refresh_worker_pool(self) -> tuple[bool, list]:
        """Add newly registered workers, drop dead ones (returning the jobs they held), note idle ones."""
        changed = False
        with Pyro4.locateNS(host=self.nameserver, port=self.nameserver_port) as ns:
            registered = ns.list(prefix=f"hpbandster.run_{self.run_id}.worker.")
        for name, uri in registered.items():
            if name not in self.worker_pool:
                worker = Worker(name, uri)
                if _alive(worker):
                    self.logger.info("DISPATCHER: discovered new worker, %s", name)
                    self.worker_pool[name] = worker
                    changed = True
        lost_jobs = []
        for name, worker in list(self.worker_pool.items()):
            busy = _busy(worker) if _alive(worker) else None
            if busy is None:
                self.logger.info("DISPATCHER: removing dead worker, %s", name)
                changed = True
                del self.worker_pool[name]
                self.idle_workers.discard(name)
                job = self.running_jobs.get(worker.runs_job) if worker.runs_job is not None else None
                if job is not None:
                    lost_jobs.append(job)
            elif not busy and worker.runs_job is None:
                self.idle_workers.add(name)
        return changed, lost_jobs

    def shutdown_all_workers(self, rediscover: bool = False) -> None:
        with self.discover_cond:
            for name, worker in list(self.worker_pool.items()):
                try:
                    worker.shutdown()
                except REMOTE_ERRORS as exc:
                    self.logger.info("DISPATCHER: could not shut %s down (%s)", name, exc)
            if rediscover:
                self.discover_cond.notify()

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
        return worker.is_alive()
    except REMOTE_ERRORS:
        return False


def _busy(worker: Worker):
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
