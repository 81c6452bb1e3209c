"""How fast a dead worker is noticed: SIGKILL a busy worker, read when its attempt was recorded lost.

Real processes on loopback (a nameserver, a master, two workers on the synthetic job, no TLS);
the figure is the time from the SIGKILL to the ``lost`` time stamp of the attempt in
``attempts.json``. Run from the repository root::

    python benchmarks/bench_recovery.py --trials 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_faults import Cluster, slow_space, wait_until  # noqa: E402  (real-process helpers)


def one_trial() -> float:
    tmp = Path(tempfile.mkdtemp(prefix="hpo-bench-recovery-"))
    cluster = Cluster(tmp, slow_space(tmp, 1.0), iterations=1)
    try:
        cluster.start_nameserver()
        victim = cluster.start_worker()
        cluster.start_worker()
        master = cluster.start_master("--min-workers", "2")
        wait_until(lambda: cluster.worker_busy(victim), 60, "a job on the first worker")
        killed = time.time()
        victim.kill()
        attempts = cluster.results / "attempts.json"
        wait_until(attempts.exists, 60, "the lost attempt")
        lost = json.loads(attempts.read_text().splitlines()[0])[2]["lost"]
        master.wait(timeout=120)
        return lost - killed
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    delays = [one_trial() for _ in range(args.trials)]
    print(f"dead worker noticed after {', '.join(f'{d:.2f}' for d in delays)} s "
          f"(median {statistics.median(delays):.2f} s, {args.trials} trials)")


if __name__ == "__main__":
    main()
