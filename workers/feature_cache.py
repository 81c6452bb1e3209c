"""Frozen-feature cache: the frozen backbone runs once, the head trains on its pooled features.

In the ``frozen`` regime only the top-level child holding the head trains (``fc`` for ResNet,
``classifier`` for VGG/AlexNet); ``fc_frozen`` and ``partial`` train part of the backbone, so they
train on images. Its input does not change during training, so
``feature_split`` computes it once per (backbone weights, data set, split, image size,
augmentation view, device precision) with the trainable child replaced by ``nn.Identity`` (ResNet:
after ``avgpool``; VGG/AlexNet: after ``features`` and ``avgpool``, flattened), and keeps it as a
float32 (N, D) memory-mapped array under the cache directory (:mod:`workers.array_cache`), shared
by every job of the run on a host. ``HeadOnly`` then trains the head on those features.

Augmentation: without random augmentation one view is the exact input of the head (the losses
equal the uncached path's within float tolerance). With random augmentation the cache holds
``views`` pre-sampled augmented views of each training image (drawn from the cache key, so the
same for every job); epoch ``e`` uses view ``e mod views``. Validation and test use one
deterministic view. The backbone weights are identified by a hash of their values; with
``weights: none`` (a random backbone, different for every job) the features stay in memory.

A model whose forward is not ``head(backbone(x))`` with the head as the last step (e.g.
SqueezeNet, where a flatten follows its classifier) is detected on two images and not cached; nor is
one with dropout between its frozen part and its head (GoogLeNet's and Inception v3's top-level
``dropout``, which trains in training mode and which features computed once cannot reproduce).
Dropout inside the trainable child (``dropout`` on the new layer, VGG's classifier) acts as usual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from workers.array_cache import cached_array, content_key
from workers.batch_augment import BatchAugment
from workers.decoded_cache import DecodedImages
from workers.devices import TrainingSettings
from workers.models import ClassifierModel
from workers.regimes import classifier_block

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
FEATURE_BATCH = 64


def trainable_child(classifier: ClassifierModel) -> str:
    """Name of the top-level child that trains in the frozen regime (``fc``, ``classifier``, ...)."""
    return classifier_block(classifier.head_name)


@contextlib.contextmanager
def _without_head(classifier: ClassifierModel) -> Iterator[nn.Module]:
    """The model with its trainable child swapped for ``nn.Identity`` (restored afterwards)."""
    model, name = classifier.model, trainable_child(classifier)
    child = getattr(model, name)
    setattr(model, name, nn.Identity())
    try:
        yield model
    finally:
        setattr(model, name, child)


def backbone_fingerprint(classifier: ClassifierModel) -> str:
    """A hash of the model's name and of every frozen tensor (parameters and buffers)."""
    digest = hashlib.blake2b(classifier.name.encode(), digest_size=16)
    prefix = trainable_child(classifier) + "."
    for key, value in sorted(classifier.model.state_dict().items()):
        if key.startswith(prefix):
            continue
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _autocast(settings: TrainingSettings):
    return torch.autocast(settings.device.type, dtype=settings.amp_dtype, enabled=settings.amp_dtype is not None)


def backbone_dropout(classifier: ClassifierModel) -> list[str]:
    """Dropout layers (p > 0) outside the trainable child that train in training mode (not inside a
    frozen part, which stays in eval mode): the cached features would leave them out."""
    child = trainable_child(classifier)
    in_eval = {id(module) for part in classifier.frozen_modules for module in part.modules()}
    return [name for name, module in classifier.model.named_modules()
            if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0 and id(module) not in in_eval
            and name != child and not name.startswith(child + ".")]


@torch.inference_mode()
def supports_feature_cache(classifier: ClassifierModel, sample: torch.Tensor) -> bool:
    """Whether ``model(x) == head(backbone(x))`` on ``sample`` (normalised images) in eval mode, with no
    dropout between the frozen part and the head."""
    dropout = backbone_dropout(classifier)
    if dropout:
        logger.info("feature cache: %s has dropout before its head (%s)", classifier.name, ", ".join(dropout))
        return False
    model = classifier.model
    was_training = model.training
    model.eval()
    try:
        expected = model(sample)
        with _without_head(classifier) as backbone:
            features = backbone(sample)
        got = getattr(model, trainable_child(classifier))(features)
        return features.dim() == 2 and got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    except (RuntimeError, TypeError, ValueError) as exc:
        logger.info("feature cache: %s does not split into backbone and head (%s)", classifier.name, exc)
        return False
    finally:
        model.train(was_training)


