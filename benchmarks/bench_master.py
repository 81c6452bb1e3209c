"""Does the master keep up with short jobs? Master overhead per result and worker utilisation.

    python benchmarks/bench_master.py                                  # both samplers, 10-90 ms and 0.1-0.9 s jobs
    python benchmarks/bench_master.py --seconds-per-epoch 0.01 --sampler vectorized --iterations 150

Real processes on loopback without TLS: ``hpo nameserver``, ``hpo master`` (BOHB) and ``--workers``
(default 8) ``hpo worker`` processes running the synthetic job, which sleeps ``seconds_per_epoch``
per epoch: budgets 1, 3 and 9 epochs (eta 3), so 0.01 s per epoch gives 10-90 ms jobs and 0.1 s
gives 0.1-0.9 s jobs. ``--sampler hpbandster`` runs the master with hpbandster's own BOHB config
generator (the baseline), ``vectorized`` with :class:`hpo.sampling.VectorizedBOHB` (the service's);
each (sampler, job length) pair is one fresh run, all in this invocation.

From the run's ``results.json`` (hpbandster's time stamps, taken by the master's dispatcher):

* **overhead per result**: for each worker, the time from its result arriving (``finished``) to its
  next job being handed to it (``started``): the master's work between two jobs of one worker
  (the job callback: log line and model update; the next configuration; the dispatch). Median and
  p90, over the first and the last quarter of the results (by arrival), to see whether it grows;
* **utilisation**: sum of the jobs' own durations (``info.wall_time``, measured in the worker) /
  (workers x wall time from the first job started to the last result);
* **inter-result gap**: median time between consecutive results, first vs last quarter.

The master also runs instrumented (hpbandster and hpo functions wrapped with timers in its process,
nothing changed in the service): per-call times of ``get_config``, the config generator's
``new_result`` (KDE refit), the results log's writes (their fsync runs in a background thread,
:mod:`hpo.line_sync`), the whole job callback (its wait for the master's lock included) and the
loop's scan for unfinished iterations, each as a median over all calls and over the first and the
last third of the calls (does it grow with the results?), for get_config, new_result and the job
callback also their thread CPU time (the work without the waits, which the machine's load inflates);
and the garbage collector's pauses during the run (full collections apart).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = ("hpbandster", "vectorized")


# --- the instrumented master (this file, run as a child process) ---------------------------------

def _timed(cls, name: str, bucket: list, cpu_bucket: list | None = None) -> None:
    """Wrap ``cls.name`` to append each call's wall time to ``bucket`` and, with ``cpu_bucket``, its
    calling thread's CPU time (no waiting for locks or for the CPU in it: the work itself, which
    the other engineers' load on the machine does not inflate)."""
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - start)
            if cpu_bucket is not None:
                cpu_bucket.append(time.thread_time() - cpu_start)

    setattr(cls, name, wrapper)


def master_main(stats_path: str, sampler: str, argv: list[str]) -> int:
    from hpbandster.optimizers.config_generators.bohb import BOHB as HpBandSterBOHB

    import hpo.master_loop
    import hpo.results
    from hpo.cli import main
    from hpo.optimizers import ServiceBOHB
    from hpo.sampling import VectorizedBOHB

    if sampler == "hpbandster":
        ServiceBOHB.config_generator_class = HpBandSterBOHB
    stats: dict[str, list] = {"get_config": [], "new_result": [], "log_result": [], "log_config": [],
                              "job_callback": [], "get_config_cpu": [], "new_result_cpu": [],
                              "job_callback_cpu": []}
    generator = HpBandSterBOHB if sampler == "hpbandster" else VectorizedBOHB
    _timed(generator, "get_config", stats["get_config"], stats["get_config_cpu"])
    # VectorizedBOHB has its own new_result (growing arrays)
    _timed(generator, "new_result", stats["new_result"], stats["new_result_cpu"])
    _timed(hpo.results.ResultsLog, "__call__", stats["log_result"])
    _timed(hpo.results.ResultsLog, "new_config", stats["log_config"])
    _timed(hpo.master_loop.ServiceMaster, "job_callback", stats["job_callback"], stats["job_callback_cpu"])
    # the loop's scan for unfinished iterations (under the master's lock), the garbage collector's pauses
    stats.update({"active_iterations": [], "gc": [], "gc_full": []})
    from hpbandster.core.master import Master

    scanner = hpo.master_loop.ServiceMaster if "active_iterations" in vars(hpo.master_loop.ServiceMaster) else Master
    _timed(scanner, "active_iterations", stats["active_iterations"])
    gc_started = []

    def gc_timer(phase: str, info: dict) -> None:
        if not stats["get_config"]:
            return  # start-up (the service's own gc.collect() included): not the run's pauses
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started:
            stats["gc"].append(time.perf_counter() - gc_started[0])
            if info.get("generation") == 2:  # a full collection: walks every tracked object not frozen
                stats["gc_full"].append(stats["gc"][-1])

    gc.callbacks.append(gc_timer)
    def dump() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats["master_cpu_s"] = [usage.ru_utime + usage.ru_stime]
        Path(stats_path).write_text(json.dumps(stats))

    atexit.register(dump)
    return main(argv)


