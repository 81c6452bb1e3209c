"""``hpo-report``: the best configurations and a summary of one or more BOHB runs.

Exit codes: 0 when a report was written (skipped lines, e.g. a torn last line of a run
still being written, are warned about on stderr); 2 when nothing can be reported (a missing
directory, no log, an empty log, no readable line) or a flag is wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from hpo.closed_pipe import silence_closed_stdout, stdout_closed
from hpo.errors import UserError

FORMATS = ("text", "markdown", "csv", "json")


def build_parser() -> argparse.ArgumentParser:
    from hpo.help_format import HelpParser

    parser = HelpParser(
        prog="hpo-report",
        description="Report the best configurations and a summary of BOHB runs (results directories).",
        epilog="Example:\n  hpo-report results/demo --html results/demo/report.html\n"
               "  hpo-report results/demo --all --format csv > trials.csv   # every result, one row each\n\n"
               "Exit code 0 when a report was written (warnings about skipped lines go to stderr), 2 when nothing "
               "could be read.",
    )
    parser.add_argument("runs", nargs="+", metavar="RESULTS_DIR", help="a run's results directory (several: compared side by side)")
    parser.add_argument("--top", type=_positive_int, default=6, metavar="K", help="how many best configurations to list (default 6)")
    parser.add_argument("--budget", type=float, metavar="B", help="list the best configurations at this budget (default: the highest reached)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output on stdout (default text; csv: the best-configurations table)")
    parser.add_argument("--all", action="store_true",
                        help="with --format csv or json: every result, one row each (configuration, budget, every metric, "
                             "status, attempts, timing), instead of the best configurations")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots to this directory")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML page (tables, every result, interactive charts; works offline)")
    parser.add_argument("--quiet", action="store_true", help="no warnings on stderr")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hpo-report: warning: %(message)s"))
    logger = logging.getLogger("hpo.report")
    logger.addHandler(handler)
    logger.propagate = False  # warnings go to stderr once, in this form, whatever the root logger does
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:
            return int(exit_.code or 0)
        if args.quiet:
            logger.setLevel(logging.ERROR)
        return _report(args)
    except UserError as error:
        print(f"hpo-report: {error}", file=sys.stderr)
        return UserError.exit_code
    except BrokenPipeError as exc:
        if stdout_closed():  # e.g. `hpo-report ... | head`: the reader is gone; say nothing more
            silence_closed_stdout()
            return 0
        print(f"hpo-report: a pipe closed under it ({exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def _report(args: argparse.Namespace) -> int:
    from hpo.report import formatting
    from hpo.report.loading import read_runs
    from hpo.report.tables import build_report

    if args.all and args.format not in ("csv", "json"):
        raise UserError(f"--all: needs --format csv or --format json (got --format {args.format})")
    runs = read_runs(args.runs)
    reports = [build_report(run, top=args.top, budget=args.budget) for run in runs]
    render = {
        "text": formatting.render_text,
        "markdown": formatting.render_markdown,
        "csv": formatting.render_csv,
        "json": formatting.render_json,
    }[args.format]
    if args.all:
        from hpo.report.trials import all_trials, trials_csv, trials_json

        output = (trials_csv if args.format == "csv" else trials_json)(all_trials(runs))
    else:
        output = render(reports)
    if args.plots is not None:
        from hpo.report.plots import render_plots, write_plots

        written = write_plots(render_plots(reports), args.plots)
    if args.html is not None:  # the dashboard's plotly figures, plotly.js inlined
        from hpo.report.html import write_html

        html_path = write_html(reports, args.html)
    sys.stdout.write(output)
    sys.stdout.flush()
    if not args.quiet:  # where the files went, on stderr (stdout is the report)
        if args.plots is not None:
            print(f"hpo-report: wrote {len(written)} plot{'' if len(written) == 1 else 's'} to {args.plots}",
                  file=sys.stderr)
        if args.html is not None:
            print(f"hpo-report: wrote {html_path} (open it in a browser; it works offline)", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
