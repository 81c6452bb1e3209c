"""Shared pieces for the image-classifier job tests: contexts, tiny configs, tiny image folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hpo.jobs import JobContext

#: A configuration that trains in about a second on CPU: ResNet-18 on 16-px digits.
TINY_CONFIG: dict[str, Any] = {
    "model": "resnet18",
    "weights": "none",
    "dataset": "digits",
    "image_size": 16,
    "max_train_images": 64,
    "max_eval_images": 40,
    "batch_size": 16,
    "optimizer": "sgd",
    "lr": 0.01,
}


def context(budget: float = 1, max_budget: float = 2, config_id: tuple = (0, 0, 0), **kwargs: Any) -> JobContext:
    """A CPU job context with the given budgets."""
    return JobContext(budget=budget, max_budget=max_budget, min_budget=1, config_id=config_id, device="cpu", **kwargs)


def tiny(**overrides: Any) -> dict:
    return {**TINY_CONFIG, **overrides}


def write_image_folder(root: Path, classes: int = 2, per_class: int = 6, size: int = 12, garbage: int = 0) -> Path:
    """Write real PNGs (a distinct colour per class) into ``root/<class>/``, plus ``garbage`` corrupt .png files."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels, mode="RGB").save(folder / f"img_{i}.png")
    for g in range(garbage):
        (root / "class_0" / f"broken_{g}.png").write_bytes(b"this is not a png file" * 10)
    return root
