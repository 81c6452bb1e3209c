"""The ``hpo`` command's argument parser: its subcommands and their shared flag groups."""

from __future__ import annotations

import argparse
import os

from hpo.network import DEFAULT_NAMESERVER_PORT


# --- shared flags ---------------------------------------------------------------------------------


def _add_nameserver_flags(parser: argparse.ArgumentParser, peers: str) -> None:
    """--nameserver, and --host: the address ``peers`` reach this process at."""
    parser.add_argument("--nameserver", default=f"127.0.0.1:{DEFAULT_NAMESERVER_PORT}", help="HOST:PORT of the nameserver")
    parser.add_argument("--host", help=f"address to listen on for {peers} (default: the one that reaches the nameserver)")


def _add_budget_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("budgets (default: the search space's 'budget' section)")
    group.add_argument("--min-budget", type=float, help="smallest budget, in epochs")
    group.add_argument("--max-budget", type=float, help="largest budget, in epochs")
    group.add_argument("--eta", type=float, help="successive-halving factor (> 1)")
    group.add_argument("--iterations", type=int, help="number of successive-halving iterations")
    parser.add_argument("--optimizer", choices=["bohb", "hyperband", "randomsearch"], default=None,
                        help="BOHB, or a baseline (default: bohb)")
    parser.add_argument("--seed", type=int, help="random seed (default: the space's 'seed', else 0)")
    parser.add_argument("--ping-interval", type=float, default=10.0, help=argparse.SUPPRESS)

    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live bar")


def _add_recovery_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recovery")
    group.add_argument("--max-retries", type=int, default=2,
                       help="times a job whose worker died runs again on another worker")
    group.add_argument("--resume", metavar="RESULTS_DIR",
                       help="continue the run in RESULTS_DIR whose master died (space, budgets and run id from "
                            "its run.json; no SPACE argument)")


def _add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoints (a promoted configuration continues from its checkpoint)")
    group.add_argument("--checkpoint-dir", metavar="DIR",
                       help="keep checkpoints in DIR/<run-id>, e.g. on a file system every worker shares "
                            "(default: RESULTS/checkpoints; workers must allow DIR with their own --checkpoint-dir)")
    group.add_argument("--keep-checkpoints", choices=["best", "all", "none"], default=None,
                       help="what is kept when the run finishes: the best configuration's model at the highest "
                            "budget (default), every configuration's latest checkpoint, or nothing")
    group.add_argument("--no-checkpoints", action="store_true",
                       help="no checkpoints: every budget trains from scratch")


def _add_worker_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("worker")
    group.add_argument("--device", help="torch device, e.g. cuda:1 (default: CUDA when available, else CPU)")
    group.add_argument("--data-root", default=os.environ.get("HPO_DATA_ROOT"),
                       help="where data sets are downloaded and read (env HPO_DATA_ROOT)")
    group.add_argument("--loader-workers", type=int, help="DataLoader worker processes per job")
    group.add_argument("--strict-images", action="store_true", help="fail a job on a corrupt image instead of skipping it")
    group.add_argument("--job", help="job to run instead of the one the search space names (name or module:callable)")


