"""Check a finished run's results directory for the Docker smoke test.

    python tests/docker/check_results.py RESULTS_DIR --jobs N [--max-crashed K]
        [--worker-log FILE ...] [--oom-killed-log FILE]

Passes (exit 0) when results.json holds exactly N lines, every line a finished job with a
finite loss except at most K crashed ones (result null, an exception in the job), and run.json
says the run finished. Every lost attempt in attempts.json (a job whose worker died) must have
run again: its job's result line comes from a later attempt and lists it in lost_attempts.

--worker-log FILE (one per worker container, its `docker logs`, every start of it): worker names
stay unique and traceable. Each start announces its name (`worker NAME for run ... serving
on`); no name may appear in two containers or twice; every result's info.worker and every
lost attempt's worker must be one of them; the results must come from at least 2 names of at
least 2 containers (not collapsed into one, as `vm:7` for every replica once was).
--oom-killed-log FILE: the log of a worker container whose hpo process was SIGKILLed (as the
kernel's OOM killer does): it must have started again (compose's restart), under a new name;
when its first start was running a job at the kill, that job's attempt must be in
attempts.json under the first name, and the job must have finished on a later attempt.
Prints a summary; on failure, why (exit 1).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

#: what a worker logs when it starts serving, when a job starts, and when it is done
SERVING = re.compile(r"worker (\S+) for run \S+ serving on")
JOB_START = re.compile(r"job (\([^)]*\)): \S+ at budget (\S+)")
JOB_DONE = re.compile(r"job (\([^)]*\)) done")


def suffix(name: str) -> str:
    """The random part of a worker's name: the same in ``host:pid:SUFFIX`` (results) and in
    hpbandster's ``hpbandster.run_ID.worker.host.pid.SUFFIX`` (attempts.json)."""
    return re.split(r"[:.]", name)[-1]


