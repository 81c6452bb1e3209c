"""The ``hpo`` command: run, master, worker, nameserver, certs, train, space check."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence


from hpo.errors import UserError
from hpo.network import DEFAULT_NAMESERVER_PORT, parse_address

logger = logging.getLogger("hpo")

def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    # hpbandster narrates every dispatch at INFO; keep that for -v.
    logging.getLogger("hpo.master.hpbandster").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("hpo.worker.hpbandster").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("hpbandster").setLevel(logging.INFO if verbose else logging.WARNING)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> None:
    """SIGTERM (docker stop, kill) ends a command like Ctrl-C: cleanly. SIGINT's handler is set
    too: a process started with SIGINT ignored (by a script, nohup) would otherwise ignore Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --- shared flags ---------------------------------------------------------------------------------


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


def _checkpoint_settings(args: argparse.Namespace, resume) -> dict:
    """MasterSettings fields from the checkpoint flags (a resumed run keeps those of its run.json)."""
    given = [flag for flag, value in (("--checkpoint-dir", args.checkpoint_dir),
                                      ("--keep-checkpoints", args.keep_checkpoints),
                                      ("--no-checkpoints", args.no_checkpoints)) if value]
    if resume is not None:
        if given:
            raise UserError(f"{given[0]}: a resumed run keeps the checkpoint settings in its run.json")
        return {}
    if args.no_checkpoints and len(given) > 1:
        raise UserError(f"--no-checkpoints and {given[0] if given[0] != '--no-checkpoints' else given[1]}: "
                        f"choose one")
    if args.checkpoint_dir:
        from hpo.checkpoints import root_problem

        problem = root_problem(args.checkpoint_dir)
        if problem:
            raise UserError(f"--checkpoint-dir {args.checkpoint_dir}: checkpoints cannot be written there "
                            f"({problem})")
    return {"checkpoints": not args.no_checkpoints, "checkpoint_dir": args.checkpoint_dir,
            "keep_checkpoints": args.keep_checkpoints or "best"}


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


def _transport(args: argparse.Namespace):
    from hpo.transport import Transport

    if args.tls and args.insecure:
        raise UserError("--tls and --insecure: choose one")
    return Transport(tls_dir=args.tls, insecure=args.insecure)


def _worker_options(args: argparse.Namespace) -> dict:
    options = {}
    if args.loader_workers is not None:
        options["loader_workers"] = args.loader_workers
    if args.strict_images:
        options["strict_images"] = True
    return options


def _budget(space, args):
    from hpo.master import with_overrides
    from hpo.space import check_seed

    if args.seed is not None:
        check_seed(args.seed, "--seed")
    return with_overrides(space.budget, min_budget=args.min_budget, max_budget=args.max_budget, eta=args.eta,
                          iterations=args.iterations)


def _master_settings(space, args, run_id: str, results: str, nameserver: tuple[str, int], host: Optional[str],
                     min_workers: int, resume=None):
    from hpo.master import MasterSettings

    return MasterSettings(**_checkpoint_settings(args, resume),
        run_id=run_id, results_dir=results, nameserver_host=nameserver[0], nameserver_port=nameserver[1], host=host,
        budget=_budget(space, args), optimizer=args.optimizer or "bohb", min_workers=min_workers, seed=args.seed,
        ping_interval=args.ping_interval, show_progress=not args.no_progress, transport=_transport(args),
        max_retries=args.max_retries,
    )


