"""The input pipeline alone: per-image PIL path vs decoded cache + batched augmentation, images/s.

Both feed the training split of digits (1,150 images) at ``--size`` px (default 224) in batches of
``--batch-size``, for augmentation ``none`` and ``all``, in the same process and run:

* PIL: today's ``DataLoader`` over the per-image transform (decode, RGB, resize, crop, augment,
  normalise per image), ``--workers`` loader processes (default 0, the CPU default);
* decoded: the split decoded once into a ``uint8`` memory map (its one-off build time is printed
  separately), batches read by index and augmented + normalised as whole batches by
  ``BatchAugment`` on ``--device`` (default CPU).

Usage: python benchmarks/bench_input_pipeline.py [--size 224] [--batches 20] [--device cpu] [--threads 1]
Prints a Markdown table (the figures in BENCHMARKS.md come from it).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from workers.batch_augment import BatchAugment
from workers.batch_loader import BatchLoader
from workers.datasets import load_digits
from workers.decoded_cache import decoded_split
from workers.devices import resolve_device, training_settings
from workers.input_pipeline import ImageLoader
from workers.splits import make_splits
from workers.transforms import eval_transform, train_transform


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(loader, batches: int, device: torch.device) -> float:
    """Images/s over ``batches`` batches after one warm-up batch (epochs restart as needed)."""
    def stream():
        while True:
            yield from loader

    iterator = stream()
    next(iterator)
    _sync(device)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        seen += images.size(0)
    _sync(device)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per case (default 20)")
    parser.add_argument("--workers", type=int, default=0, help="PIL path loader processes (default 0)")
    parser.add_argument("--device", default="cpu", help="where batched augmentation runs (default cpu)")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary directory")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both paths (default 1: per-core figures, and no oversubscription "
                             "when the host is busy)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="hpo-bench-cache-")
    data = load_digits()
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, size {args.size} px, batch {args.batch_size}, "
          f"PIL loader workers {args.workers}\n")
    splits = make_splits(data, train_transform(args.size), eval_transform(args.size))
    train = splits.train
    start = time.perf_counter()
    decoded = decoded_split(train.images, train.indices, train.targets, args.size, cache_dir)
    built = time.perf_counter() - start
    start = time.perf_counter()
    decoded_split(train.images, train.indices, train.targets, args.size, cache_dir)
    mapped = time.perf_counter() - start
    print(f"decoded cache of {len(train)} images: built in {built:.2f} s ({len(train) / built:.0f} images/s), "
          f"mapped again in {mapped * 1000:.1f} ms, {decoded.pixels.nbytes / 2**20:.0f} MiB\n")
    print(f"| augmentation | PIL path images/s | decoded + batched images/s | speed-up |")
    print("|---|---|---|---|")
    for augmentation in ("none", "all"):
        pil_splits = make_splits(data, train_transform(args.size, augmentation), eval_transform(args.size))
        pil = ImageLoader(pil_splits.train, args.batch_size, True, training_settings(torch.device("cpu")), args.workers, seed=0)
        batched = BatchLoader(decoded, args.batch_size, True, device, seed=0, transform=BatchAugment(augmentation))
        pil_rate = images_per_second(pil, args.batches, torch.device("cpu"))
        batched_rate = images_per_second(batched, args.batches, device)
        print(f"| {augmentation} | {pil_rate:.0f} | {batched_rate:.0f} | {batched_rate / pil_rate:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
