"""Write a synthetic results directory (run.json, configs.json, results.json) of any size.

The log has the shape of a real BOHB run of this service: Hyperband brackets with successive
halving, conditional hyperparameters (momentum only for sgd), per-epoch histories, a few
failed (diverged) and crashed jobs. Used by ``bench_report.py``; handy to try ``hpo-report``:

    python benchmarks/synthetic_log.py /tmp/synthetic --results 100000
    hpo-report /tmp/synthetic
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

HYPERPARAMETERS = [
    {"name": "regime", "type": "categorical", "log": False, "searched": True, "choices": ["finetune", "frozen"]},
    {"name": "optimizer", "type": "categorical", "log": False, "searched": True, "choices": ["sgd", "adamw"]},
    {"name": "lr", "type": "float", "log": True, "searched": True, "low": 1e-5, "high": 1e-1},
    {"name": "weight_decay", "type": "float", "log": True, "searched": True, "low": 1e-6, "high": 1e-1},
    {"name": "momentum", "type": "float", "log": False, "searched": True, "low": 0.0, "high": 0.99,
     "parent_conditions": {"optimizer": "sgd"}},
    {"name": "batch_size", "type": "int", "log": True, "searched": True, "low": 16, "high": 128},
    {"name": "model", "type": "constant", "log": False, "searched": False},
]


def sample_config(rng: random.Random) -> dict:
    config = {
        "model": "resnet50",
        "regime": rng.choice(["finetune", "frozen"]),
        "optimizer": rng.choice(["sgd", "adamw"]),
        "lr": 10 ** rng.uniform(-5, -1),
        "weight_decay": 10 ** rng.uniform(-6, -1),
        "batch_size": int(round(2 ** rng.uniform(4, 7))),
    }
    if config["optimizer"] == "sgd":
        config["momentum"] = rng.uniform(0.0, 0.99)
    return config


def final_loss(config: dict) -> float:
    best_lr = -2.0 if config["optimizer"] == "sgd" else -3.5
    loss = 0.2 + 0.15 * (math.log10(config["lr"]) - best_lr) ** 2 + 0.02 * abs(math.log10(config["weight_decay"]) + 4)
    return loss + (0.1 if config["regime"] == "frozen" else 0.0) + 0.1 * (1 - config.get("momentum", 0.9))


def evaluate(config: dict, budget: float, max_budget: float, rng: random.Random) -> tuple[dict | None, str | None]:
    """A job's ``result`` and ``exception``, as the master logs them."""
    draw = rng.random()
    if draw < 0.005:
        return None, "Traceback (most recent call last):\n  File \"worker.py\", line 1, in compute\nRuntimeError: CUDA error: an illegal memory access was encountered\n"
    epochs = int(round(budget))
    if draw < 0.035:
        return {"loss": None, "info": {"status": "failed", "reason": "diverged", "epochs": 1,
                                       "message": "loss became nan at epoch 1 (lr too high?)"}}, None
    target = final_loss(config)
    history = []
    for epoch in range(1, epochs + 1):
        val_loss = target + 1.5 / (1 + epoch) + rng.gauss(0, 0.02)
        train_loss = max(0.001, val_loss - 0.05 * epoch)
        history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "train_accuracy": round(math.exp(-train_loss), 5),
                        "val_loss": round(val_loss, 5), "val_accuracy": round(math.exp(-val_loss), 5),
                        "lr": config["lr"], "seconds": round(30.0 * epoch, 2)})
    last = history[-1]
    at_max = budget >= max_budget
    info = {"status": "ok", "epochs": epochs, "budget": budget, "loss_metric": "val_loss",
            "train_loss": last["train_loss"], "train_accuracy": last["train_accuracy"],
            "val_loss": last["val_loss"], "val_accuracy": last["val_accuracy"],
            "test_loss": last["val_loss"] + 0.01 if at_max else None,
            "test_accuracy": math.exp(-last["val_loss"] - 0.01) if at_max else None,
            "history": history, "wall_time": 30.0 * epochs, "device": "cuda:0"}
    return {"loss": last["val_loss"], "info": info}, None


def write_log(directory: Path, results: int, min_budget: float = 1, max_budget: float = 27, eta: int = 3,
              seed: int = 0, workers: int = 4) -> int:
    """Write about ``results`` results (whole brackets) to ``directory``; return the number written."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    s_max = int(math.floor(math.log(max_budget / min_budget, eta) + 1e-9))
    clock = 1_700_000_000.0
    worker_free = [clock] * workers
    written = 0
    iteration = 0
    with open(directory / "configs.json", "w") as configs_file, open(directory / "results.json", "w") as results_file:
        while written < results:
            s = s_max - iteration % (s_max + 1)
            n = int(math.ceil((s_max + 1) / (s + 1) * eta**s))
            ids = [[iteration, 0, i] for i in range(n)]
            configs = [sample_config(rng) for _ in range(n)]
            for cid, config in zip(ids, configs):
                configs_file.write(json.dumps([cid, config, {"model_based_pick": rng.random() < 0.7}]) + "\n")
            alive = list(range(n))
            for stage in range(s + 1):
                budget = max_budget * eta ** (stage - s)
                losses = {}
                for index in alive:
                    worker = min(range(workers), key=worker_free.__getitem__)
                    started = worker_free[worker]
                    result, exception = evaluate(configs[index], budget, max_budget, rng)
                    finished = started + 30.0 * budget + rng.uniform(1, 5)
                    worker_free[worker] = finished
                    stamps = {"submitted": started - 0.5, "started": started, "finished": finished}
                    results_file.write(json.dumps([ids[index], budget, stamps, result, exception]) + "\n")
                    written += 1
                    losses[index] = result["loss"] if result and result["loss"] is not None else math.inf
                keep = max(1, len(alive) // eta)
                alive = sorted(alive, key=losses.__getitem__)[:keep]
            iteration += 1
    metadata = {
        "run_id": directory.name, "space_file": "synthetic.yaml", "space": {"name": "synthetic"},
        "hyperparameters": HYPERPARAMETERS, "optimizer": "bohb", "min_budget": min_budget,
        "max_budget": max_budget, "eta": eta, "iterations": iteration, "seed": seed, "job": "image_classifier",
        "started_at": "2023-11-14T22:13:20+00:00", "versions": {"hpo": "0.1.0"},
    }
    (directory / "run.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--results", type=int, default=100_000, help="approximate number of results (default 100000)")
    parser.add_argument("--max-budget", type=float, default=27)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    count = write_log(args.directory, args.results, max_budget=args.max_budget, seed=args.seed)
    size = (args.directory / "results.json").stat().st_size / 2**20
    print(f"wrote {count} results ({size:.1f} MiB) to {args.directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
