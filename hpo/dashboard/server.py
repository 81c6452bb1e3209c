"""The dashboard's HTTP server (the standard library's ``ThreadingHTTPServer``), read-only.

Endpoints: ``/`` the page, ``/plotly.min.js`` the plotly package's bundled plotly.js,
``/api/runs`` every run with its status, ``/api/run?id=RUN[&version=V]`` a run's figures (plotly
JSON) and table of every result (``{"unchanged": true}`` when ``V`` is still its version).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import json
import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from hpo.dashboard.page import render_page
from hpo.dashboard.runs import RunCatalog
from hpo.errors import UserError

logger = logging.getLogger("hpo.dashboard")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class DashboardServer(ThreadingHTTPServer):
    """Serves the runs under ``root``; one thread per request, none outliving the server."""

    daemon_threads = True

    def __init__(self, root: Path, host: str, port: int) -> None:
        self.catalog = RunCatalog(root)
        self.page = render_page(str(root)).encode("utf-8")
        self.loopback = _is_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), DashboardHandler)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:8050/``: where the page is (the port the system chose for port 0)."""
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that broke off: logged at debug level, not printed as a traceback."""
        logger.debug("request from %s failed", client_address, exc_info=True)  # a closed browser tab, mostly


class DashboardHandler(BaseHTTPRequestHandler):
    """The endpoints the module docstring lists; GET only, loopback ``Host`` headers only on loopback."""

    server: DashboardServer
    server_version = "hpo-dashboard"

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        """Answer one request (a DNS-rebinding page reaching a loopback server gets 403)."""
        if self.server.loopback and not _loopback_host(self.headers.get("Host", "")):
            # a page elsewhere reaching this server through a DNS name pointed at 127.0.0.1
            self._send(HTTPStatus.FORBIDDEN, b"loopback only\n", "text/plain; charset=utf-8")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif url.path == "/plotly.min.js":
            self._send(HTTPStatus.OK, _plotly_bytes(), "text/javascript; charset=utf-8", cache=86400)
        elif url.path == "/api/runs":
            self._json({"root": str(self.server.catalog.root), "runs": self.server.catalog.summaries()})
        elif url.path == "/api/run":
            run_id = (query.get("id") or [""])[0]
            if not run_id:
                self._json({"error": "which run? /api/run?id=RUN (the ids are in /api/runs)"}, HTTPStatus.BAD_REQUEST)
                return
            view = self.server.catalog.view(run_id)
            if view is None:
                self._json({"error": f"no run {run_id!r} under {self.server.catalog.root}"}, HTTPStatus.NOT_FOUND)
            elif (query.get("version") or [""])[0] == view.version:
                self._json({"id": run_id, "version": view.version, "unchanged": True})
            else:
                try:
                    payload = self.server.catalog.payload(run_id)
                except Exception as error:  # a chart this log breaks: say so, keep serving the others
                    logger.exception("%s: cannot draw the run", run_id)
                    self._json({"error": f"{run_id}: cannot draw the run ({type(error).__name__}: {error})"},
                               HTTPStatus.INTERNAL_SERVER_ERROR)
                    return
                self._json(payload)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's signature)
        """Each request at debug level, not on stderr."""
        logger.debug("%s " + format, self.address_string(), *args)

    def _json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(value, allow_nan=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, cache: int = 0) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", f"max-age={cache}" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8050) -> DashboardServer:
    """A server for the runs under ``root`` bound to ``host:port`` (port 0: any free port)."""
    try:
        return DashboardServer(root, host, port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use (choose another with --port)") from None
        if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(error, socket.gaierror):
            raise UserError(f"cannot listen on {host}: not an address of this machine (--host)") from None
        if error.errno == errno.EACCES:
            raise UserError(f"port {port} on {host}: permission denied (ports below 1024 need root; --port)") from None
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None


@functools.lru_cache(maxsize=1)
def _plotly_bytes() -> bytes:
    from hpo.report.html import plotly_js

    return plotly_js().encode("utf-8")


def _is_loopback(host: str) -> bool:
    """Loopback by its literal name or address only. Unlike :func:`hpo.transport.is_loopback` no name is
    resolved: a ``Host`` header naming a DNS name pointed at 127.0.0.1 is what a rebinding page sends."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_host(header: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback (``127.0.0.1:8050``, ``[::1]:8050``, ``localhost``)."""
    name = header.strip()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return _is_loopback(name.lower()) if name else False


def serve(root: Path, host: str, port: int, announce: Optional[Any] = None) -> None:
    """Serve until interrupted (Ctrl-C raises KeyboardInterrupt to the caller, after the socket is closed)."""
    server = make_server(root, host, port)
    try:
        if announce is not None:
            announce(server)
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
