"""``--resume``: continue a run whose master died, from its results directory.

The log is the state. :func:`load_run_to_resume` reads ``run.json`` (the space, the budgets, the
optimizer, the seed) and the log lines; :func:`restore_iterations` rebuilds the optimizer: the
successive-halving iterations are replayed from the logged configurations and results (each
configuration under its logged id, each result registered as if it had just arrived, so BOHB's
model is fitted on every logged result), and iteration numbering continues after the last one.

What is not in the log runs (again): jobs that were in flight when the master died are queued;
configurations an iteration had not sampled yet are sampled by the resumed optimizer, whose random
state is seeded anew for each start (:func:`sampling_seed`): seeded as the first start was, it
would draw the first start's configurations again. A finished (configuration, budget) pair never
runs again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hpbandster.core.dispatcher import Job

from hpo.durable_files import read_log_lines, repair_torn_line
from hpo.errors import UserError
from hpo.jobs import is_failure
from hpo.results import CONFIGS_FILE, RESULTS_FILE, read_run_metadata
from hpo.space import SearchSpace, parse_space


@dataclass
class RunToResume:
    """What a results directory says about the run to continue."""

    directory: str
    metadata: dict
    space: SearchSpace
    configs: dict  # config id -> (config, config_info)
    results: dict  # (config id, budget) -> [config_id, budget, time_stamps, result, exception]
    repairs: list[str]


class _SamplingNeeded(Exception):
    """The replayed iteration needs a configuration the log does not have."""


def sampling_seed(seed: int, start: int) -> int:
    """The seed of the samplers' random state for the ``start``-th start of a run (0: the first,
    which uses ``seed`` itself); a resumed start gets a seed of its own, derived from both."""
    if start == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(start)]).generate_state(1)[0])


def load_run_to_resume(directory: str) -> RunToResume:
    """Read a run's results directory for ``--resume``; a UserError says what is missing."""
    root = Path(directory)
    if not (root / "run.json").is_file():
        raise UserError(f"--resume {directory}: no run.json there (not a results directory of hpo)")
    metadata = read_run_metadata(root, strict=True)
    if metadata.get("status") == "finished":
        raise UserError(f"--resume {directory}: the run finished already (run.json status 'finished')")
    if not isinstance(metadata.get("space"), dict):
        raise UserError(f"--resume {directory}: run.json holds no search space")
    space = parse_space(yaml.safe_dump(metadata["space"]), where=f"{directory}/run.json")
    if metadata.get("space_file"):
        space.path = metadata["space_file"]
    repairs = [w for w in (repair_torn_line(root / CONFIGS_FILE), repair_torn_line(root / RESULTS_FILE)) if w]
    configs = {tuple(line[0]): (line[1], line[2] if len(line) > 2 else {})
               for line in read_log_lines(root / CONFIGS_FILE)}
    results = {}
    for line in read_log_lines(root / RESULTS_FILE):
        results[(tuple(line[0]), float(line[1]))] = line
    return RunToResume(str(root), metadata, space, configs, results, repairs)


def restore_iterations(optimizer: Any, run: RunToResume) -> int:
    """Replay the logged iterations into ``optimizer`` (before it runs); returns how many results
    were replayed. Jobs that were in flight are left queued, so they run first."""
    replayed = 0
    last_iteration = max((cid[0] for cid in run.configs), default=-1)
    for index in range(last_iteration + 1):
        iteration = optimizer.get_next_iteration(index, {})
        replayed += _replay(optimizer, iteration, index, run)
        iteration.result_logger = optimizer.result_logger
        optimizer.iterations.append(iteration)
    return replayed


def _replay(optimizer: Any, iteration: Any, index: int, run: RunToResume) -> int:
    sampler = iteration.config_sampler

    def logged_config(budget: float):
        config_id = (index, iteration.stage, iteration.actual_num_configs[iteration.stage])
        if config_id not in run.configs:
            raise _SamplingNeeded
        return run.configs[config_id]

    iteration.config_sampler = logged_config
    in_flight, replayed = [], 0
    try:
        while True:
            scheduled = iteration.get_next_run()
            if scheduled is None:
                break
            config_id, config, budget = scheduled
            line = run.results.get((config_id, float(budget)))
            if line is None:
                in_flight.append(config_id)  # stays RUNNING while replaying, queued below
                continue
            job = _job_from_line(config_id, config, budget, line)
            iteration.register_result(job)
            optimizer.config_generator.new_result(job)
            _count(optimizer, job)
            replayed += 1
    except _SamplingNeeded:
        pass
    finally:
        iteration.config_sampler = sampler
    for config_id in in_flight:
        iteration.data[config_id].status = "QUEUED"
        iteration.num_running -= 1
    return replayed


def _job_from_line(config_id: tuple, config: dict, budget: float, line: list) -> Job:
    _, _, stamps, result, exception = line
    job = Job(config_id, config=config, budget=budget)
    job.timestamps = dict(stamps or {})
    job.result = result
    job.exception = exception
    if is_failure(result) and result is not None:
        result["loss"] = math.inf  # as the master's callback does: BOHB sees +inf
    return job


def _count(optimizer: Any, job: Job) -> None:
    counts = optimizer.progress
    failed = is_failure(job.result)
    with counts.lock:
        counts.finished += 1
        if failed:
            counts.failed += 1
        elif counts.best_loss is None or job.result["loss"] < counts.best_loss:
            counts.best_loss = job.result["loss"]
    info = job.result.get("info") if isinstance(job.result, dict) else None
    optimizer._note_for_fail_fast(failed, info if isinstance(info, dict) else {})


def resume_summary(run: RunToResume, replayed: int, optimizer: Any) -> str:
    """One line for the log: what was restored and what is left."""
    queued = sum(1 for it in optimizer.iterations for d in it.data.values() if d.status == "QUEUED")
    return (f"resuming {run.directory}: {replayed} result(s) of {len(optimizer.iterations)} iteration(s) "
            f"restored, {queued} job(s) that were in flight queued again")
