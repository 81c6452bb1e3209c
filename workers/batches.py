"""The order of a job's batches: a function of the job's seed and the epoch only.

``EpochBatches`` is a ``torch.utils.data`` batch sampler whose epoch-``e`` permutation comes
from a generator seeded with ``(seed, e)``, so epoch ``e`` sees the same batches whether the
job trained epochs ``0..e-1`` in this process or resumed from a checkpoint. Each iteration uses
the current epoch and then moves to the next; ``set_epoch(e)`` jumps (for continuation).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)`` (stream 0: the order, 1: augmentation draws)."""
    mixed = (int(seed) * 0x9E3779B97F4A7C15 + int(epoch) * 0xBF58476D1CE4E5B9 + int(stream) * 0x94D049BB133111EB)
    return mixed % (2**63 - 1)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``epoch_seed(seed, epoch, stream)``."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stream))


class EpochBatches(Sampler):
    """Lists of indices into ``size`` items, shuffled by ``(seed, epoch)`` or in order."""

    def __init__(self, size: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0) -> None:
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The (0-based) epoch the next iteration serves."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> torch.Tensor:
        """The item order of ``epoch``."""
        if not self.shuffle:
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=epoch_generator(self.seed, epoch))

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return (self.size + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list]:
        order = self.order(self.epoch).tolist()
        self.epoch += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start:start + self.batch_size]
