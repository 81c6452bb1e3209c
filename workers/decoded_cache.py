"""Decode once: a split's images, RGB, resized and center-cropped, in a ``uint8`` memory map.

``decoded_split`` runs :func:`workers.transforms.decode_transform` over every image of a split
once per host and keeps the result as an (N, 3, S, S) ``uint8`` array under the cache directory
(:mod:`workers.array_cache`), keyed by the data set's identity, the split's image indices and the
image size: every job of a run (and every run with the same split) maps the same file.
``DecodedImages`` serves it by index or by a list of indices (a whole batch in one read);
augmentation and normalisation then run on batches (:mod:`workers.batch_augment`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from workers.array_cache import cached_array, content_key
from workers.transforms import decode_transform

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the decoding changes


def dataset_fingerprint(images: Dataset) -> str:
    """What identifies a data set's content: its pixels (in-memory arrays), else its files or root."""
    digest = hashlib.sha256(type(images).__name__.encode())
    pixels = getattr(images, "pixels", None)
    if isinstance(pixels, np.ndarray):
        digest.update(np.ascontiguousarray(pixels).tobytes())
    samples = getattr(images, "samples", None)
    if samples is not None:  # ImageFolder: the file list, with sizes and modification times
        for path, target in samples:
            stat = Path(path).stat()
            digest.update(f"{path}\0{target}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    root = getattr(images, "root", None)
    if root is not None:
        digest.update(str(Path(root).expanduser().resolve()).encode())
    for attribute in ("train", "split"):  # torchvision data sets with several parts under one root
        if hasattr(images, attribute):
            digest.update(f"{attribute}={getattr(images, attribute)}".encode())
    digest.update(str(len(images)).encode())
    return digest.hexdigest()[:32]


class DecodedImages(Dataset):
    """Decoded images (N, 3, S, S) ``uint8`` with their targets; indexable by an int or a list."""

    def __init__(self, pixels: np.ndarray, targets: np.ndarray) -> None:
        self.pixels = pixels
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: Union[int, Sequence[int]]):
        if isinstance(index, (int, np.integer)):
            return torch.from_numpy(np.array(self.pixels[index])), int(self.targets[index])
        positions = np.asarray(index, dtype=np.int64)
        return torch.from_numpy(self.pixels[positions]), torch.from_numpy(self.targets[positions])


class _Decoding(Dataset):
    def __init__(self, images: Dataset, indices: np.ndarray, image_size: int) -> None:
        self.images, self.indices, self.transform = images, indices, decode_transform(image_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> torch.Tensor:
        image, _ = self.images[int(self.indices[position])]
        return self.transform(image).as_subclass(torch.Tensor)


def decode_into(array: np.ndarray, images: Dataset, indices: np.ndarray, image_size: int, workers: int = 0) -> None:
    """Write the decoded images ``images[indices]`` into ``array`` (N, 3, S, S)."""
    loader = DataLoader(_Decoding(images, indices, image_size), batch_size=64, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG (dropout) alone
    start = 0
    for batch in loader:
        array[start:start + len(batch)] = batch.numpy()
        start += len(batch)


def decoded_split(
    images: Dataset, indices: np.ndarray, targets: np.ndarray, image_size: int, cache_dir: Path, workers: int = 0
) -> DecodedImages:
    """The split ``images[indices]`` decoded at ``image_size``, from the host's cache (made once).

    ``targets`` are the split's labels (one per index).
    """
    indices = np.asarray(indices, dtype=np.int64)
    key = content_key(
        version=FORMAT_VERSION,
        data=dataset_fingerprint(images),
        indices=hashlib.sha256(indices.tobytes()).hexdigest(),
        image_size=int(image_size),
    )
    shape = (len(indices), 3, int(image_size), int(image_size))
    path = Path(cache_dir) / "decoded" / f"{key}.npy"
    pixels = cached_array(path, shape, np.uint8, lambda array: decode_into(array, images, indices, image_size, workers))
    return DecodedImages(pixels, targets)