# --- the benchmark --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _space(path: Path, seconds_per_epoch: float, iterations: int) -> Path:
    text = (REPO / "tests" / "spaces" / "synthetic.yaml").read_text()
    text = text.replace("iterations: 3}", f"iterations: {iterations}}}")
    text = text.replace("  model: resnet50\n", f"  model: resnet50\n  seconds_per_epoch: {seconds_per_epoch}\n")
    assert f"seconds_per_epoch: {seconds_per_epoch}" in text and f"iterations: {iterations}" in text
    path.write_text(text)
    return path


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[k]


def run_once(sampler: str, seconds_per_epoch: float, iterations: int, workers: int, root: Path,
             timeout: float) -> dict:
    tag = f"{sampler}-{round(seconds_per_epoch * 1000)}ms"
    work = root / tag
    work.mkdir(parents=True)
    space = _space(work / "space.yaml", seconds_per_epoch, iterations)
    port = _free_port()
    ns = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "HPO_TLS_DIR"}
    env["PYTHONPATH"] = str(REPO)
    logs = work / "logs"
    logs.mkdir()
    procs = []

    def start(name: str, args: list[str]) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "w")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    hpo = [sys.executable, "-m", "hpo"]
    # jobs from scratch: a promoted configuration does not continue from a checkpoint (where the
    # service has them), so the job lengths are the budgets' (1, 3, 9 epochs)
    help_text = subprocess.run([*hpo, "master", "--help"], capture_output=True, text=True, env=env, cwd=str(REPO)).stdout
    no_checkpoints = ["--no-checkpoints"] if "--no-checkpoints" in help_text else []
    results = work / "results"
    stats_path = work / "master_stats.json"
    try:
        start("nameserver", [*hpo, "nameserver", "--host", "127.0.0.1", "--port", str(port)])
        for i in range(workers):
            start(f"worker{i}", [*hpo, "worker", "--run-id", tag, "--nameserver", ns, "--host", "127.0.0.1",
                                 "--work-dir", str(work), "--connect-timeout", "60"])
        began = time.time()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        master = start("master", [sys.executable, __file__, "_master", str(stats_path), sampler, "master",
                                  str(space), "--run-id", tag, "--nameserver", ns, "--host", "127.0.0.1",
                                  "--results", str(results), "--min-workers", str(workers), "--no-progress",
                                  *no_checkpoints])
        rc = master.wait(timeout=timeout)
        elapsed = time.time() - began
        if rc != 0:
            raise SystemExit(f"{tag}: master exited {rc}; see {logs / 'master.log'}")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # every process of the run (nameserver, workers, master; start-up included), less the workers'
    # and nameserver's start-up done before the master started
    cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    (work / "run.json").write_text(json.dumps({"sampler": sampler, "seconds_per_epoch": seconds_per_epoch,
                                               "workers": workers, "master_process_wall_s": elapsed,
                                               "all_processes_cpu_s": cpu}))
    return summarise(work)


