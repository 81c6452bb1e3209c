"""How every hpo process talks Pyro4: mutual TLS, bounded messages and threads, who may listen where.

One call, :func:`configure`, sets Pyro4 up before a process makes any proxy or daemon:

* with a TLS directory (``--tls DIR``, env ``HPO_TLS_DIR``; see :mod:`hpo.certificates`), every
  connection, to the nameserver, the dispatcher, the workers and their callbacks, is TLS with a
  certificate on **both** sides, through Pyro4's own settings (``SSL``, ``SSL_SERVERCERT``,
  ``SSL_SERVERKEY``, ``SSL_CACERTS``, ``SSL_REQUIRECLIENTCERT``, ``SSL_CLIENTCERT``,
  ``SSL_CLIENTKEY``). A peer is authenticated by the deployment CA's signature: every certificate
  it signed belongs to the deployment, so host names are not matched (containers get addresses
  no certificate could list in advance);
* the TLS handshake of an incoming connection runs in that connection's pool thread with a time
  limit, not in the daemon's accept loop (Pyro4's default), where one silent client would stall
  every other connection;
* messages are capped at :data:`MAX_MESSAGE_SIZE` and each daemon serves at most
  :data:`THREADPOOL_SIZE` connections at once; only the ``serpent`` serializer is accepted;
* numpy values cross as plain Python values (:mod:`hpo.pyro`).

:func:`check_listen_address` is the "secure by default" rule: without TLS, processes listen on
loopback only, unless ``--insecure`` says otherwise (with a warning at every start).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import Pyro4
import Pyro4.errors
import Pyro4.socketutil

import hpo.pyro
from hpo.certificates import CA_CERT, CERT, KEY, TLS_FILES
from hpo.errors import UserError

logger = logging.getLogger("hpo.transport")

#: Largest Pyro4 message accepted (bytes): a configuration or a result with its history is a few kB.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Most connections one daemon serves at once; more are refused until one closes.
THREADPOOL_SIZE = 64
#: Seconds a new connection has to complete its TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds a call to another hpo process may take before it counts as failed (none takes long:
#: jobs are started with one-way calls).
CALL_TIMEOUT = 15.0


@dataclass(frozen=True)
class Transport:
    """The transport settings of a process: a TLS directory, or none (and then whether that is deliberate)."""

    tls_dir: Optional[str] = None
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_dir is not None

    def args(self) -> list[str]:
        """The command-line flags that give a child process the same transport."""
        if self.tls_dir is not None:
            return ["--tls", self.tls_dir]
        return ["--insecure"] if self.insecure else []


def tls_files(directory: str | os.PathLike) -> dict[str, str]:
    """The CA, certificate and key of a TLS directory, checked; a UserError names what is missing."""
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"--tls {directory}: not a directory (make one with 'hpo certs {directory} --host HOST')")
    missing = [name for name in TLS_FILES if not (root / name).is_file()]
    if missing:
        raise UserError(f"--tls {directory}: missing {', '.join(missing)} (made by 'hpo certs')")
    unreadable = [name for name in TLS_FILES if not os.access(root / name, os.R_OK)]
    if unreadable:
        raise UserError(f"--tls {directory}: cannot read {', '.join(unreadable)} (check owner and permissions)")
    return {"ca": str((root / CA_CERT).resolve()), "cert": str((root / CERT).resolve()),
            "key": str((root / KEY).resolve())}


def configure(transport: Transport) -> None:
    """Set Pyro4 up for this process (idempotent; call before any proxy or daemon is made)."""
    hpo.pyro.install()
    config = Pyro4.config
    config.SERIALIZER = "serpent"
    config.SERIALIZERS_ACCEPTED = {"serpent"}
    config.MAX_MESSAGE_SIZE = MAX_MESSAGE_SIZE
    config.THREADPOOL_SIZE = THREADPOOL_SIZE
    config.THREADPOOL_SIZE_MIN = min(4, THREADPOOL_SIZE)
    _forget_ssl_contexts()
    if not transport.tls:
        config.SSL = False
        return
    files = tls_files(transport.tls_dir)
    config.SSL = True
    config.SSL_REQUIRECLIENTCERT = True
    config.SSL_CACERTS = files["ca"]
    config.SSL_SERVERCERT = config.SSL_CLIENTCERT = files["cert"]
    config.SSL_SERVERKEY = config.SSL_CLIENTKEY = files["key"]
    try:
        # Pyro4 builds (and caches) its contexts from the settings above; two adjustments to them:
        server = Pyro4.socketutil.getSSLcontext(servercert=files["cert"], serverkey=files["key"], cacerts=files["ca"])
        client = Pyro4.socketutil.getSSLcontext(clientcert=files["cert"], clientkey=files["key"], cacerts=files["ca"])
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise UserError(f"--tls {transport.tls_dir}: cannot load the certificates ({exc})") from None
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    server.sslsocket_class = _HandshakeInPoolThread
    client.check_hostname = False  # the CA's signature is what admits a peer (see the module docstring)


def _forget_ssl_contexts() -> None:
    """Drop Pyro4's cached SSL contexts so that :func:`configure` applies new settings."""
    for name in ("__ssl_server_context", "__ssl_client_context"):
        if hasattr(Pyro4.socketutil, name):
            setattr(Pyro4.socketutil, name, None)


