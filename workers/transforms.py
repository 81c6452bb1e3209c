"""Image transforms: per-subset pipelines and the augmentation choices.

Every image is made 3-channel RGB (grayscale data sets like MNIST and digits included),
resized so its shorter side is ``image_size / 0.875`` and center-cropped to ``image_size``
(torchvision's 256 -> 224 evaluation convention), and normalised with ImageNet statistics.
Augmentation is applied to the training subset only; validation and test are deterministic.

Augmentation choices (config key ``augmentation``):

* ``none``
* ``flip_jitter``: RandomHorizontalFlip + ColorJitter(brightness, contrast, saturation 0.4)
* ``flip_rotate``: RandomHorizontalFlip + RandomRotation(30)
* ``all``: the union of both (the seed experiment's third configuration)

The deterministic part (RGB, resize, center crop; ``decode_transform``) yields ``uint8`` tensors:
:mod:`workers.decoded_cache` stores its output once per split, and :mod:`workers.batch_augment`
augments and normalises whole batches of them (``normalize_batch``).
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2

from workers.errors import JobSetupError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("none", "flip_jitter", "flip_rotate", "all")
CROP_FRACTION = 0.875


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image (grayscale, palette, RGBA, CMYK) as 3-channel RGB."""
    return image if image.mode == "RGB" else image.convert("RGB")


def _augmentation(name: str) -> list:
    flip = v2.RandomHorizontalFlip()
    jitter = v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)
    rotate = v2.RandomRotation(30)
    choices = {
        "none": [],
        "flip_jitter": [flip, jitter],
        "flip_rotate": [flip, rotate],
        "all": [flip, jitter, rotate],
    }
    if name not in choices:
        raise JobSetupError(f"augmentation {name!r}: must be one of {', '.join(AUGMENTATIONS)}")
    return choices[name]


def _resize(image_size: int) -> list:
    if image_size < 8:
        raise JobSetupError(f"image_size {image_size}: must be at least 8 pixels")
    return [v2.Resize(round(image_size / CROP_FRACTION), antialias=True), v2.CenterCrop(image_size)]


def _to_normalized_tensor() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def _decode(image_size: int) -> list:
    return [v2.Lambda(to_rgb), v2.ToImage(), *_resize(image_size)]


def decode_transform(image_size: int) -> v2.Compose:
    """PIL image -> ``uint8`` tensor (3, image_size, image_size): RGB, resized, center-cropped."""
    return v2.Compose(_decode(image_size))


_STATISTICS: dict = {}  # device -> (mean, std) tensors, made once (no host-to-device copy per batch)


def _statistics(device: torch.device) -> tuple:
    if device not in _STATISTICS:
        _STATISTICS[device] = tuple(
            torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1) for values in (IMAGENET_MEAN, IMAGENET_STD)
        )
    return _STATISTICS[device]


def normalize_float(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] (..., 3, H, W) -> ImageNet-normalised, with ``v2.Normalize``'s arithmetic."""
    mean, std = _statistics(images.device)
    return images.sub(mean).div_(std)


def normalize_float_(images: torch.Tensor) -> torch.Tensor:
    """:func:`normalize_float` in place (the same values, no new tensor)."""
    mean, std = _statistics(images.device)
    return images.sub_(mean).div_(std)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images (..., 3, H, W) -> float32 in [0, 1], ImageNet-normalised (as the per-image path)."""
    return normalize_float(v2.functional.to_dtype(images.as_subclass(torch.Tensor), torch.float32, scale=True))


def train_transform(image_size: int, augmentation: str = "none") -> v2.Compose:
    """Transform for training images: resize and crop, then the augmentation, then normalise."""
    augment = _augmentation(augmentation)
    return v2.Compose([*_decode(image_size), *augment, *_to_normalized_tensor()])


def eval_transform(image_size: int) -> v2.Compose:
    """Deterministic transform for validation and test images."""
    return v2.Compose([*_decode(image_size), *_to_normalized_tensor()])
