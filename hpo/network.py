"""Addresses: parsing ``HOST:PORT``, picking the interface to advertise, waiting for a nameserver."""

from __future__ import annotations

import logging
import socket
import time

import Pyro4
import Pyro4.errors

from hpo.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_NAMESERVER_PORT = 9090


def parse_address(text: str, default_port: int = DEFAULT_NAMESERVER_PORT) -> tuple[str, int]:
    """``"host:port"``, ``"host"`` or ``"[::1]:port"`` → ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host:
        raise UserError(f"--nameserver {text!r}: missing host (expected HOST:PORT)")
    try:
        number = int(port)
    except ValueError:
        raise UserError(f"--nameserver {text!r}: port must be a number (expected HOST:PORT)") from None
    if not 0 < number < 65536:
        raise UserError(f"--nameserver {text!r}: port must be in 1..65535")
    return host, number


def local_address_towards(host: str, port: int) -> str:
    """The local IP address this machine uses to reach ``host``: what Pyro daemons should advertise
    so that the other side can call back (e.g. the container's address inside docker compose)."""
    try:
        target = socket.gethostbyname(host)
    except OSError:
        return "127.0.0.1"
    if target.startswith("127.") or target == "0.0.0.0":
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((target, port))  # UDP connect sends nothing; it only picks the route
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_nameserver(host: str, port: int, timeout: float, interval: float = 2.0) -> None:
    """Return once a Pyro4 nameserver answers at ``host:port``; raise a UserError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            with Pyro4.locateNS(host=host, port=port) as ns:
                ns.ping()
            if attempt > 1:
                logger.info("nameserver %s:%d is up", host, port)
            return
        except (Pyro4.errors.NamingError, Pyro4.errors.CommunicationError, OSError):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UserError(
                    f"no nameserver at {host}:{port} after {timeout:g} s "
                    "(start one with 'hpo nameserver', or check --nameserver)"
                ) from None
            if attempt == 1 or attempt % 10 == 0:
                logger.info("waiting for the nameserver at %s:%d (%.0f s left)", host, port, remaining)
            time.sleep(min(interval, remaining))
