"""Train / validation / test splits, stratified and fixed by a seed, each with its own transform.

* test: the data set's own test part, or (caltech101, digits, folder) a stratified
  ``test_fraction`` of it held out;
* validation: a stratified ``val_fraction`` of what remains for training;
* train: the rest, optionally cut to a stratified ``max_train_images`` subset (quick runs).

All splits use ``split_seed`` (scikit-learn's ``train_test_split(stratify=...)``), so every worker
and every job of a run sees the same images in each split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from workers.datasets import ImageData
from workers.errors import JobSetupError

logger = logging.getLogger(__name__)


class TransformedSubset(Dataset):
    """The items ``indices`` of ``images``, each image passed through ``transform``."""

    def __init__(self, images: Dataset, indices: np.ndarray, targets: np.ndarray, transform: Callable) -> None:
        self.images = images
        self.indices = np.asarray(indices)
        self.targets = np.asarray(targets)[self.indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        image, target = self.images[int(self.indices[position])]
        return self.transform(image), int(target)


@dataclass
class Splits:
    train: TransformedSubset
    val: TransformedSubset
    test: TransformedSubset


def stratified_split(indices: np.ndarray, targets: np.ndarray, held_out: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out), stratified by ``targets[indices]`` where possible.

    ``held_out`` is a fraction (float) or a count (int). Falls back to a plain random split
    (with a warning) when some class has too few images to stratify.
    """
    labels = targets[indices]
    try:
        kept, held = train_test_split(indices, test_size=held_out, stratify=labels, random_state=seed)
    except ValueError as exc:
        logger.warning("cannot stratify the split (%s); splitting at random", exc)
        try:
            kept, held = train_test_split(indices, test_size=held_out, random_state=seed)
        except ValueError as exc2:
            raise JobSetupError(f"data set too small to split ({exc2})") from None
    return np.sort(kept), np.sort(held)


def _cap(indices: np.ndarray, targets: np.ndarray, limit: Optional[int], seed: int) -> np.ndarray:
    if limit is None or limit >= len(indices):
        return indices
    if limit < 1:
        raise JobSetupError(f"image limit {limit}: must be at least 1")
    _, kept = stratified_split(indices, targets, int(limit), seed)
    return kept


def make_splits(
    data: ImageData,
    train_transform: Callable,
    eval_transform: Callable,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_train_images: Optional[int] = None,
    max_eval_images: Optional[int] = None,
) -> Splits:
    """The three subsets of ``data`` (see the module doc)."""
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise JobSetupError(f"{key} {value}: must be between 0 and 1")
    source = data.train
    all_indices = np.arange(len(source.targets))
    if data.test is None:
        trainval, test_indices = stratified_split(all_indices, source.targets, test_fraction, seed)
        test_images, test_targets = source.images, source.targets
    else:
        trainval = all_indices
        test_images, test_targets = data.test.images, data.test.targets
        test_indices = np.arange(len(test_targets))
    train_indices, val_indices = stratified_split(trainval, source.targets, val_fraction, seed)
    train_indices = _cap(train_indices, source.targets, max_train_images, seed)
    val_indices = _cap(val_indices, source.targets, max_eval_images, seed)
    test_indices = _cap(test_indices, test_targets, max_eval_images, seed)
    return Splits(
        train=TransformedSubset(source.images, train_indices, source.targets, train_transform),
        val=TransformedSubset(source.images, val_indices, source.targets, eval_transform),
        test=TransformedSubset(test_images, test_indices, test_targets, eval_transform),
    )