def summarise(work: Path) -> dict:
    """The figures of one run kept in ``work`` (``--keep``)."""
    summary = json.loads((work / "run.json").read_text())
    summary.update(analyse(work / "results" / "results.json", summary["workers"]))
    stats_path = work / "master_stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        if "master_cpu_s" in stats:
            summary["master_cpu_ms_per_result"] = 1e3 * stats.pop("master_cpu_s")[0] / summary["results"]
        if "all_processes_cpu_s" in summary:
            summary["all_cpu_ms_per_result"] = 1e3 * summary["all_processes_cpu_s"] / summary["results"]
            summary["cores_busy"] = summary["all_processes_cpu_s"] / summary["master_process_wall_s"]
        for name, values in stats.items():
            third = len(values) // 3
            summary[f"{name}_ms"] = {"calls": len(values), "median": 1e3 * _pct(values, 0.5),
                                     "p90": 1e3 * _pct(values, 0.9), "total_s": sum(values),
                                     # calls in order: the first and the last third of the run's calls
                                     "early_median": 1e3 * _pct(values[:third], 0.5),
                                     "late_median": 1e3 * _pct(values[-third:] if third else [], 0.5),
                                     "early_p90": 1e3 * _pct(values[:third], 0.9),
                                     "late_p90": 1e3 * _pct(values[-third:] if third else [], 0.9)}
    return summary


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def analyse(results_json: Path, workers: int) -> dict:
    jobs = []
    for line in results_json.read_text().splitlines():
        config_id, budget, stamps, result, exception = json.loads(line)
        info = (result or {}).get("info") or {}
        jobs.append({"iteration": config_id[0], "worker": info.get("worker"), "budget": budget,
                     "submitted": stamps["submitted"], "started": stamps["started"],
                     "finished": stamps["finished"], "wall_time": info.get("wall_time") or 0.0})
    jobs.sort(key=lambda j: j["finished"])
    n = len(jobs)
    # the drain: once the master has started its last iteration it has no new work to hand out when
    # that iteration waits for its stragglers; workers then idle for want of jobs, not for the master
    last = max(j["iteration"] for j in jobs)
    drain = min(j["submitted"] for j in jobs if j["iteration"] == last)
    gaps = []  # (arrival of the result, overhead until the same worker's next job)
    by_worker: dict = {}
    for job in jobs:
        by_worker.setdefault(job["worker"], []).append(job)
    for mine in by_worker.values():
        mine.sort(key=lambda j: j["started"])
        for prev, nxt in zip(mine, mine[1:]):
            gaps.append((prev["finished"], nxt["started"] - prev["finished"]))
    steady = sorted((t, g) for t, g in gaps if t < drain)
    third = len(steady) // 3
    early = [g for _, g in steady[:third]]
    late = [g for _, g in steady[-third:]] if third else []
    arrivals = [j["finished"] for j in jobs if j["finished"] < drain]
    between = [b - a for a, b in zip(arrivals, arrivals[1:])]
    start = min(j["started"] for j in jobs)
    wall = max(j["finished"] for j in jobs) - start
    steady_jobs = [j for j in jobs if j["finished"] < drain]
    ms = lambda seq, q: 1e3 * _pct(seq, q)  # noqa: E731
    return {
        "results": n,
        "results_before_drain": len(steady_jobs),
        "workers_seen": len(by_worker),
        "wall_s": wall,
        "utilisation": sum(j["wall_time"] for j in jobs) / (workers * wall),
        "utilisation_before_drain": sum(_overlap(j["finished"] - j["wall_time"], j["finished"], start, drain)
                                        for j in jobs) / (workers * (drain - start)),
        "mean_job_s": sum(j["wall_time"] for j in jobs) / n,
        "overhead_ms": {"median": ms([g for _, g in gaps], 0.5), "p90": ms([g for _, g in gaps], 0.9),
                        "steady_median": ms([g for _, g in steady], 0.5), "steady_p90": ms([g for _, g in steady], 0.9),
                        "early_median": ms(early, 0.5), "early_p90": ms(early, 0.9),
                        "late_median": ms(late, 0.5), "late_p90": ms(late, 0.9)},
        "between_results_ms": {"early_median": ms(between[:len(between) // 3], 0.5),
                               "late_median": ms(between[-(len(between) // 3):], 0.5)},
    }


def table(rows: list[dict]) -> str:
    nan = float("nan")
    head = ("| jobs | sampler | results | wall s | utilisation: all, before the drain | "
            "overhead/result median, p90 (ms): all | before the drain | first → last third median (ms) | "
            "get_config median (first → last third of calls) (ms) | job callback median (first → last third) (ms) | "
            "results.json line median (ms) | "
            "configs.json line median (ms) | KDE refit p90 (ms) | CPU per result (ms): master, all processes | "
            "cores busy | GC pauses: count, total s (full collections: count, total s) | "
            "CPU per call, first → last third (ms): get_config, job callback |")
    lines = [head, "|" + "---|" * (head.count(" | ") + 1)]
    for r in rows:
        o = r["overhead_ms"]
        cell = lambda name, q="median": f"{r[name][q]:.1f}" if name in r else "-"  # noqa: E731
        trend = lambda name: (f"{r[name]['median']:.1f} ({r[name]['early_median']:.1f} → "  # noqa: E731
                              f"{r[name]['late_median']:.1f})" if "early_median" in r.get(name, {}) else cell(name))
        spe = r["seconds_per_epoch"]
        lines.append(f"| {spe * 1e3:g}-{9 * spe * 1e3:g} ms | {r['sampler']} | {r['results']} | {r['wall_s']:.1f} | "
                     f"{100 * r['utilisation']:.1f} %, {100 * r['utilisation_before_drain']:.1f} % | "
                     f"{o['median']:.1f}, {o['p90']:.1f} | {o['steady_median']:.1f}, {o['steady_p90']:.1f} | "
                     f"{o['early_median']:.1f} → {o['late_median']:.1f} | {trend('get_config_ms')} | "
                     f"{trend('job_callback_ms')} | {cell('log_result_ms')} | {cell('log_config_ms')} | "
                     f"{cell('new_result_ms', 'p90')} | {r.get('master_cpu_ms_per_result', nan):.1f}, "
                     f"{r.get('all_cpu_ms_per_result', nan):.1f} | {r.get('cores_busy', nan):.2f} | "
                     + (f"{r['gc_ms']['calls']}, {r['gc_ms']['total_s']:.2f}" if "gc_ms" in r else "-")
                     + (f" ({r['gc_full_ms']['calls']}, {r['gc_full_ms']['total_s']:.2f}) |" if "gc_full_ms" in r else " |")
                     + "".join(f" {r[k]['early_median']:.2f} → {r[k]['late_median']:.2f}{sep}" if k in r else f" -{sep}"
                               for k, sep in (("get_config_cpu_ms", ","), ("job_callback_cpu_ms", " |"))))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", choices=(*SAMPLERS, "both"), default="both")
    parser.add_argument("--seconds-per-epoch", type=float, nargs="+", default=[0.01, 0.1],
                        help="synthetic job sleep per epoch; budgets are 1, 3, 9 epochs (default: 0.01 0.1)")
    parser.add_argument("--iterations", type=int, default=150, help="BOHB iterations (150: about 1,000 results)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900, help="seconds one run may take")
    parser.add_argument("--keep", metavar="DIR", help="keep the runs' directories here")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON too")
    parser.add_argument("--analyse", metavar="DIR", help="only summarise the runs kept in DIR (--keep)")
    args = parser.parse_args()
    if args.analyse:
        rows = [summarise(run.parent) for run in sorted(Path(args.analyse).glob("*/run.json"))]
        rows.sort(key=lambda r: (r["seconds_per_epoch"], r["sampler"]))
        for row in rows:
            print(json.dumps(row))
        print(f"\n{rows[0]['workers']} workers, {os.cpu_count()} CPU cores, loopback without TLS\n")
        print(table(rows))
        return 0
    samplers = SAMPLERS if args.sampler == "both" else (args.sampler,)
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_master_"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for spe in args.seconds_per_epoch:
            for sampler in samplers:
                row = run_once(sampler, spe, args.iterations, args.workers, root, args.timeout)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.workers} workers, {os.cpu_count()} CPU cores, loopback without TLS\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_master":
        sys.exit(master_main(sys.argv[2], sys.argv[3], sys.argv[4:]))
    sys.exit(main())
