"""Training throughput of the image-classifier job's pieces, in images per second.

* model: one training step (forward, backward, optimizer step) of VGG16 and ResNet50, fine-tune
  and frozen, at 32 and 224 pixels, on random inputs, through the job's own training loop;
* data: the data pipeline alone, a DataLoader over digits with the training transform at 224 px.

Usage: python benchmarks/bench_training.py [--steps 3] [--batch-size 16] [--device cpu] [--only model|data]
Prints a Markdown table (the figures in BENCHMARKS.md come from it).
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch.utils.data import DataLoader

from workers.datasets import load_digits
from workers.devices import apply_global_settings, device_name, resolve_device, training_settings
from workers.models import build_model
from workers.optimization import build_optimizer
from workers.splits import make_splits
from workers.training import train_one_epoch
from workers.transforms import eval_transform, train_transform

NUM_CLASSES = 101  # as for Caltech 101


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_throughput(model_name: str, regime: str, image_size: int, batch_size: int, steps: int, device: torch.device) -> float:
    """Training images per second (after one warm-up step)."""
    settings = training_settings(device)
    apply_global_settings(settings)
    classifier = build_model(model_name, NUM_CLASSES, "none", regime)
    classifier.model.to(device)
    if settings.channels_last:
        classifier.model.to(memory_format=torch.channels_last)
    trainable = [p for p in classifier.model.parameters() if p.requires_grad]
    optimizer = build_optimizer("sgd", trainable, lr=1e-3)
    batch = (torch.randn(batch_size, 3, image_size, image_size), torch.randint(0, NUM_CLASSES, (batch_size,)))
    scaler = torch.amp.GradScaler("cuda") if settings.use_grad_scaler else None
    train_one_epoch(classifier, [batch], optimizer, settings, scaler)  # warm-up
    _sync(device)
    start = time.perf_counter()
    train_one_epoch(classifier, [batch] * steps, optimizer, settings, scaler)
    _sync(device)
    return batch_size * steps / (time.perf_counter() - start)


def data_throughput(augmentation: str, image_size: int, batch_size: int, batches: int, workers: int) -> float:
    """Images per second out of a DataLoader over digits with the training transform."""
    splits = make_splits(load_digits(), train_transform(image_size, augmentation), eval_transform(image_size))
    loader = DataLoader(splits.train, batch_size=batch_size, shuffle=True, num_workers=workers)
    iterator = iter(loader)
    next(iterator)  # start-up (worker processes) is not throughput
    start = time.perf_counter()
    seen = 0
    for _ in range(batches):
        images, _ = next(iterator)
        seen += images.size(0)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per case (default 3)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20, help="timed DataLoader batches per case (default 20)")
    parser.add_argument("--device", default=None, help="default: CUDA when available, else CPU")
    parser.add_argument("--sizes", default="32,224", help="image sizes for the model cases")
    parser.add_argument("--only", choices=["model", "data"], default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"device: {device_name(device)}, torch threads: {torch.get_num_threads()}, batch size {args.batch_size}\n")
    if args.only in (None, "model"):
        print(f"| model | regime | image size | train images/s ({args.steps} steps) |")
        print("|---|---|---|---|")
        for size in (int(s) for s in args.sizes.split(",")):
            for model_name in ("resnet50", "vgg16"):
                for regime in ("finetune", "frozen"):
                    rate = model_throughput(model_name, regime, size, args.batch_size, args.steps, device)
                    print(f"| {model_name} | {regime} | {size} | {rate:.1f} |", flush=True)
        print()
    if args.only in (None, "data"):
        print(f"| data pipeline (digits, train transform, 224 px) | loader workers | images/s ({args.batches} batches) |")
        print("|---|---|---|")
        for augmentation in ("none", "all"):
            for workers in (0, 2):
                rate = data_throughput(augmentation, 224, args.batch_size, args.batches, workers)
                print(f"| augmentation {augmentation} | {workers} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
