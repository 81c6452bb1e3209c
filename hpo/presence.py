"""A worker's presence: registered in the nameserver, and watching for its master.

hpbandster's worker registers once and removes its name when it stops; if the nameserver dies
first, the removal raises, and if the nameserver restarts, the worker is never found again.
:class:`Presence` registers the worker, registers it again whenever its name is gone (a restarted
nameserver), tells the run's dispatcher when it (re)appears, and notices when no master has been
reachable for ``master_timeout`` seconds: then the worker should exit (cleanly, with a message),
while a master resumed within that time (``--resume``) finds it and hands it jobs again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Optional

import Pyro4.errors

from hpo.transport import ensure_registered, nameserver_proxy, proxy

logger = logging.getLogger("hpo.worker")

REMOTE_ERRORS = (Pyro4.errors.PyroError, OSError)
#: Seconds between looks at the nameserver and the master.
WATCH_INTERVAL = 3.0
#: Default seconds a worker waits for a master that is gone before it exits.
DEFAULT_MASTER_TIMEOUT = 600.0


class Presence:
    """Keeps ``name`` → ``uri`` registered for run ``run_id`` and watches the run's dispatcher."""

    def __init__(self, name: str, uri: str, run_id: str, nameserver: tuple[str, int],
                 master_timeout: float = DEFAULT_MASTER_TIMEOUT) -> None:
        self.name, self.uri, self.run_id = name, uri, run_id
        self.nameserver = nameserver
        self.master_timeout = master_timeout
        self.dispatcher_name = f"hpbandster.run_{run_id}.dispatcher"
        self.master_gone = False
        self._registered = False
        self._dispatcher_uri: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self, busy: Callable[[], bool], give_up: Callable[[], None]) -> None:
        """Register, then watch in a thread; ``give_up`` is called (once, while not ``busy``) when
        no master was reachable for ``master_timeout`` seconds."""
        self.register()
        self._thread = threading.Thread(target=self._watch, args=(busy, give_up), name="hpo-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and leave the nameserver (if it is there)."""
        self._stop.set()
        with contextlib.suppress(*REMOTE_ERRORS):
            with nameserver_proxy(*self.nameserver, timeout=5) as ns:
                ns.remove(self.name)

    def register(self) -> bool:
        """Make sure the name is registered; True when it was (re)registered just now."""
        try:
            if not ensure_registered(self.nameserver, self.name, self.uri):
                return False
        except REMOTE_ERRORS as exc:
            logger.info("nameserver %s:%d unreachable (%s)", *self.nameserver, exc)
            return False
        if self._registered:
            logger.warning("registered again with the nameserver as %s (it had restarted)", self.name)
        else:
            logger.info("registered with the nameserver as %s", self.name)
        self._registered = True
        self._dispatcher_uri = None  # tell the master again
        return True

    def _master_reachable(self) -> bool:
        """Whether the run's dispatcher answers; tells a new one (a resumed master) about this worker."""
        try:
            with nameserver_proxy(*self.nameserver) as ns:
                found = ns.list(prefix=self.dispatcher_name)
        except REMOTE_ERRORS:
            return False
        for uri in found.values():
            uri = str(uri)
            try:
                with proxy(uri, timeout=5) as dispatcher:
                    dispatcher._pyroBind()
                    if uri != self._dispatcher_uri:
                        dispatcher.trigger_discover_worker()
                        self._dispatcher_uri = uri
                return True
            except REMOTE_ERRORS:
                continue
        return False

    def _watch(self, busy: Callable[[], bool], give_up: Callable[[], None]) -> None:
        last_seen = time.monotonic()
        while not self._stop.wait(WATCH_INTERVAL):
            self.register()
            if self._master_reachable() or busy():
                last_seen = time.monotonic()
            elif time.monotonic() - last_seen > self.master_timeout:
                logger.warning("no master for run %s for %.0f s (--master-timeout); exiting", self.run_id,
                               self.master_timeout)
                self.master_gone = True
                give_up()
                return
