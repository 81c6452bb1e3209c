"""On a GPU: training images/s from real data through the job's input pipeline vs synthetic inputs.

For ResNet50 and VGG16, fine-tune and frozen, with the job's CUDA settings (AMP, channels_last,
cudnn.benchmark, pinned memory): ``--steps`` training steps of ``train_one_epoch`` on

* synthetic: one random batch already on the GPU, repeated (the model's ceiling);
* real: digits at ``--size`` px through ``workers.input_pipeline.build_pipeline`` with augmentation
  ``--augmentation`` (decoded cache, batched augmentation on the GPU; in the frozen regime also
  with the feature cache, its one-off backbone pass excluded from the timing), default loader
  processes.

Target: real >= 90 % of synthetic. Needs CUDA: without it the script says so and exits 2.

Usage: python benchmarks/bench_gpu.py [--size 224] [--batch-size 64] [--steps 30] [--augmentation all]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shutil
import sys
import tempfile
import time

import torch

from workers.config import read_config
from workers.datasets import load_digits
from workers.devices import apply_global_settings, device_name, loader_workers, training_settings
from workers.input_pipeline import build_pipeline
from workers.models import build_model
from workers.optimization import build_optimizer
from workers.splits import make_splits
from workers.training import train_one_epoch
from workers.transforms import eval_transform, train_transform


class Steps:
    """The first ``steps`` batches of ``loader``, epochs chained (one iteration = one timed run)."""

    def __init__(self, loader, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __iter__(self):
        def forever():
            while True:
                yield from self.loader

        return itertools.islice(forever(), self.steps)


def _rate(classifier, loader, settings, steps: int, batch_size: int) -> float:
    model = classifier.model
    model.to(settings.device, memory_format=torch.channels_last)
    optimizer = build_optimizer("sgd", [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if settings.use_grad_scaler else None
    train_one_epoch(classifier, Steps(loader, 3), optimizer, settings, scaler)  # warm-up, cudnn autotuning
    torch.cuda.synchronize(settings.device)
    start = time.perf_counter()
    train_one_epoch(classifier, Steps(loader, steps), optimizer, settings, scaler)
    torch.cuda.synchronize(settings.device)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--augmentation", default="all")
    parser.add_argument("--models", default="resnet50,vgg16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA GPU and none is available here; nothing measured.", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    device = torch.device("cuda")
    settings = training_settings(device)
    apply_global_settings(settings)
    cache_dir = tempfile.mkdtemp(prefix="hpo-bench-gpu-")
    try:
        print(f"device: {device_name(device)}, AMP {settings.amp_dtype}, batch {args.batch_size}, {args.size} px, "
              f"augmentation {args.augmentation}, loader workers {loader_workers({}, device)}, {args.steps} timed steps\n")
        print("| model | regime | input | synthetic images/s | real images/s | real / synthetic |")
        print("|---|---|---|---|---|---|")
        data = load_digits()
        splits = make_splits(data, train_transform(args.size, args.augmentation), eval_transform(args.size))
        synthetic = [(torch.randn(args.batch_size, 3, args.size, args.size, device=device),
                      torch.randint(0, data.num_classes, (args.batch_size,), device=device))]
        for model in args.models.split(","):
            for regime, feature_cache in (("finetune", "off"), ("frozen", "off"), ("frozen", "auto")):
                torch.manual_seed(0)
                classifier = build_model(model, data.num_classes, "none", regime)
                synthetic_rate = _rate(classifier, synthetic, settings, args.steps, args.batch_size)
                cfg = read_config({"model": model, "regime": regime, "image_size": args.size, "batch_size": args.batch_size,
                                   "augmentation": args.augmentation, "feature_cache": feature_cache})
                pipeline = build_pipeline(cfg, splits, classifier, settings, seed=0, options={"cache_dir": cache_dir})
                real_rate = _rate(pipeline.classifier, pipeline.loaders["train"], settings, args.steps, args.batch_size)
                print(f"| {model} | {regime} | {pipeline.path} | {synthetic_rate:.0f} | {real_rate:.0f} | "
                      f"{real_rate / synthetic_rate:.0%} |", flush=True)
                del classifier, pipeline
                torch.cuda.empty_cache()
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