@torch.inference_mode()
def compute_features(
    classifier: ClassifierModel, images: DecodedImages, augment: BatchAugment, settings: TrainingSettings,
    out: np.ndarray, generator: Optional[torch.Generator] = None,
) -> None:
    """Write the backbone features of every image of ``images`` (augmented by ``augment``) into ``out``."""
    model = classifier.model
    model.to(settings.device)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model.eval()
    try:
        with _without_head(classifier) as backbone:
            for start in range(0, len(images), FEATURE_BATCH):
                pixels, _ = images[list(range(start, min(start + FEATURE_BATCH, len(images))))]
                batch = augment(pixels.to(settings.device), generator).contiguous(memory_format=memory_format)
                with _autocast(settings):
                    features = backbone(batch)
                out[start:start + len(features)] = features.float().cpu().numpy()
    finally:
        classifier.train_mode()


class FeatureViews(Dataset):
    """Cached features, one (N, D) array per view; epoch ``e`` serves view ``e mod views``."""

    def __init__(self, views: Sequence[np.ndarray], targets: np.ndarray) -> None:
        self.views = list(views)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.view = 0

    def set_epoch(self, epoch: int) -> None:
        self.view = int(epoch) % len(self.views)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        positions = np.asarray(index, dtype=np.int64)
        return torch.from_numpy(np.array(self.views[self.view][positions])), torch.from_numpy(self.targets[positions])


def feature_split(
    classifier: ClassifierModel, images: DecodedImages, images_key: str, augmentation: str, views: int,
    settings: TrainingSettings, cache_dir: Optional[Path], in_memory: bool = False,
) -> FeatureViews:
    """Backbone features of ``images`` (``views`` augmented views when ``augmentation`` is random).

    ``images_key`` identifies the decoded images (data set, split, image size); with ``in_memory``
    (a backbone no other job shares) nothing is written to ``cache_dir``.
    """
    augment = BatchAugment(augmentation)
    views = views if augment.random else 1
    sample = augment(images[[0, min(1, len(images) - 1)]][0], torch.Generator().manual_seed(0))
    with _without_head(classifier) as backbone:
        backbone.eval()
        with torch.inference_mode():
            dimension = backbone(sample).flatten(1).shape[1]
    classifier.train_mode()
    shape = (len(images), dimension)
    backbone_key = backbone_fingerprint(classifier)
    arrays = []
    for view in range(views):
        key = content_key(
            version=FORMAT_VERSION, backbone=backbone_key, images=images_key, augmentation=augmentation,
            view=view if augment.random else None, device=settings.device.type, amp=str(settings.amp_dtype),
        )
        generator = torch.Generator().manual_seed(int(key[:15], 16)) if augment.random else None

        def fill(out: np.ndarray, generator=generator) -> None:
            compute_features(classifier, images, augment, settings, out, generator)

        if in_memory or cache_dir is None:
            array = np.empty(shape, dtype=np.float32)
            fill(array)
        else:
            array = cached_array(Path(cache_dir) / "features" / f"{key}.npy", shape, np.float32, fill)
        arrays.append(array)
    return FeatureViews(arrays, images.targets)


class HeadOnly(nn.Module):
    """The model restricted to its trainable child: takes backbone features, returns logits.

    The full model stays registered (``full``), so parameter counts and modes cover all of it.
    """

    def __init__(self, classifier: ClassifierModel) -> None:
        super().__init__()
        self.full = classifier.model
        self.child = trainable_child(classifier)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return getattr(self.full, self.child)(features)


def head_classifier(classifier: ClassifierModel) -> ClassifierModel:
    """``classifier`` as a model of features (same parameters, frozen parts and label smoothing)."""
    return dataclasses.replace(classifier, model=HeadOnly(classifier))
