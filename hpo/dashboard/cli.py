"""``hpo dashboard``: serve the live dashboard."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hpo.errors import UserError

EXAMPLE = "hpo dashboard results --port 8050     # then open http://127.0.0.1:8050/"


def add_parser(sub: "argparse._SubParsersAction") -> None:
    """Register ``hpo dashboard`` on the ``hpo`` command's subparsers (their HelpParser shows the defaults)."""
    from hpo.help_format import example

    p = sub.add_parser(
        "dashboard", help="serve a live dashboard of every run under a results directory",
        description="Serve a live dashboard of every run under RESULTS_ROOT (any directory holding results.json): "
                    "run list with status, charts, a table of every result; it updates while runs go. "
                    "Read-only; Ctrl-C stops it.",
        epilog=example(EXAMPLE),
    )
    p.add_argument("root", metavar="RESULTS_ROOT", help="directory holding run directories (e.g. results)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (the results are shown to anyone who reaches it)")
    p.add_argument("--port", type=int, default=8050, help="port (0: any free port, printed at the start)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Check the root and the port, then serve until Ctrl-C (exit code 0)."""
    from hpo.dashboard.server import DashboardServer, serve

    root = Path(args.root)
    if not root.exists():
        raise UserError(f"{args.root}: no such directory (RESULTS_ROOT)")
    if not root.is_dir():
        raise UserError(f"{args.root}: not a directory (RESULTS_ROOT holds run directories)")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a port (0 to 65535)")
    logging.getLogger("hpo.report").setLevel(logging.ERROR)  # skipped lines are shown on the page, not per poll

    def announce(server: DashboardServer) -> None:
        count = len(server.catalog.run_ids())
        print(f"hpo dashboard: {count} run(s) under {root} at {server.url} (Ctrl-C to stop)", flush=True)
        if not server.loopback:
            print(f"hpo dashboard: warning: listening on {args.host}: anyone who reaches it sees these results",
                  file=sys.stderr, flush=True)

    try:
        serve(root, args.host, args.port, announce)
    except KeyboardInterrupt:
        return 0
    return 0
