"""Loaders of whole batches from cached arrays, delivered on the training device.

``BatchLoader`` reads each batch with one indexed read of a cached array (decoded images or
backbone features) through a ``DataLoader`` (``batch_size=None`` over an
:class:`~workers.batches.EpochBatches` sampler, optional worker processes, pinned memory on
CUDA), copies it to the device without blocking, and applies a batch transform there (for
images: augmentation and normalisation). Epoch ``e`` uses the order and the augmentation draws
of ``(seed, e)`` only; ``set_epoch`` jumps, otherwise each iteration is the next epoch.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from workers.batches import EpochBatches, epoch_generator

BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class BatchLoader:
    """Iterable of ``(inputs, targets)`` on ``device``, one epoch per iteration."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool,
        device: torch.device,
        *,
        seed: int = 0,
        transform: Optional[BatchTransform] = None,
        workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sampler = EpochBatches(len(dataset), batch_size, shuffle, drop_last=shuffle and len(dataset) > batch_size, seed=seed)
        persistent = workers > 0 and not hasattr(dataset, "set_epoch")  # workers would keep a stale epoch
        self.loader = DataLoader(dataset, sampler=self.sampler, batch_size=None, num_workers=workers,
                                 pin_memory=pin_memory, persistent_workers=persistent,
                                 generator=torch.Generator().manual_seed(self.sampler.seed))  # not the global RNG
        self.device = torch.device(device)
        self.non_blocking = pin_memory
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The (0-based) epoch the next iteration serves."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        generator = epoch_generator(self.seed, epoch, stream=1)
        for inputs, targets in self.loader:
            inputs = inputs.to(self.device, non_blocking=self.non_blocking)
            targets = targets.to(self.device, non_blocking=self.non_blocking)
            if self.transform is not None:
                inputs = self.transform(inputs, generator)
            yield inputs, targets
