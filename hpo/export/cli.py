"""``hpo export``: write a run to another tool's format."""

from __future__ import annotations

import argparse


def add_parser(sub: "argparse._SubParsersAction") -> None:
    """Register ``hpo export`` on the ``hpo`` command's subparsers."""
    p = sub.add_parser("export", help="write a run as an Optuna study (for optuna-dashboard)")
    p.add_argument("directory", metavar="DIR", help="run directory (results/<run-id>)")
    p.add_argument("--optuna", metavar="STORAGE_URL", required=True, help="Optuna storage URL, e.g. sqlite:///run1.db")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    raise NotImplementedError
