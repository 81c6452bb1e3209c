"""Augmentation and normalisation of whole batches of ``uint8`` images, with per-sample randomness.

The same choices as :mod:`workers.transforms` (``none``, ``flip_jitter``, ``flip_rotate``,
``all``), applied to a (B, 3, H, W) ``uint8`` batch on whatever device it is on (the GPU when
training there) instead of image by image on the CPU:

* horizontal flip with probability 0.5, per sample;
* rotation by an angle drawn per sample from [-30, 30] degrees about the centre, nearest
  neighbour, zero fill (``RandomRotation(30)``), as one gather of ``uint8`` pixels;
* colour jitter: brightness, contrast and saturation factors drawn per sample from [0.6, 1.4],
  applied in that order with torchvision's formulas on float values;
* then ImageNet normalisation (as :func:`workers.transforms.normalize_batch`).

Differences from the per-image ``ColorJitter`` + ``RandomRotation``, for speed (each pass over a
batch costs about as much as the whole of a cheap step): the jitter's order is fixed (torchvision
shuffles it per image), it runs on float values without rounding to ``uint8`` between steps, and
it runs after the rotation, so the zero-filled corners are jittered too and count in the contrast
reference (the mean grey level).

Random draws come from a CPU generator the caller seeds (e.g. by job seed and epoch), so a batch's
augmentation draws are the same on CPU and GPU; they reach the GPU by non-blocking copies, and
nothing here waits for the GPU. The ``none`` path is exactly the per-image evaluation
transform's output.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torchvision.transforms.v2 import functional as TF

from workers.errors import JobSetupError
from workers.transforms import AUGMENTATIONS, normalize_batch, normalize_float

JITTER = 0.4
ROTATION_DEGREES = 30.0
_STEPS = {"none": (), "flip_jitter": ("flip", "jitter"), "flip_rotate": ("flip", "rotate"), "all": ("flip", "jitter", "rotate")}


GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def _uniform(shape: tuple, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Draws on the CPU generator, copied to ``device`` without blocking (no synchronisation per batch)."""
    values = torch.empty(shape).uniform_(low, high, generator=generator)
    if device.type == "cuda":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the samples (each with probability 0.5)."""
    flip = _uniform((images.size(0),), 0.0, 1.0, generator, images.device) < 0.5
    if images.device.type == "cuda":  # boolean indexing would wait for the GPU
        return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    images = images.clone()
    images[flip] = images[flip].flip(-1)
    return images


def _rotate(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image by its own angle about the centre: nearest neighbour, zero fill, as one gather."""
    batch, channels, height, width = images.shape
    angles = _uniform((batch,), -ROTATION_DEGREES, ROTATION_DEGREES, generator, images.device) * (math.pi / 180)
    cos, sin = torch.cos(angles).view(-1, 1, 1), torch.sin(angles).view(-1, 1, 1)
    ys = (torch.arange(height, device=images.device, dtype=torch.float32) - (height - 1) / 2).view(1, -1, 1)
    xs = (torch.arange(width, device=images.device, dtype=torch.float32) - (width - 1) / 2).view(1, 1, -1)
    source_x = (cos * xs + (sin * ys + (width - 1) / 2)).round_()  # inverse rotation of each output pixel
    source_y = (cos * ys + ((height - 1) / 2 - sin * xs)).round_()
    inside = (source_x >= 0) & (source_x <= width - 1) & (source_y >= 0) & (source_y <= height - 1)
    index = source_y.clamp_(0, height - 1).mul_(width).add_(source_x.clamp_(0, width - 1)).long()
    index = torch.where(inside, index, height * width)  # one past the end: the zero pixel appended below
    padded = torch.cat([images.flatten(2), images.new_zeros(batch, channels, 1)], dim=2)
    return padded.gather(2, index.view(batch, 1, -1).expand(-1, channels, -1)).view(batch, channels, height, width)


def _jitter_and_normalize(images: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``uint8`` -> brightness, contrast, saturation with per-sample factors (torchvision's formulas,
    clamped to [0, 1] after each) when ``generator`` is given, then ImageNet normalisation."""
    if generator is None:
        images = TF.to_dtype(images, torch.float32, scale=True)
    else:
        factors = _uniform((3, images.size(0)), 1 - JITTER, 1 + JITTER, generator, images.device)
        brightness, contrast, saturation = (_per_sample(f) for f in factors)
        images = (images * (brightness / 255)).clamp_(0, 1)  # uint8 -> float and brightness in one pass
        means = images.mean(dim=(-2, -1))  # (B, 3): the mean grey level as a weighted sum
        mean = (means[:, 0] * GRAY_WEIGHTS[0] + means[:, 1] * GRAY_WEIGHTS[1] + means[:, 2] * GRAY_WEIGHTS[2]).view(-1, 1, 1, 1)
        images = torch.lerp(mean, images, contrast).clamp_(0, 1)
        images = torch.lerp(TF.rgb_to_grayscale(images), images, saturation).clamp_(0, 1)
    return normalize_float(images)


class BatchAugment:
    """``uint8`` (B, 3, H, W) -> augmented, normalised float32 batch (per-sample randomness)."""

    def __init__(self, augmentation: str = "none") -> None:
        if augmentation not in AUGMENTATIONS:
            raise JobSetupError(f"augmentation {augmentation!r}: must be one of {', '.join(AUGMENTATIONS)}")
        self.augmentation = augmentation
        self.steps = _STEPS[augmentation]

    @property
    def random(self) -> bool:
        return bool(self.steps)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if not self.steps:
            return normalize_batch(images)
        generator = generator if generator is not None else torch.Generator().manual_seed(torch.seed() % 2**63)
        if "flip" in self.steps:
            images = _flip(images, generator)
        if "rotate" in self.steps:
            images = _rotate(images, generator)
        return _jitter_and_normalize(images, generator if "jitter" in self.steps else None)
