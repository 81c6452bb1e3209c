"""Continuation from checkpoints against training every budget from scratch: epochs and wall time.

Runs the same BOHB search twice through ``hpo run`` (real processes): with checkpoints (the
default) and with ``--no-checkpoints``. Same space, seed and budgets, one worker, so both runs
sample the same configurations in the same order (identical brackets: the benchmark checks that
the configurations and losses are the same). Reports jobs, epochs trained (``info.epochs_trained``,
or ``info.epochs`` from scratch) and the run's wall time.

* ``synthetic`` (default): the synthetic job with ``seconds_per_epoch`` (a stand-in for a training
  epoch), budgets 1, 3, 9, 27, eta 3, 4 iterations: every bracket of the ladder once, where
  continuation needs 342 of 405 epochs (0.844);
* ``classifier``: the image classifier (ResNet-18 on 64 digits at 16 px, CPU), budgets 1, 3, 9,
  eta 3, ``--iterations`` iterations (real training, checkpoint writes included).

Usage: python benchmarks/bench_continuation.py [--job synthetic|classifier] [--seconds-per-epoch 0.05]
       [--iterations 4] [--workers 1]
Prints a Markdown table (the figures in BENCHMARKS.md come from it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SYNTHETIC_SPACE = """\
name: bench_continuation
job: synthetic
seed: 3
budget: {{min: 1, max: 27, eta: 3, iterations: 4}}
hyperparameters:
  seconds_per_epoch: {seconds}
  optimizer: {{type: categorical, choices: [sgd, adamw], default: sgd}}
  lr: {{type: float, low: 1.0e-5, high: 1.0e-1, log: true, default: 1.0e-3}}
  weight_decay: {{type: float, low: 1.0e-6, high: 1.0e-1, log: true}}
  batch_size: {{type: int, low: 16, high: 128, log: true, default: 32}}
"""

CLASSIFIER_SPACE = """\
name: bench_continuation_classifier
job: image_classifier
seed: 3
budget: {min: 1, max: 9, eta: 3, iterations: 1}
hyperparameters:
  model: resnet18
  weights: none
  dataset: digits
  image_size: 16
  max_train_images: 64
  max_eval_images: 40
  batch_size: 16
  optimizer: sgd
  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true, default: 1.0e-2}
  momentum: {type: float, low: 0.0, high: 0.95, default: 0.9}
"""


def run_search(space: Path, results: Path, iterations: int, workers: int, continuation: bool) -> dict:
    """One ``hpo run``; its wall time and what its log says."""
    command = [sys.executable, "-m", "hpo", "run", str(space), "--results", str(results), "--run-id", results.name,
               "--workers", str(workers), "--iterations", str(iterations), "--no-progress", "--insecure"]
    if not continuation:
        command.append("--no-checkpoints")
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=str(ROOT), stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"hpo run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [json.loads(line) for line in (results / "results.json").read_text().splitlines() if line.strip()]
    configs = [json.loads(line)[:2] for line in (results / "configs.json").read_text().splitlines() if line.strip()]
    epochs = sum(r[3]["info"].get("epochs_trained", r[3]["info"]["epochs"]) for r in lines)
    losses = sorted((tuple(r[0]), r[1], r[3]["loss"]) for r in lines)
    meta = json.loads((results / "run.json").read_text())
    return {"wall": wall, "jobs": len(lines), "epochs": epochs, "losses": losses, "configs": configs,
            "best_model": (meta.get("best_model") or {}).get("path")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=["synthetic", "classifier"], default="synthetic")
    parser.add_argument("--seconds-per-epoch", type=float, default=0.05)
    parser.add_argument("--iterations", type=int, default=None, help="default: 4 (synthetic), 1 (classifier)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    iterations = args.iterations or (4 if args.job == "synthetic" else 1)
    with tempfile.TemporaryDirectory(prefix="bench-continuation-") as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(SYNTHETIC_SPACE.format(seconds=args.seconds_per_epoch) if args.job == "synthetic"
                         else CLASSIFIER_SPACE)
        scratch = run_search(space, Path(tmp) / "scratch", iterations, args.workers, continuation=False)
        continued = run_search(space, Path(tmp) / "continued", iterations, args.workers, continuation=True)
    same = scratch["configs"] == continued["configs"] and scratch["losses"] == continued["losses"]
    what = (f"synthetic job, {args.seconds_per_epoch:g} s/epoch" if args.job == "synthetic"
            else "image classifier, ResNet-18 on digits at 16 px, CPU")
    print(f"{what}; {iterations} iteration(s); {args.workers} worker(s); "
          f"same configurations and losses in both runs: {'yes' if same else 'NO'}\n")
    print("| run | jobs | epochs trained | wall time [s] |")
    print("|---|---|---|---|")
    for name, run in (("from scratch (`--no-checkpoints`)", scratch), ("continued from checkpoints", continued)):
        print(f"| {name} | {run['jobs']} | {run['epochs']} | {run['wall']:.1f} |")
    print(f"| ratio | | {continued['epochs'] / scratch['epochs']:.3f} | {continued['wall'] / scratch['wall']:.3f} |")


if __name__ == "__main__":
    main()
