"""Augmentation and normalisation of whole batches of ``uint8`` images, with per-sample randomness.

The same choices as :mod:`workers.transforms` (``none``, ``flip_jitter``, ``flip_rotate``,
``all``), applied to a (B, 3, H, W) ``uint8`` batch on whatever device it is on (the GPU when
training there) instead of image by image on the CPU:

* horizontal flip with probability 0.5, per sample;
* colour jitter: brightness, contrast and saturation factors drawn per sample from [0.6, 1.4],
  applied in that order with torchvision's formulas (torchvision's ``ColorJitter`` also shuffles
  the order per call; here it is fixed);
* rotation by an angle drawn per sample from [-30, 30] degrees about the centre, nearest
  neighbour, zero fill (``RandomRotation(30)``), as one batched ``affine_grid`` / ``grid_sample``;
* then ``uint8`` -> float and ImageNet normalisation (:func:`workers.transforms.normalize_batch`).

Random draws come from a CPU generator the caller seeds (e.g. by job seed and epoch), so a batch's
augmentation is the same on CPU and GPU. The ``none`` path is exactly the per-image evaluation
transform's output.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from workers.errors import JobSetupError
from workers.transforms import AUGMENTATIONS, IMAGENET_MEAN, IMAGENET_STD, normalize_batch

JITTER = 0.4
ROTATION_DEGREES = 30.0
_STEPS = {"none": (), "flip_jitter": ("flip", "jitter"), "flip_rotate": ("flip", "rotate"), "all": ("flip", "jitter", "rotate")}


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def _flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.size(0), generator=generator) < 0.5
    return torch.where(flip.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation with per-sample factors; ``images`` float in [0, 1]."""
    factors = torch.empty(3, images.size(0)).uniform_(1 - JITTER, 1 + JITTER, generator=generator)
    brightness, contrast, saturation = (_per_sample(f, images) for f in factors)
    images = (images * brightness).clamp_(0, 1)
    mean = TF.rgb_to_grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
    images = (contrast * images + (1 - contrast) * mean).clamp_(0, 1)
    gray = TF.rgb_to_grayscale(images)
    return (saturation * images + (1 - saturation) * gray).clamp_(0, 1)


def _rotate(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image by its own angle about the centre (nearest neighbour, zero fill)."""
    batch, _, height, width = images.shape
    angles = torch.empty(batch).uniform_(-ROTATION_DEGREES, ROTATION_DEGREES, generator=generator) * (math.pi / 180)
    cos, sin = torch.cos(angles), torch.sin(angles)
    aspect = height / width  # affine_grid works in normalised coordinates
    theta = torch.stack(
        [torch.stack([cos, -sin * aspect, torch.zeros(batch)], 1), torch.stack([sin / aspect, cos, torch.zeros(batch)], 1)], 1
    ).to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


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
        images = TF.to_dtype(images, torch.float32, scale=True)
        if "jitter" in self.steps:
            images = _jitter(images, generator)
        if "rotate" in self.steps:
            images = _rotate(images, generator)
        return TF.normalize(images, list(IMAGENET_MEAN), list(IMAGENET_STD))
