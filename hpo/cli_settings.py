"""Settings of the ``hpo`` commands derived from their parsed arguments: space, run id, budgets, transport."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from hpo.errors import UserError
from hpo.names import check_run_id

if TYPE_CHECKING:
    from hpo.master import MasterSettings
    from hpo.resume import RunToResume
    from hpo.space import BudgetSettings, SearchSpace
    from hpo.transport import Transport


def checkpoint_settings(args: argparse.Namespace, resume: Optional[RunToResume]) -> dict:
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


def transport_from_args(args: argparse.Namespace) -> Transport:
    """The transport of --tls / --insecure (TLS from $HPO_TLS_DIR when neither is given)."""
    from hpo.transport import Transport

    if args.tls and args.insecure:
        raise UserError("--tls and --insecure: choose one")
    return Transport(tls_dir=args.tls, insecure=args.insecure)


def worker_options(args: argparse.Namespace) -> dict:
    """The job options a worker's flags set (``loader_workers``, ``strict_images``)."""
    options = {}
    if args.loader_workers is not None:
        options["loader_workers"] = args.loader_workers
    if args.strict_images:
        options["strict_images"] = True
    return options


def budget_from_args(space: SearchSpace, args: argparse.Namespace) -> BudgetSettings:
    """The space's budget with the command line's overrides; checks --seed."""
    from hpo.master import with_overrides
    from hpo.space import check_seed

    if args.seed is not None:
        check_seed(args.seed, "--seed")
    return with_overrides(space.budget, min_budget=args.min_budget, max_budget=args.max_budget, eta=args.eta,
                          iterations=args.iterations)


def master_settings(space: SearchSpace, args: argparse.Namespace, run_id: str, results: str,
                    nameserver: tuple[str, int], host: Optional[str], min_workers: int,
                    resume: Optional[RunToResume] = None) -> MasterSettings:
    """Everything the master needs, from the space, the flags and (when resuming) the run's run.json."""
    from hpo.master import MasterSettings

    return MasterSettings(**checkpoint_settings(args, resume),
        run_id=run_id, results_dir=results, nameserver_host=nameserver[0], nameserver_port=nameserver[1], host=host,
        budget=budget_from_args(space, args), optimizer=args.optimizer or "bohb", min_workers=min_workers, seed=args.seed,
        ping_interval=args.ping_interval, show_progress=not args.no_progress, transport=transport_from_args(args),
        max_retries=args.max_retries,
    )


def space_and_run(args: argparse.Namespace) -> tuple[SearchSpace, str, str, Optional[RunToResume]]:
    """(space, run id, results directory, run to resume or None) from SPACE or --resume."""
    from hpo.space import load_space

    if args.max_retries < 0:
        raise UserError(f"--max-retries: must be >= 0 (got {args.max_retries})")
    if not args.resume:
        if not args.space:
            raise UserError("a search-space file is needed (or --resume RESULTS_DIR)")
        space = load_space(args.space)
        from hpo.job_check import check_space_config
        from hpo.names import default_run_id

        check_space_config(space, getattr(args, "job", None))  # what the jobs would refuse only after the run started

        run_id = check_run_id(args.run_id if args.run_id is not None else
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
    return run.space, check_run_id(run_id), args.resume, run