def _space_and_run(args: argparse.Namespace):
    """(space, run id, results directory, run to resume or None) from SPACE or --resume."""
    from hpo.space import load_space

    if args.max_retries < 0:
        raise UserError(f"--max-retries: must be >= 0 (got {args.max_retries})")
    if not args.resume:
        if not args.space:
            raise UserError("a search-space file is needed (or --resume RESULTS_DIR)")
        space = load_space(args.space)
        from hpo.names import default_run_id

        run_id = _check_run_id(args.run_id if args.run_id is not None else
                               default_run_id(space.name, time.strftime("%Y%m%d-%H%M%S")))
        return space, run_id, args.results or str(Path("results") / run_id), None
    from hpo.resume import load_run_to_resume

    if args.space:
        raise UserError(f"--resume {args.resume}: give no search-space file (the run's own is in its run.json)")
    if args.results and Path(args.results).resolve() != Path(args.resume).resolve():
        raise UserError(f"--resume {args.resume} and --results {args.results}: a resumed run stays in its directory")
    run = load_run_to_resume(args.resume)
    run_id = str(run.metadata.get("run_id") or "")
    if args.run_id and args.run_id != run_id:
        raise UserError(f"--run-id {args.run_id}: the run in {args.resume} is {run_id!r}")
    for flag in ("min_budget", "max_budget", "eta", "iterations", "optimizer", "seed"):
        value = getattr(args, flag)
        if value is not None and value != run.metadata.get(flag):
            raise UserError(f"--{flag.replace('_', '-')}: a resumed run keeps the settings in its run.json")
    args.optimizer = run.metadata.get("optimizer", "bohb")
    args.seed = run.metadata.get("seed")
    args.min_budget, args.max_budget = run.metadata.get("min_budget"), run.metadata.get("max_budget")
    args.eta, args.iterations = run.metadata.get("eta"), run.metadata.get("iterations")
    return run.space, _check_run_id(run_id), args.resume, run


def _check_run_id(run_id: str, flag: str = "--run-id") -> str:
    from hpo.names import check_run_id

    return check_run_id(run_id, flag)


def interrupted_message(results_dir: str, jobs_in_flight: Optional[int], command: str) -> str:
    """One line for Ctrl-C: the jobs cut short, where the results are, how to see and continue them."""
    lost = "" if jobs_in_flight is None else (
        f"; {jobs_in_flight} job{'' if jobs_in_flight == 1 else 's'} in flight lost")
    if not (Path(results_dir) / "run.json").exists():
        return f"hpo: interrupted{lost}; nothing recorded in {results_dir}"
    return (f"hpo: interrupted{lost}; results so far in {results_dir}; see: hpo-report {results_dir}; "
            f"continue: hpo {command} --resume {results_dir}")


# --- commands -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from hpo.launcher import run_local

    space, run_id, results, resume = _space_and_run(args)
    settings = _master_settings(space, args, run_id, results, ("127.0.0.1", 0), "127.0.0.1", args.workers, resume)
    worker_args = ["--space", args.space] if args.space else ["--job", space.job]
    if args.data_root:
        worker_args += ["--data-root", args.data_root]
    if args.loader_workers is not None:
        worker_args += ["--loader-workers", str(args.loader_workers)]
    if args.strict_images:
        worker_args += ["--strict-images"]
    if args.checkpoint_dir:
        worker_args += ["--checkpoint-dir", args.checkpoint_dir]
    if args.job:
        from hpo.jobs import job_problem

        if job_problem(args.job):
            raise UserError(f"--job {args.job!r}: {job_problem(args.job)}")
        worker_args += ["--job", args.job]
    from hpo.launcher import detect_gpus
    from hpo.limits import check_devices, check_worker_count

    gpus = detect_gpus()
    devices = check_devices(args.devices, gpus)
    check_worker_count(args.workers, devices or gpus, args.force)
    from hpo.transport import Transport

    # default (None): TLS with certificates made for this run; --insecure: none, on loopback
    transport = Transport(tls_dir=args.tls) if args.tls else Transport() if args.insecure else None
    try:
        summary = run_local(space, settings, args.workers, worker_args, devices=devices, transport=transport,
                            resume=resume)
    except KeyboardInterrupt as exc:
        print(interrupted_message(results, getattr(exc, "jobs_in_flight", None), "run"), file=sys.stderr)
        return 130
    print(summary.line())
    if summary.best_model:
        print(f"best model: {summary.best_model}")
    print(f"next: hpo-report {summary.results_dir}")
    return 0


