"""``hpo export``: write a run to another tool's format."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: "argparse._SubParsersAction") -> None:
    """Register ``hpo export`` on the ``hpo`` command's subparsers."""
    from hpo.help_format import example

    p = sub.add_parser(
        "export", help="write a run as an Optuna study (for optuna-dashboard)",
        description="Write a run's results directory as an Optuna study: one trial per configuration (its "
                    "hyperparameters, per-epoch validation losses as intermediate values, its loss at the highest "
                    "budget it reached as the value; configurations that only failed as FAIL trials).",
        epilog=example("hpo export results/run1 --optuna sqlite:///run1.db && optuna-dashboard sqlite:///run1.db")
               + "\n\nNeeds optuna (pip install 'hpo[export]'). Exit code 2 for a bad directory, storage or name.",
    )
    p.add_argument("directory", metavar="DIR", help="run directory (results/<run-id>)")
    p.add_argument("--optuna", metavar="STORAGE_URL", required=True,
                   help="Optuna storage URL (an SQLAlchemy URL), e.g. sqlite:///run1.db (required)")
    p.add_argument("--study-name", metavar="NAME", default=None,
                   help="name of the new study (default: the run id); a study that exists is never overwritten")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from hpo.export.optuna_study import export_run

    summary = export_run(args.directory, args.optuna, args.study_name)
    skipped = f", {summary.skipped} configuration(s) without a result left out" if summary.skipped else ""
    print(f"hpo export: study {summary.study_name!r} in {summary.storage_url}: {summary.complete} complete and "
          f"{summary.failed} failed trial(s){skipped}; view it with: optuna-dashboard {summary.storage_url}",
          file=sys.stdout)
    return 0
