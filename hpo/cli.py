"""The ``hpo`` command: run, master, worker, nameserver, certs, train, space check.

Its parser is in hpo.cli_parser, the settings it derives from the arguments in hpo.cli_settings.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence


from hpo.cli_parser import build_parser
from hpo.closed_pipe import silence_closed_stdout, stdout_closed
from hpo.cli_settings import master_settings, space_and_run, transport_from_args, worker_options
from hpo.errors import UserError
from hpo.names import check_run_id
from hpo.network import parse_address

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

    space, run_id, results, resume = space_and_run(args)
    settings = master_settings(space, args, run_id, results, ("127.0.0.1", 0), "127.0.0.1", args.workers, resume)
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
    from hpo.launcher import check_cuda_devices, detect_gpus
    from hpo.limits import check_devices, check_worker_count

    gpus = detect_gpus()
    devices = check_devices(args.devices, gpus)
    check_cuda_devices(devices or [])
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
    space, run_id, results, resume = space_and_run(args)
    settings = master_settings(space, args, run_id, results, parse_address(args.nameserver), args.host,
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
        run_id=check_run_id(args.run_id), nameserver_host=host, nameserver_port=port, host=args.host, job=args.job,
        space_job=space_job, device=args.device, data_root=args.data_root, work_dir=args.work_dir,
        checkpoint_dir=args.checkpoint_dir,
        options=worker_options(args), nameserver_timeout=args.connect_timeout, transport=transport_from_args(args),
        master_timeout=args.master_timeout,
    ))
    return 0


def cmd_nameserver(args: argparse.Namespace) -> int:
    from hpo.nameserver import serve_nameserver

    serve_nameserver(args.host, args.port, transport_from_args(args))
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
                     options=worker_options(args), as_json=args.json, indent=args.indent)


def cmd_space_check(args: argparse.Namespace) -> int:
    from hpo.job_check import check_space_config
    from hpo.jobs import job_not_found
    from hpo.optimizers import budget_ladder
    from hpo.space import load_space

    for path in args.spaces:
        space = load_space(path)
        problem = job_not_found(space.job)
        if problem:  # a job named by module:callable must at least be found here
            raise UserError(f"{path}: job: {space.job!r}: {problem}")
        unchecked = check_space_config(space)  # keys and values the job would refuse only at run time
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
        if unchecked:
            print(f"  configurations not checked: {unchecked}")
        from hpo.space_summary import cost_lines, hyperparameter_lines

        print("\n".join(hyperparameter_lines(space) + cost_lines(b, args.optimizer)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    _terminate_as_interrupt()
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except UserError as exc:
        print("hpo: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # always one line
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if stdout_closed():  # e.g. `hpo space check ... | head`: the reader is gone; say nothing more
            silence_closed_stdout()
            return 0
        print(f"hpo {args.command}: a connection or pipe closed under it ({exc})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
