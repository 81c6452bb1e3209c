"""Frozen regime on digits with and without the feature cache: seconds per epoch and per job.

For each model (ResNet50, VGG16) and image size, three jobs run through the job itself
(``workers.image_classifier.run``, as ``hpo train`` does), frozen regime, 600 training images,
``--epochs`` epochs, weights from a state-dict file (ImageNet weights cannot be downloaded here;
the cache is keyed by the weights' values, so the cost is the same):

* ``off``: ``feature_cache: off`` (the backbone runs every epoch; decoded image cache on);
* ``cold``: ``feature_cache: auto``, the first job of a run: it computes the features;
* ``warm``: another configuration of the same run: it maps the features the first one made.

Per epoch: the mean of epochs 2..E (training + validation; epoch 1 of ``cold`` carries the
backbone pass). Per job: the job's wall time. The decoded images are cached before timing.

Usage: python benchmarks/bench_frozen_cache.py [--epochs 3] [--sizes 64,128] [--models resnet50,vgg16] [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import torch
import torchvision

from hpo.jobs import JobContext, is_failure
from workers.image_classifier import run


def _job(model: str, weights: str, size: int, epochs: int, feature_cache: str, cache_dir: str, config_id: tuple) -> dict:
    config = {"model": model, "weights": weights, "regime": "frozen", "dataset": "digits", "image_size": size,
              "max_train_images": 600, "batch_size": 32, "lr": 0.01, "feature_cache": feature_cache}
    context = JobContext(budget=epochs, max_budget=epochs * 3, min_budget=1, config_id=config_id, device="cpu",
                         options={"cache_dir": cache_dir})
    result = run(config, context)
    if is_failure(result):
        raise SystemExit(f"{model} {size}px {feature_cache}: {result['info']['message']}")
    return result["info"]


def _per_epoch(info: dict) -> float:
    seconds = [entry["seconds"] for entry in info["history"]]
    steps = [b - a for a, b in zip(seconds, seconds[1:])]
    return sum(steps) / len(steps) if steps else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--models", default="resnet50,vgg16")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary directory")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="hpo-bench-frozen-"))
    cache_dir = args.cache_dir or str(work / "cache")
    try:
        print(f"CPU, torch threads {torch.get_num_threads()}, {args.epochs} epochs, 600 training images, batch 32\n")
        print("| model | size | epoch, no cache (s) | epoch, cached (s) | per epoch | job, no cache (s) | job, cold cache (s) | job, warm cache (s) |")
        print("|---|---|---|---|---|---|---|---|")
        for model in args.models.split(","):
            torch.manual_seed(0)
            weights = str(work / f"{model}.pth")
            torch.save(torchvision.models.get_model(model).state_dict(), weights)
            for size in (int(s) for s in args.sizes.split(",")):
                off = _job(model, weights, size, args.epochs, "off", cache_dir, (0, 0, 1))  # also builds the decoded cache
                cold = _job(model, weights, size, args.epochs, "auto", cache_dir, (0, 0, 2))
                warm = _job(model, weights, size, args.epochs, "auto", cache_dir, (0, 0, 3))
                epoch_off, epoch_on = _per_epoch(off), _per_epoch(warm)
                print(f"| {model} | {size} | {epoch_off:.2f} | {epoch_on:.3f} | {epoch_off / epoch_on:.0f}x | "
                      f"{off['wall_time']:.1f} | {cold['wall_time']:.1f} | {warm['wall_time']:.1f} |", flush=True)

    finally:
        shutil.rmtree(work, ignore_errors=True)  # state dicts and, without --cache-dir, the caches

if __name__ == "__main__":
    main()
