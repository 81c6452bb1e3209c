"""Check a finished run's results directory for the Docker smoke test.

    python tests/docker/check_results.py RESULTS_DIR --jobs N [--max-crashed K]

Passes (exit 0) when results.json holds exactly N lines, every line a finished job with a
finite loss except at most K crashed ones (result null, e.g. 'Worker died unexpectedly.'),
and run.json says the run finished. Prints one summary line; on failure, why (exit 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def check(results_dir: Path, jobs: int, max_crashed: int) -> list[str]:
    """The problems found in ``results_dir`` (empty when it passes)."""
    problems = []
    lines = [line for line in (results_dir / "results.json").read_text().splitlines() if line.strip()]
    crashed = 0
    for number, line in enumerate(lines, start=1):
        config_id, budget, _times, result, exception = json.loads(line)
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
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--jobs", type=int, required=True, help="jobs the master planned")
    parser.add_argument("--max-crashed", type=int, default=0, help="crashed jobs tolerated")
    args = parser.parse_args()
    problems = check(args.results_dir, args.jobs, args.max_crashed)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
