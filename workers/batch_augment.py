"""Augmentation and normalisation of whole batches of ``uint8`` images, with per-sample randomness.

The same choices as :mod:`workers.transforms` (``none``, ``flip_jitter``, ``flip_rotate``,
``all``), applied to a (B, 3, H, W) ``uint8`` batch on whatever device it is on (the GPU when
training there) instead of image by image on the CPU:

* horizontal flip with probability 0.5, per sample;
* rotation by an angle drawn per sample from [-30, 30] degrees about the centre, nearest
  neighbour, zero fill (``RandomRotation(30)``); flip and rotation are one gather of ``uint8``
  pixels from a zero-bordered copy of the batch (a flip alone is a mirrored copy);
* colour jitter: brightness, contrast and saturation factors drawn per sample from [0.6, 1.4],
  applied in that order with torchvision's formulas on float values (``ColorJitter``'s
  ``_blend``: ``clamp(ratio * image + (1 - ratio) * other, 0, 1)``, ``other`` being black, the
  mean grey level, the grey image);
* then ImageNet normalisation (as :func:`workers.transforms.normalize_batch`).

Differences from the per-image ``ColorJitter`` + ``RandomRotation``, for speed (each pass over a
batch costs about as much as the whole of a cheap step): the jitter's order is fixed (torchvision
shuffles it per image), it runs on float values without rounding to ``uint8`` between steps, and
it runs after the rotation, so the zero-filled corners are jittered too and count in the contrast
reference (the mean grey level).

On the CPU the float work runs a few samples at a time (``CPU_CHUNK``), so that each chunk's
intermediate values stay in the processor's cache between the in-place passes; on a GPU it runs
on the whole batch. Chunking changes no value.

Random draws come from a CPU generator the caller seeds (e.g. by job seed and epoch): one (5, B)
uniform draw per batch (flip, angle, the three jitter factors), whatever the augmentation, so a
batch's draws are the same on CPU and GPU; they reach the GPU by one non-blocking copy, and
nothing here waits for the GPU. The ``none`` path is exactly the per-image evaluation
transform's output, bit for bit.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from workers.errors import JobSetupError
from workers.transforms import AUGMENTATIONS, normalize_float_

JITTER = 0.4
ROTATION_DEGREES = 30.0
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
CPU_CHUNK = 4  # samples per pass on the CPU: 4 x 3 x 224 x 224 float32 (2.4 MB) stays in the cache
_STEPS = {"none": (), "flip_jitter": ("flip", "jitter"), "flip_rotate": ("flip", "rotate"), "all": ("flip", "jitter", "rotate")}


def _draws(batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(5, B) per-sample draws: flip sign (+1 or -1), angle (radians), brightness, contrast, saturation."""
    uniform = torch.rand((5, batch), generator=generator)
    draws = torch.empty_like(uniform)
    draws[0] = torch.where(uniform[0] < 0.5, -1.0, 1.0)
    draws[1] = (uniform[1] * 2 - 1) * (ROTATION_DEGREES * math.pi / 180)
    draws[2:] = uniform[2:] * (2 * JITTER) + (1 - JITTER)
    if device.type == "cuda":
        return draws.pin_memory().to(device, non_blocking=True)
    return draws.to(device)


def _chunks(batch: int, device: torch.device) -> list:
    step = CPU_CHUNK if device.type == "cpu" else batch
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)]