class _HandshakeInPoolThread(ssl.SSLSocket):
    """A server socket whose accepted connections do their TLS handshake on first use, with a time
    limit, in the thread that serves them (Pyro4's accept loop would otherwise do it, unbounded)."""

    _handshake_pending = False

    def accept(self):
        sock, address = socket.socket.accept(self)
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False,
                                            suppress_ragged_eofs=self.suppress_ragged_eofs)
        except OSError:
            sock.close()
            raise
        conn._handshake_pending = True
        return conn, address

    def _finish_handshake(self) -> None:
        if self._handshake_pending:
            self._handshake_pending = False
            self.do_handshake()
            self.settimeout(None)  # as Pyro4 leaves its connections (COMMTIMEOUT 0)

    def recv(self, *args, **kwargs):
        self._finish_handshake()
        return super().recv(*args, **kwargs)

    def recv_into(self, *args, **kwargs):
        self._finish_handshake()
        return super().recv_into(*args, **kwargs)

    def send(self, *args, **kwargs):
        self._finish_handshake()
        return super().send(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self._finish_handshake()
        return super().sendall(*args, **kwargs)


def proxy(uri: str, timeout: float = CALL_TIMEOUT) -> Pyro4.Proxy:
    """A Pyro4 proxy whose calls give up after ``timeout`` seconds instead of waiting forever."""
    made = Pyro4.Proxy(uri)
    made._pyroTimeout = timeout
    return made


def nameserver_proxy(host: str, port: int, timeout: float = CALL_TIMEOUT) -> Pyro4.Proxy:
    """A proxy for the nameserver at ``host:port`` (no broadcast look-up, bounded calls)."""
    address = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return proxy(f"PYRO:Pyro.NameServer@{address}:{port}", timeout)


def ensure_registered(nameserver: tuple[str, int], name: str, uri: str) -> bool:
    """Register ``name`` → ``uri`` in the nameserver unless it is there already (a restarted
    nameserver has forgotten every name); True when it was registered just now. Raises Pyro4's
    errors (or OSError) when the nameserver cannot be reached."""
    with nameserver_proxy(*nameserver) as ns:
        try:
            if ns.lookup(name).asString() == uri:
                return False
        except Pyro4.errors.NamingError:
            pass
        ns.register(name, uri)
        return True


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def check_listen_address(host: str, transport: Transport, flag: str = "--host") -> None:
    """Secure by default: without TLS, listen on loopback only; anything else needs ``--insecure``
    (and is warned about at every start)."""
    if transport.tls or is_loopback(host):
        return
    if not transport.insecure:
        raise UserError(f"{flag} {host}: listening beyond loopback needs TLS (--tls DIR, made by 'hpo certs') "
                        "or an explicit --insecure")
    logger.warning("INSECURE: listening on %s without TLS (--insecure): anyone who reaches this address can "
                   "register workers, send jobs and forge results", host)
