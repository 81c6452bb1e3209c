"""How long ``hpo-report`` takes on a large log (default: 100,000 results).

    python benchmarks/bench_report.py                  # generates the log in a temporary directory
    python benchmarks/bench_report.py --results 100000 --log /tmp/synthetic --plots

Prints the end-to-end wall time of ``python -m hpo.report LOG`` (best of ``--repeat``, a fresh
process each: imports included) and an in-process breakdown by phase.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_log import write_log  # noqa: E402


def end_to_end(log: Path, *extra: str, repeat: int = 3) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hpo.report", str(log), *extra], check=True, env=env, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def phases(log: Path) -> dict[str, float]:
    timings = {}
    start = time.perf_counter()
    from hpo.report import formatting
    from hpo.report.loading import read_run
    from hpo.report.tables import build_report

    timings["import"] = time.perf_counter() - start
    start = time.perf_counter()
    run = read_run(log)
    timings["read log"] = time.perf_counter() - start
    start = time.perf_counter()
    report = build_report(run)
    timings["tables"] = time.perf_counter() - start
    start = time.perf_counter()
    formatting.render_text([report])
    timings["text output"] = time.perf_counter() - start
    start = time.perf_counter()
    formatting.render_json([report])
    timings["json output"] = time.perf_counter() - start
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--log", type=Path, help="results directory to use (generated when it holds no results.json)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plots", action="store_true", help="also time --plots (4 PNG files)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        log = args.log or Path(scratch) / "synthetic"
        if not (log / "results.json").exists():
            count = write_log(log, args.results)
            print(f"generated {count} results in {log}")
        size = (log / "results.json").stat().st_size / 2**20
        lines = sum(1 for _ in open(log / "results.json"))
        print(f"log: {lines} results, results.json {size:.1f} MiB; {os.cpu_count()} CPUs")
        print(f"hpo-report LOG (text), best of {args.repeat}: {end_to_end(log, repeat=args.repeat):.2f} s")
        print(f"hpo-report LOG --format json, best of {args.repeat}: {end_to_end(log, '--format', 'json', repeat=args.repeat):.2f} s")
        if args.plots:
            plots = Path(scratch) / "plots"
            print(f"hpo-report LOG --plots DIR, best of 1: {end_to_end(log, '--plots', str(plots), repeat=1):.2f} s")
        for name, seconds in phases(log).items():
            print(f"  {name:12s} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