def cmd_master(args: argparse.Namespace) -> int:
    from hpo.master import run_master

    if not args.resume and not args.run_id:
        raise UserError("--run-id is needed (the name workers use to find this master)")
    space, run_id, results, resume = _space_and_run(args)
    settings = _master_settings(space, args, run_id, results, parse_address(args.nameserver), args.host,
                                args.min_workers, resume)
    settings.nameserver_timeout = args.connect_timeout
    try:
        summary = run_master(space, settings, resume=resume)
    except KeyboardInterrupt as exc:
        print(interrupted_message(results, getattr(exc, "jobs_in_flight", None), "master"), file=sys.stderr)
        return 130
    print(summary.line())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from hpo.worker import WorkerSettings, run_worker

    host, port = parse_address(args.nameserver)
    space_job = None
    if args.space:
        from hpo.space import load_space

        space_job = load_space(args.space).job
    run_worker(WorkerSettings(
        run_id=_check_run_id(args.run_id), nameserver_host=host, nameserver_port=port, host=args.host, job=args.job,
        space_job=space_job, device=args.device, data_root=args.data_root, work_dir=args.work_dir,
        checkpoint_dir=args.checkpoint_dir,
        options=_worker_options(args), nameserver_timeout=args.connect_timeout, transport=_transport(args),
        master_timeout=args.master_timeout,
    ))
    return 0


def cmd_nameserver(args: argparse.Namespace) -> int:
    from hpo.nameserver import serve_nameserver

    serve_nameserver(args.host, args.port, _transport(args))
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from hpo.certificates import certificate_summary, make_deployment

    made = make_deployment(args.directory, args.host, ca_directory=args.ca, days=args.days,
                           if_missing=args.if_missing)
    summary = certificate_summary(args.directory)
    if not made:
        print(f"{args.directory}: certificates already there ({summary}); left as they are")
        return 0
    signer = f"signed by the CA in {args.ca}" if args.ca else "and a new CA (ca.key: keep it on this machine)"
    print(f"{args.directory}: cert.pem and key.pem {summary}, {signer}")
    print(f"give every host ca.pem, cert.pem and key.pem (or its own: hpo certs DIR2 --ca {args.directory} "
          f"--host HOST), then: --tls DIR")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from hpo.train import parse_set, run_train

    if args.indent is not None and not args.json:
        raise UserError("--indent: only with --json (it pretty-prints the JSON result)")
    return run_train(args.space, budget=args.budget, overrides=parse_set(args.set or []), job=args.job,
                     device=args.device, data_root=args.data_root, work_dir=args.work_dir,
                     options=_worker_options(args), as_json=args.json, indent=args.indent)


def cmd_space_check(args: argparse.Namespace) -> int:
    from hpo.optimizers import budget_ladder
    from hpo.space import load_space

    from hpo.jobs import job_not_found

    for path in args.spaces:
        space = load_space(path)
        problem = job_not_found(space.job)
        if problem:  # a job named by module:callable must at least be found here
            raise UserError(f"{path}: job: {space.job!r}: {problem}")
        entries = space.describe()
        searched = [e["name"] for e in entries if e["searched"]]
        constants = [e["name"] for e in entries if not e["searched"]]
        b = space.budget
        ladder = ", ".join(f"{x:.3g}" for x in budget_ladder(b.min_budget, b.max_budget, b.eta))
        print(f"{path}: ok: {len(searched)} searched ({', '.join(searched) or '-'}), "
              f"{len(constants)} constant ({', '.join(constants) or '-'}), "
              f"{len(space.configspace.conditions)} condition(s), "
              f"{len(space.configspace.forbidden_clauses)} forbidden; job {space.job}; "
              f"budgets {ladder} (eta {b.eta:g}, {b.iterations} iterations)")
        from hpo.space_summary import cost_lines, hyperparameter_lines

        print("\n".join(hyperparameter_lines(space) + cost_lines(b, args.optimizer)))
    return 0


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--nameserver", default=f"127.0.0.1:{DEFAULT_NAMESERVER_PORT}", help="HOST:PORT of the nameserver")
    p.add_argument("--host", help="address to listen on for workers (default: the one that reaches the nameserver)")
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
    p.add_argument("--nameserver", default=f"127.0.0.1:{DEFAULT_NAMESERVER_PORT}", help="HOST:PORT of the nameserver")
    p.add_argument("--host", help="address to listen on for the master (default: the one that reaches the nameserver)")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    _terminate_as_interrupt()
    try:
        return args.func(args)
    except UserError as exc:
        print("hpo: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # always one line
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