def _add_transport_flags(parser: argparse.ArgumentParser, run: bool = False) -> None:
    group = parser.add_argument_group("transport security")
    if run:
        group.add_argument("--tls", metavar="DIR", default=os.environ.get("HPO_TLS_DIR") or None,
                           help="certificates made by 'hpo certs' (env HPO_TLS_DIR; default: made for this run)")
        group.add_argument("--insecure", action="store_true", help="no TLS between this run's processes (loopback)")
    else:
        group.add_argument("--tls", metavar="DIR", default=os.environ.get("HPO_TLS_DIR") or None,
                           help="mutual TLS with the CA, certificate and key in DIR, made by 'hpo certs' "
                                "(env HPO_TLS_DIR)")
        group.add_argument("--insecure", action="store_true",
                           help="allow listening beyond loopback without TLS (anyone who reaches it can "
                                "send jobs and forge results)")


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``hpo`` parser; each subcommand's ``func`` is its ``hpo.cli.cmd_*`` (imported here: hpo.cli imports this)."""
    from hpo.cli import cmd_certs, cmd_master, cmd_nameserver, cmd_run, cmd_space_check, cmd_train, cmd_worker
    from hpo.help_format import HelpParser, example

    parser = HelpParser(prog="hpo", description="BOHB hyperparameter optimization for image classifiers",
                        epilog=example("hpo run search_spaces/quickstart.yaml --workers 2 --results results/demo",
                                       "hpo COMMAND --help"))
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=HelpParser)

    p = sub.add_parser("run", help="nameserver, master and N workers on this machine",
                       description="Run a search on this machine: a nameserver, the master (with a live progress "
                                   "bar) and --workers worker processes, all stopped at the end or on Ctrl-C.",
                       epilog=example("hpo run search_spaces/quickstart.yaml --workers 2 --results results/demo",
                                      "hpo run --resume results/demo   # after a crash or Ctrl-C"))
    p.add_argument("space", nargs="?", help="search-space YAML file")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (at most 4 per CPU core, or one per device of --devices/GPU, "
                        "unless --force)")
    p.add_argument("--force", action="store_true", help="start more --workers than this host runs well")
    p.add_argument("--devices", help="comma-separated devices given to workers in turn (default: every GPU, else CPU)")
    p.add_argument("--run-id", help="run name (default: <space name>-<date-time>)")
    p.add_argument("--results", help="results directory (default: results/<run-id>)")
    _add_budget_flags(p)
    _add_recovery_flags(p)
    _add_checkpoint_flags(p)
    _add_worker_flags(p)
    _add_transport_flags(p, run=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("master", help="the optimizer; workers join it through the nameserver",
                       description="Run the optimizer for a distributed search: it waits for its nameserver and "
                                   "--min-workers workers, then hands them jobs.",
                       epilog=example("hpo master search_spaces/resnet50_caltech101.yaml --run-id run1 "
                                      "--nameserver HOST:9090 --tls tls --results results/run1"))
    p.add_argument("space", nargs="?", help="search-space YAML file")
    p.add_argument("--run-id", help="run name that workers use to find this master (required without --resume)")
    _add_nameserver_flags(p, "workers")
    p.add_argument("--results", help="results directory (default: results/<run-id>)")
    p.add_argument("--min-workers", type=int, default=1, help="workers to wait for before starting")
    p.add_argument("--connect-timeout", type=float, default=120.0, help="seconds to wait for the nameserver")
    _add_budget_flags(p)
    _add_recovery_flags(p)
    _add_checkpoint_flags(p)
    _add_transport_flags(p)
    p.set_defaults(func=cmd_master)

    p = sub.add_parser("worker", help="serve jobs for a run; start one per GPU",
                       description="Serve a master's jobs: found through the nameserver by --run-id; one per GPU.",
                       epilog=example("hpo worker --run-id run1 --nameserver HOST:9090 --tls tls --device cuda:0"))
    p.add_argument("--run-id", required=True, help="the master's run id")
    _add_nameserver_flags(p, "the master")
    p.add_argument("--work-dir", default="results",
                   help="work root: jobs whose working directory (under the master's results directory) lies "
                        "outside it are refused (default: ./results)")
    p.add_argument("--space", help="search-space YAML whose job this worker may run (besides --job and the "
                                   "installed hpo.jobs)")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="where the master's checkpoint directory may lie besides the work root (the master's "
                        "--checkpoint-dir, on a shared file system)")
    p.add_argument("--connect-timeout", type=float, default=300.0, help="seconds to wait for the nameserver")
    p.add_argument("--master-timeout", type=float, default=600.0,
                   help="seconds to wait for a master that is gone (e.g. to be resumed) before exiting 0")
    _add_worker_flags(p)
    _add_transport_flags(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("nameserver", help="the Pyro4 nameserver masters and workers meet at",
                       description="Run the Pyro4 nameserver where a master and its workers find each other.",
                       epilog=example("hpo nameserver --host 0.0.0.0 --port 9090 --tls tls"))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_NAMESERVER_PORT, help="port")
    _add_transport_flags(p)
    p.set_defaults(func=cmd_nameserver)

    p = sub.add_parser("certs", help="make a CA and certificates for mutual TLS (--tls DIR)",
                       description="Make DIR/ca.pem, DIR/cert.pem and DIR/key.pem (and DIR/ca.key, the CA's key, "
                                   "unless --ca signs).",
                       epilog=example("hpo certs tls --host head.example.org --host 10.0.0.2"))
    p.add_argument("directory", metavar="DIR", help="directory to write (refused if it already holds certificates)")
    p.add_argument("--host", action="append", default=[], metavar="NAME_OR_IP",
                   help="a host name or address the certificate is for (repeatable; loopback is always added)")
    p.add_argument("--ca", metavar="CA_DIR", help="sign with the CA in CA_DIR (ca.pem, ca.key) instead of a new one")
    p.add_argument("--days", type=int, default=825, help="days the certificate is valid")
    p.add_argument("--if-missing", action="store_true", help="exit 0 and keep DIR when it already holds certificates")
    p.set_defaults(func=cmd_certs)

    p = sub.add_parser("train", help="run one configuration at one budget in this process",
                       description="Train one configuration (the space's defaults, changed by --set) for one budget "
                                   "in this process, printing each epoch: to debug a configuration.",
                       epilog=example("hpo train search_spaces/quickstart.yaml --budget 2 --set lr=0.05 "
                                      "--set regime=frozen",
                                      "hpo train search_spaces/quickstart.yaml --budget 1 --json > result.json"))
    p.add_argument("space", help="search-space YAML file")
    p.add_argument("--budget", type=float, help="epochs (default: the space's max budget)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="set a hyperparameter, searched or constant, for this job (repeatable; default: the "
                        "space's defaults)")
    p.add_argument("--work-dir", help="the job's working directory (default: .)")
    p.add_argument("--json", action="store_true",
                   help="print the result line as the results log holds it (epoch lines go to stderr)")
    p.add_argument("--indent", type=int, default=None, help="with --json: pretty-print with this indent")
    _add_worker_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("space", help="search-space tools", description="Search-space tools.",
                       epilog=example("hpo space check search_spaces/quickstart.yaml"))
    space_sub = p.add_subparsers(dest="space_command", required=True, metavar="SUBCOMMAND", parser_class=HelpParser)
    c = space_sub.add_parser("check", help="check search-space files and summarise them",
                             description="Check search-space files; show each hyperparameter's range or value and "
                                         "the run's cost in jobs and epochs.",
                             epilog=example("hpo space check search_spaces/quickstart.yaml"))
    c.add_argument("spaces", nargs="+", metavar="SPACE", help="search-space YAML files")
    c.add_argument("--optimizer", choices=["bohb", "hyperband", "randomsearch"], default="bohb",
                   help="whose brackets the cost is of")
    c.set_defaults(func=cmd_space_check)

    from hpo.dashboard.cli import add_parser as add_dashboard_parser
    from hpo.export.cli import add_parser as add_export_parser

    add_export_parser(sub)
    add_dashboard_parser(sub)
    return parser
