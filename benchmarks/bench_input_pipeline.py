"""The input pipeline alone: per-image PIL path vs decoded cache + batched augmentation, images/s.

Both feed the training split of digits (1,150 images) at ``--size`` px (default 224) in batches of
``--batch-size``, for augmentation ``none`` and ``all``, in the same process and run:

* PIL: today's ``DataLoader`` over the per-image transform (decode, RGB, resize, crop, augment,
  normalise per image), ``--workers`` loader processes (default 0, the CPU default);
* decoded: the split decoded once into a ``uint8`` memory map (its one-off build time is printed
  separately), batches read by index and augmented + normalised as whole batches by
  ``BatchAugment`` on ``--device`` (default CPU).

Each path first runs one whole epoch untimed (the steady state: the memory map's pages are
mapped, as they are from a job's second epoch on). The two paths are then timed in alternation, ``--rounds`` times (default 3), so that a change in the
host's load hits both; the table gives the median rate of each path and the median and range of the
per-round speed-ups. A second table gives the time per batch of each step of the batched path on
one batch (median wall and thread CPU time: the CPU time is what a busy host distorts least).

Usage: python benchmarks/bench_input_pipeline.py [--size 224] [--batches 20] [--rounds 3] [--device cpu] [--threads 1]
Prints Markdown tables (the figures in BENCHMARKS.md come from them).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
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


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def images_per_second(loader, batches: int, device: torch.device) -> tuple[float, float, float]:
    """Images per wall second and per CPU second of this thread, and minor page faults per batch, over
    ``batches`` batches after one warm-up batch (epochs restart as needed). The CPU rate counts only
    this thread's work: the whole of it with 0 loader processes, on a host whose other load only
    shows in the wall rate. Page faults are the process's: fresh memory the allocator got from the system."""
    def stream():
        while True:
            yield from loader

    iterator = stream()
    next(iterator)
    _sync(device)
    start, cpu, faults, seen = time.perf_counter(), time.thread_time(), _minor_faults(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        seen += images.size(0)
    _sync(device)
    return (seen / (time.perf_counter() - start), seen / (time.thread_time() - cpu),
            (_minor_faults() - faults) / batches)


def step_times(decoded, batch_size: int, device: torch.device, repeats: int = 15) -> list:
    """(step, wall ms, CPU ms) per batch: reading a batch from the memory map, then each augmentation."""
    indices = torch.randperm(len(decoded), generator=torch.Generator().manual_seed(0))[:batch_size].tolist()
    batch = decoded[indices][0].to(device)
    cases = [("read a batch (memory map, by index)", lambda: decoded[indices])]
    for augmentation in ("none", "flip_jitter", "flip_rotate", "all"):
        augment = BatchAugment(augmentation)
        cases.append((f"BatchAugment({augmentation!r})", lambda augment=augment: augment(batch, torch.Generator().manual_seed(1))))
    rows = []
    for name, run in cases:
        run()
        walls, cpus = [], []
        for _ in range(repeats):
            _sync(device)
            wall, cpu = time.perf_counter(), time.thread_time()
            run()
            _sync(device)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.thread_time() - cpu)
        rows.append((name, statistics.median(walls) * 1000, statistics.median(cpus) * 1000))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per case and round (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both paths (default 3)")
    parser.add_argument("--workers", type=int, default=0, help="PIL path loader processes (default 0)")
    parser.add_argument("--device", default="cpu", help="where batched augmentation runs (default cpu)")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary directory")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both paths (default 1: per-core figures, and no oversubscription "
                             "when the host is busy)")
    parser.add_argument("--torch-empty", action="store_true",
                        help="baseline: BatchAugment's CPU output from torch.empty, as before it came through numpy")
    args = parser.parse_args()
    if args.torch_empty:
        from workers import batch_augment

        batch_augment._empty_float = lambda shape, device: torch.empty(shape, dtype=torch.float32, device=device)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    scratch = None if args.cache_dir else tempfile.mkdtemp(prefix="hpo-bench-cache-")
    cache_dir = args.cache_dir or scratch
    try:
        data = load_digits()
        print(f"device: {device}, torch threads: {torch.get_num_threads()}, size {args.size} px, batch {args.batch_size}, "
              f"PIL loader workers {args.workers}, {args.rounds} rounds of {args.batches} batches\n")
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
        cpu_note = "" if args.workers == 0 and device.type == "cpu" else " (this thread only: not the loader processes' or the GPU's work)"
        print(f"Images/s, median of the rounds; CPU: per CPU second of the benchmark's thread{cpu_note}.\n")
        print("| augmentation | PIL path images/s | decoded + batched images/s | speed-up (median, range) "
              "| PIL path images/CPU s | decoded + batched images/CPU s | CPU speed-up (median, range) "
              "| page faults a batch (mean), PIL / batched |")
        print("|---|---|---|---|---|---|---|---|")
        for augmentation in ("none", "all"):
            pil_splits = make_splits(data, train_transform(args.size, augmentation), eval_transform(args.size))
            pil = ImageLoader(pil_splits.train, args.batch_size, True, training_settings(torch.device("cpu")), args.workers, seed=0)
            batched = BatchLoader(decoded, args.batch_size, True, device, seed=0, transform=BatchAugment(augmentation))
            for loader in (pil, batched):  # one epoch each first: the memory map's pages, the allocator's pools
                for _ in loader:
                    pass
            pil_rates, batched_rates = [], []
            for _ in range(args.rounds):
                pil_rates.append(images_per_second(pil, args.batches, torch.device("cpu")))
                batched_rates.append(images_per_second(batched, args.batches, device))
            cells = []
            for kind in (0, 1):  # wall, CPU
                pil_kind, batched_kind = [r[kind] for r in pil_rates], [r[kind] for r in batched_rates]
                ratios = [b / p for p, b in zip(pil_kind, batched_kind)]
                cells += [f"{statistics.median(pil_kind):.0f}", f"{statistics.median(batched_kind):.0f}",
                          f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f}x)"]
            cells.append(f"{statistics.mean(r[2] for r in pil_rates):.0f} / {statistics.mean(r[2] for r in batched_rates):.0f}")
            print(f"| {augmentation} | " + " | ".join(cells) + " |", flush=True)
        print(f"\nPer batch of {args.batch_size} (median of 15, one batch):\n")
        print("| step | wall ms | CPU ms |")
        print("|---|---|---|")
        for name, wall, cpu in step_times(decoded, args.batch_size, device):
            print(f"| {name} | {wall:.1f} | {cpu:.1f} |")

    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

if __name__ == "__main__":
    main()
