"""The job's loaders: which input path feeds training, chosen from the config.

* **features** (``regime: frozen``, ``feature_cache: auto``, a model that splits into backbone
  and head): the head trains on cached backbone features (:mod:`workers.feature_cache`);
* **decoded** (``decoded_cache: auto``, the default otherwise): batches of cached ``uint8``
  images (:mod:`workers.decoded_cache`), augmented and normalised on the training device
  (:mod:`workers.batch_augment`);
* **images** (``decoded_cache: off``): today's per-image PIL path in a ``DataLoader``.

Every path orders epoch ``e``'s batches by ``(job seed, e)`` only (:mod:`workers.batches`);
each loader has ``set_epoch(e)`` for a job that resumes at epoch ``e`` (0-based).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from workers.array_cache import content_key, resolve_cache_dir
from workers.batch_augment import BatchAugment
from workers.batch_loader import BatchLoader
from workers.batches import EpochBatches
from workers.config import ClassifierConfig
from workers.decoded_cache import dataset_fingerprint, decoded_split
from workers.devices import TrainingSettings, loader_workers
from workers.feature_cache import feature_split, head_classifier, supports_feature_cache
from workers.models import ClassifierModel
from workers.splits import Splits, TransformedSubset

logger = logging.getLogger(__name__)


@dataclass
class InputPipeline:
    """The loaders of the three splits, the model view that trains on them, and the path taken."""

    loaders: dict
    classifier: ClassifierModel  # the job's model, or its head-only view on the features path
    path: str  # "features", "decoded" or "images"


class ImageLoader(DataLoader):
    """A ``DataLoader`` over transformed images whose batches follow ``EpochBatches``."""

    def __init__(self, dataset, batch_size: int, shuffle: bool, settings: TrainingSettings, workers: int, seed: int) -> None:
        sampler = EpochBatches(len(dataset), batch_size, shuffle, drop_last=shuffle and len(dataset) > batch_size, seed=seed)
        super().__init__(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=settings.pin_memory,
                         generator=torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


def _decoded(subset: TransformedSubset, image_size: int, cache_dir: Path, workers: int):
    images = decoded_split(subset.images, subset.indices, subset.targets, image_size, cache_dir, workers)
    key = content_key(data=dataset_fingerprint(subset.images), indices=hashlib.sha256(np.asarray(subset.indices, dtype=np.int64).tobytes()).hexdigest(), image_size=image_size)
    return images, key


def build_pipeline(
    cfg: ClassifierConfig, splits: Splits, classifier: ClassifierModel, settings: TrainingSettings, seed: int,
    options: Optional[Mapping[str, Any]] = None,
) -> InputPipeline:
    """The loaders for ``cfg`` (see the module doc); a cache that cannot be written means the per-image path."""
    try:
        return _build(cfg, splits, classifier, settings, seed, dict(options or {}))
    except OSError as exc:
        logger.warning("input caches unavailable (%s); loading images one by one", exc)
        return _images(cfg, splits, classifier, settings, seed, loader_workers(options, settings.device))


def _images(cfg: ClassifierConfig, splits: Splits, classifier: ClassifierModel, settings: TrainingSettings, seed: int,
            workers: int) -> InputPipeline:
    """The per-image path: a :class:`ImageLoader` per split."""
    subsets = {"train": splits.train, "val": splits.val, "test": splits.test}
    loaders = {name: ImageLoader(subset, cfg.batch_size, name == "train", settings, workers, seed)
               for name, subset in subsets.items()}
    return InputPipeline(loaders, classifier, "images")


def _build(cfg: ClassifierConfig, splits: Splits, classifier: ClassifierModel, settings: TrainingSettings, seed: int,
           options: dict) -> InputPipeline:
    workers = loader_workers(options, settings.device)
    if cfg.decoded_cache == "off" and not (cfg.regime == "frozen" and cfg.feature_cache == "auto"):
        return _images(cfg, splits, classifier, settings, seed, workers)
    cache_dir = resolve_cache_dir(options)
    subsets = {"train": splits.train, "val": splits.val, "test": splits.test}
    decoded = {name: _decoded(subset, cfg.image_size, cache_dir, workers) for name, subset in subsets.items()}
    if cfg.regime == "frozen" and cfg.feature_cache == "auto":
        sample = BatchAugment("none")(decoded["val"][0][[0, min(1, len(decoded["val"][0]) - 1)]][0])
        if supports_feature_cache(classifier, sample):
            in_memory = cfg.weights in ("none", "None", "")  # a random backbone: this job's alone
            loaders = {}
            for name, (images, key) in decoded.items():
                augmentation = cfg.augmentation if name == "train" else "none"
                features = feature_split(classifier, images, key, augmentation, cfg.feature_views, settings,
                                         cache_dir, in_memory=in_memory)
                loaders[name] = BatchLoader(features, cfg.batch_size, name == "train", settings.device, seed=seed,
                                            pin_memory=settings.pin_memory)
            return InputPipeline(loaders, head_classifier(classifier), "features")
        logger.info("feature cache: %s does not split into backbone and head; training on images", cfg.model)
    if cfg.decoded_cache == "off":
        return _images(cfg, splits, classifier, settings, seed, workers)
    loaders = {}
    for name, (images, _) in decoded.items():
        augment = BatchAugment(cfg.augmentation if name == "train" else "none")
        loaders[name] = BatchLoader(images, cfg.batch_size, name == "train", settings.device, seed=seed,
                                    transform=augment, workers=workers, pin_memory=settings.pin_memory)
    return InputPipeline(loaders, classifier, "decoded")
