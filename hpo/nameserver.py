"""The nameserver process: Pyro4's name server, started through hpbandster."""

from __future__ import annotations

import logging
import signal
import threading

from hpbandster.core.nameserver import NameServer

logger = logging.getLogger("hpo.nameserver")


def serve_nameserver(host: str, port: int, stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    nameserver = NameServer(run_id="hpo", host=host, port=port)
    try:
        bound_host, bound_port = nameserver.start()
    except OSError as exc:
        from hpo.errors import UserError

        raise UserError(f"nameserver: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    logger.info("nameserver listening on %s:%d", bound_host, bound_port)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        nameserver.shutdown()
        logger.info("nameserver stopped")