def _flip(images: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Mirror the samples whose sign is -1: each picked from (sample, mirrored sample) by index, on
    the device (``torch.where`` on ``uint8`` is several times slower on the CPU; a mask would wait for the GPU)."""
    batch = images.size(0)
    pairs = torch.stack((images, images.flip(-1)), dim=1).flatten(0, 1)
    picks = torch.arange(0, 2 * batch, 2, device=images.device) + (signs < 0).long()
    return pairs.index_select(0, picks)


def rotation_border(height: int, width: int) -> int:
    """Zero pixels around an image such that every source pixel of any rotation about the centre lies
    inside the padded image (no clamping of coordinates: a source outside the image reads zero)."""
    reach = math.hypot((height - 1) / 2, (width - 1) / 2)  # the farthest corner from the centre
    return math.ceil(reach - (min(height, width) - 1) / 2) + 1


def _source_index(signs: torch.Tensor, angles: torch.Tensor, height: int, width: int, border: int) -> torch.Tensor:
    """(B, 1, H*W) ``int64``: for each output pixel, its nearest source pixel in the image padded by
    ``border`` zero pixels on every side (rotation about the centre, after a mirror where the sign is -1)."""
    device = angles.device
    cos, sin = torch.cos(angles).view(-1, 1, 1), torch.sin(angles).view(-1, 1, 1)
    ys = (torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2).view(1, -1, 1)
    xs = (torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2).view(1, 1, -1)
    mirror = signs.view(-1, 1, 1)  # mirroring first negates the source's x about the centre
    source_x = torch.add((mirror * cos) * xs, (mirror * sin) * ys + ((width - 1) / 2 + border))  # inverse rotation
    source_y = torch.add(cos * ys, (-sin) * xs + ((height - 1) / 2 + border))
    index = source_y.round_().mul_(width + 2 * border).add_(source_x.round_())
    return index.view(angles.size(0), 1, -1).long()


def rotate_and_flip(images: torch.Tensor, signs: torch.Tensor, angles: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    """Each sample mirrored (sign -1) then rotated by its angle: nearest neighbour, zero fill, one gather.

    ``padded`` is a zero buffer (B, C, H + 2 * border, W + 2 * border) of the images' dtype: its
    centre is overwritten, its border stays zero (the same buffer serves every call)."""
    batch, channels, height, width = images.shape
    border = (padded.size(-1) - width) // 2
    padded[:, :, border:border + height, border:border + width] = images
    index = _source_index(signs, angles, height, width, border).expand(-1, channels, -1)
    return padded.view(batch, channels, -1).gather(2, index).view(batch, channels, height, width)


def jitter_and_normalize_(images: torch.Tensor, out: torch.Tensor, factors: torch.Tensor) -> None:
    """``uint8`` ``images`` -> ``out`` (float32, same shape): brightness, contrast, saturation with the
    per-sample ``factors`` (3, B), each clamped to [0, 1], then ImageNet normalisation.

    Only in-place multiplications and additions by broadcast tensors (``addcmul`` and ``lerp`` with
    per-sample operands are several times slower on the CPU)."""
    brightness, contrast, saturation = (f.view(-1, 1, 1, 1) for f in factors)
    out.copy_(images).mul_(brightness / 255).clamp_max_(1)
    means = out.mean(dim=(-2, -1))  # (B, 3): the mean grey level as a weighted sum
    mean = means[:, 0] * GRAY_WEIGHTS[0] + means[:, 1] * GRAY_WEIGHTS[1] + means[:, 2] * GRAY_WEIGHTS[2]
    out.mul_(contrast).add_(mean.view(-1, 1, 1, 1) * (1 - contrast)).clamp_(0, 1)
    gray = out[:, 0:1] * GRAY_WEIGHTS[0]
    gray.add_(out[:, 1:2], alpha=GRAY_WEIGHTS[1]).add_(out[:, 2:3], alpha=GRAY_WEIGHTS[2]).mul_(1 - saturation)
    out.mul_(saturation).add_(gray).clamp_(0, 1)
    normalize_float_(out)


def _empty_float(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """An uninitialised float32 batch. On the CPU its memory comes through numpy: torch's own CPU
    allocator gives a batch-sized block (19 MB at 32 x 224 px) back to the system when it is freed,
    so the next batch page-faults it in again (about 4,700 faults, 4-5 ms a batch, as much as the
    whole `none` augmentation); glibc's malloc, as numpy calls it, keeps the block for the next."""
    if device.type == "cpu":
        return torch.from_numpy(np.empty(tuple(shape), dtype=np.float32))
    return torch.empty(shape, dtype=torch.float32, device=device)


class BatchAugment:
    """``uint8`` (B, 3, H, W) -> augmented, normalised float32 batch (per-sample randomness)."""

    def __init__(self, augmentation: str = "none") -> None:
        if augmentation not in AUGMENTATIONS:
            raise JobSetupError(f"augmentation {augmentation!r}: must be one of {', '.join(AUGMENTATIONS)}")
        self.augmentation = augmentation
        self.steps = _STEPS[augmentation]
        self._padded: dict = {}  # (shape, dtype, device) -> zero-bordered buffer for the rotation

    def _padded_buffer(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        border = rotation_border(height, width)
        key = (images.shape, images.dtype, images.device)
        if key not in self._padded:
            self._padded[key] = images.new_zeros(batch, channels, height + 2 * border, width + 2 * border)
        return self._padded[key]

    @property
    def random(self) -> bool:
        return bool(self.steps)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        images = images.as_subclass(torch.Tensor)
        if images.dtype != torch.uint8:
            raise TypeError(f"BatchAugment takes uint8 images, not {images.dtype}")
        if images.dim() == 3:  # one image
            return self(images.unsqueeze(0), generator)[0]
        if self.steps:
            if generator is None:  # seeded from the global generator (torch.seed() would reseed it at random)
                generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))
            draws = _draws(images.size(0), generator, images.device)
        out = _empty_float(images.shape, images.device)
        for part in _chunks(images.size(0), images.device):
            chunk = images[part]
            chunk_draws = draws[:, part] if self.steps else None
            if "rotate" in self.steps:
                chunk = rotate_and_flip(chunk, chunk_draws[0], chunk_draws[1], self._padded_buffer(chunk))
            elif "flip" in self.steps:
                chunk = _flip(chunk, chunk_draws[0])
            if "jitter" in self.steps:
                jitter_and_normalize_(chunk, out[part], chunk_draws[2:])
            else:  # v2.ToDtype(scale=True) then v2.Normalize: the per-image path's arithmetic
                normalize_float_(out[part].copy_(chunk).mul_(1 / 255))
        return out
