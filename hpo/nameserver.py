"""The nameserver process: Pyro4's name server, where masters and workers of a run find each other.

Started directly with Pyro4 (hpbandster's ``NameServer`` is a thin wrapper over the same call that
would also answer UDP broadcasts on every interface): TCP only, on the address given, with the
process's transport (:mod:`hpo.transport`): with TLS, only holders of a deployment certificate can
list, register or remove names.
"""

from __future__ import annotations

import logging
import signal
import threading

import Pyro4.naming

from hpo.errors import UserError
from hpo.transport import Transport, check_listen_address, configure

logger = logging.getLogger("hpo.nameserver")


def serve_nameserver(host: str, port: int, transport: Transport = Transport(),
                     stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or until ``stop`` is set)."""
    configure(transport)
    check_listen_address(host, transport)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        _, daemon, _ = Pyro4.naming.startNS(host=host, port=port, enableBroadcast=False)
    except OSError as exc:
        raise UserError(f"nameserver: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    loop = threading.Thread(target=daemon.requestLoop, name="hpo-nameserver", daemon=True)
    loop.start()
    logger.info("nameserver listening on %s (%s)", daemon.locationStr,
                "mutual TLS" if transport.tls else "no TLS")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        daemon.shutdown()
        logger.info("nameserver stopped")
