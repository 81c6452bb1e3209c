"""``hpo dashboard``: serve the live dashboard."""

from __future__ import annotations

import argparse


def add_parser(sub: "argparse._SubParsersAction") -> None:
    """Register ``hpo dashboard`` on the ``hpo`` command's subparsers."""
    p = sub.add_parser("dashboard", help="serve a live dashboard of every run under a results directory")
    p.add_argument("root", metavar="RESULTS_ROOT", help="directory holding run directories (e.g. results)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    raise NotImplementedError