def read_lines(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def starts(log: Path) -> list[dict]:
    """The worker starts in a container's log, each with its name and the jobs it began and ended."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if match := SERVING.search(line):
            found.append({"name": match.group(1), "began": [], "done": []})
        elif found and (match := JOB_START.search(line)):
            found[-1]["began"].append((match.group(1), float(match.group(2))))
        elif found and (match := JOB_DONE.search(line)):
            found[-1]["done"].append(match.group(1))
    return found


def job_key(config_id, budget) -> tuple[str, str]:
    return "(" + ", ".join(str(part) for part in config_id) + ")", f"{float(budget):g}"


def check(results_dir: Path, jobs: int, max_crashed: int) -> list[str]:
    """The problems found in ``results_dir`` (empty when it passes)."""
    problems = []
    lines = read_lines(results_dir / "results.json")
    crashed = 0
    for number, (config_id, budget, _times, result, exception) in enumerate(lines, start=1):
        if result is None:
            crashed += 1
            first_line = (exception or "").strip().splitlines()[-1:] or ["?"]
            print(f"  crashed job {config_id} at budget {budget}: {first_line[0]}")
            continue
        loss = result.get("loss")
        if not isinstance(loss, (int, float)) or not math.isfinite(loss):
            problems.append(f"line {number}: job {config_id} at budget {budget} has loss {loss!r} "
                            f"({result.get('info', {}).get('message', '')})")
    if len(lines) != jobs:
        problems.append(f"results.json has {len(lines)} lines, expected {jobs} jobs")
    if crashed > max_crashed:
        problems.append(f"{crashed} crashed jobs, at most {max_crashed} allowed")
    run = json.loads((results_dir / "run.json").read_text())
    if run.get("status", "finished") != "finished" or not run.get("finished_at"):
        problems.append(f"run.json: status {run.get('status')!r}, finished_at {run.get('finished_at')!r}")
    print(f"{results_dir}: {len(lines)} jobs ({crashed} crashed), run status {run.get('status')!r}")
    problems += check_attempts(results_dir)
    return problems


def results_by_job(results_dir: Path) -> dict:
    return {job_key(line[0], line[1]): line[3] for line in read_lines(results_dir / "results.json")}


def check_attempts(results_dir: Path) -> list[str]:
    """Every lost attempt ran again: the job's result comes from a later attempt and lists it."""
    problems = []
    results = results_by_job(results_dir)
    attempts = read_lines(results_dir / "attempts.json")
    for config_id, budget, attempt in attempts:
        key = job_key(config_id, budget)
        print(f"  lost attempt {attempt.get('attempt')} of job {key[0]} at budget {key[1]} on "
              f"{attempt.get('worker')} ({attempt.get('reason')})")
        result = results.get(key)
        info = (result or {}).get("info") or {}
        if result is None:
            problems.append(f"job {key[0]} at budget {key[1]}: lost attempt {attempt.get('attempt')}, "
                            f"and no result line (or a crashed one)")
        elif not info.get("attempt", 1) > attempt.get("attempt", 1):
            problems.append(f"job {key[0]} at budget {key[1]}: result from attempt {info.get('attempt')}, "
                            f"not after the lost attempt {attempt.get('attempt')}")
        elif not any(isinstance(listed, dict) and (listed.get("attempt"), listed.get("worker"))
                     == (attempt.get("attempt"), attempt.get("worker")) for listed in info.get("lost_attempts", [])):
            problems.append(f"job {key[0]} at budget {key[1]}: its result's lost_attempts do not list "
                            f"the lost attempt {attempt}")
    print(f"{results_dir}: {len(attempts)} lost attempt(s) in attempts.json, each run again")
    return problems


def check_workers(results_dir: Path, logs: list[Path]) -> list[str]:
    """Worker names are unique per start and every result and lost attempt names one of them."""
    problems = []
    container_of: dict[str, str] = {}
    for log in logs:
        names = [start["name"] for start in starts(log)]
        if not names:
            problems.append(f"{log.name}: no worker start (`worker NAME for run ... serving on`) logged")
        for name in names:
            if suffix(name) in container_of:
                problems.append(f"worker name {name} announced twice ({container_of[suffix(name)]} "
                                f"and {log.name})")
            container_of[suffix(name)] = log.name
        print(f"  {log.name}: {len(names)} start(s): {', '.join(names)}")
    per_name: dict[str, int] = {}
    for config_id, budget, _times, result, _exception in read_lines(results_dir / "results.json"):
        name = ((result or {}).get("info") or {}).get("worker")
        if not isinstance(name, str):
            problems.append(f"job {job_key(config_id, budget)}: no info.worker in its result")
            continue
        per_name[name] = per_name.get(name, 0) + 1
        if suffix(name) not in container_of:
            problems.append(f"job {job_key(config_id, budget)}: worker {name} was announced by no container")
    for config_id, budget, attempt in read_lines(results_dir / "attempts.json"):
        if suffix(str(attempt.get("worker"))) not in container_of:
            problems.append(f"lost attempt of job {job_key(config_id, budget)}: worker {attempt.get('worker')} "
                            f"was announced by no container")
    containers = {container_of.get(suffix(name)) for name in per_name} - {None}
    print(f"{results_dir}: results from {len(per_name)} distinct worker names in {len(containers)} "
          f"containers: " + ", ".join(f"{name} ({count} jobs)" for name, count in sorted(per_name.items())))
    if len(per_name) < 2 or len(containers) < 2:
        problems.append(f"results name {len(per_name)} distinct worker(s) from {len(containers)} container(s); "
                        f"expected at least 2 of each (one name per worker start)")
    return problems


def check_oom_killed(results_dir: Path, log: Path) -> list[str]:
    """The worker SIGKILLed inside its container started again, and a job it ran was run again."""
    found = starts(log)
    if len(found) < 2:
        return [f"{log.name}: {len(found)} worker start(s) logged after its hpo process was SIGKILLed; "
                f"expected a second one (compose's restart: on-failure)"]
    first = found[0]
    print(f"  {log.name}: SIGKILLed as {first['name']}, started again as "
          f"{', '.join(start['name'] for start in found[1:])}")
    running = first["began"][-1] if first["began"] and first["began"][-1][0] not in first["done"] else None
    if running is None:
        print(f"  {first['name']} was between jobs at the kill: no attempt lost")
        return []
    config_id, budget = running
    lost = [attempt for cid, b, attempt in read_lines(results_dir / "attempts.json")
            if job_key(cid, b) == (config_id, f"{budget:g}") and suffix(str(attempt.get("worker"))) == suffix(first["name"])]
    if not lost:
        return [f"{first['name']} was running job {config_id} at budget {budget:g} when it was SIGKILLed, "
                f"but attempts.json has no lost attempt of it on that worker"]
    result = results_by_job(results_dir).get((config_id, f"{budget:g}")) or {}
    loss, info = result.get("loss"), result.get("info") or {}
    print(f"  job {config_id} at budget {budget:g}: lost on {first['name']} (attempt {lost[0].get('attempt')}), "
          f"finished on {info.get('worker')} (attempt {info.get('attempt')}, loss {loss})")
    if not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return [f"job {config_id} at budget {budget:g}, lost with the SIGKILLed worker, has loss {loss!r}"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--jobs", type=int, required=True, help="jobs the master planned")
    parser.add_argument("--max-crashed", type=int, default=0, help="crashed jobs tolerated")
    parser.add_argument("--worker-log", type=Path, action="append", default=[],
                        help="a worker container's log (once per container): check the worker names")
    parser.add_argument("--oom-killed-log", type=Path,
                        help="the log of the worker container whose hpo process was SIGKILLed")
    args = parser.parse_args()
    problems = check(args.results_dir, args.jobs, args.max_crashed)
    if args.worker_log:
        problems += check_workers(args.results_dir, args.worker_log)
    if args.oom_killed_log:
        problems += check_oom_killed(args.results_dir, args.oom_killed_log)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
