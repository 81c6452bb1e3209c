"""The data sets a job can train on, as PIL images with integer class labels.

``dataset`` config values:

* ``digits``: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), bundled with
  scikit-learn, so it needs no download: the offline default. Grayscale, upscaled by the transform.
* ``mnist``, ``cifar10``: torchvision's, with their own test split.
* ``caltech101``: torchvision's Caltech 101 (101 classes; torchvision already drops the
  ``BACKGROUND_Google`` category). No official test split.
* ``folder``: an ImageFolder-style directory (one subfolder per class, at least two classes)
  named by ``data_dir``. Files that cannot be read as images are skipped with a warning and
  counted (or fail the job with ``strict_images``).

Data live under the data root: ``context.data_root``, else ``$HPO_DATA_ROOT``, else
``~/.cache/hpo/data``. A download happens once per data root: workers take an exclusive file
lock (``<root>/.<dataset>.lock``) around it, so two workers never download into the same place.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from workers.errors import CorruptImage, DataUnavailable, JobSetupError
from workers.locks import exclusive_lock

logger = logging.getLogger(__name__)

DATASETS = ("digits", "mnist", "cifar10", "caltech101", "folder")
DEFAULT_DATA_ROOT = "~/.cache/hpo/data"


@dataclass
class LabeledImages:
    """A data set yielding ``(PIL image, class index)``, with all its labels at hand (for stratifying)."""

    images: Dataset
    targets: np.ndarray


@dataclass
class ImageData:
    """A data set's training part and, where it has one, its own test part."""

    name: str
    classes: list
    train: LabeledImages
    test: Optional[LabeledImages] = None
    skipped_images: list = field(default_factory=list)  # paths of unreadable files left out

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class ArrayImages(Dataset):
    """Grayscale images held in a ``uint8`` array of shape (N, H, W)."""

    def __init__(self, pixels: np.ndarray, targets: np.ndarray) -> None:
        self.pixels = pixels
        self.targets = targets

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.pixels[index], mode="L"), int(self.targets[index])


def resolve_data_root(data_root: Optional[str]) -> Path:
    """``data_root``, else ``$HPO_DATA_ROOT``, else ``~/.cache/hpo/data``."""
    return Path(data_root or os.environ.get("HPO_DATA_ROOT") or DEFAULT_DATA_ROOT).expanduser()


def data_lock(root: Path, name: str):
    """The download lock of data set ``name`` under ``root``: ``<root>/.<name>.lock``."""
    return exclusive_lock(root / f".{name}.lock")


def _torchvision_dataset(factory: Callable[..., Any], root: Path, name: str, where: str, **kwargs: Any) -> Any:
    """Open a torchvision data set, downloading it (under the lock) when it is not there yet."""
    try:
        return factory(str(root), download=False, **kwargs)
    except RuntimeError:
        pass
    with data_lock(root, name):
        try:
            logger.info("downloading %s into %s", name, root)
            return factory(str(root), download=True, **kwargs)
        except Exception as exc:  # network errors, bad archives: all mean "not available here"
            raise DataUnavailable(
                f"dataset {name!r}: not found under {root / where} and the download failed "
                f"({type(exc).__name__}); download it on a host with network into that data root "
                f"(--data-root or HPO_DATA_ROOT) and copy it here, or use dataset 'digits' offline"
            ) from None


def load_digits() -> ImageData:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    pixels = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    targets = bunch.target.astype(np.int64)
    return ImageData("digits", [str(c) for c in bunch.target_names], LabeledImages(ArrayImages(pixels, targets), targets))


def _with_test_split(factory: Callable[..., Any], root: Path, name: str, where: str) -> ImageData:
    """A torchvision data set that has its own test split (MNIST, CIFAR-10)."""
    train = _torchvision_dataset(factory, root, name, where, train=True)
    test = _torchvision_dataset(factory, root, name, where, train=False)
    return ImageData(
        name,
        list(train.classes),
        LabeledImages(train, np.asarray(train.targets)),
        LabeledImages(test, np.asarray(test.targets)),
    )


def load_mnist(root: Path) -> ImageData:
    return _with_test_split(torchvision.datasets.MNIST, root, "mnist", "MNIST")


def load_cifar10(root: Path) -> ImageData:
    return _with_test_split(torchvision.datasets.CIFAR10, root, "cifar10", "cifar-10-batches-py")


def load_caltech101(root: Path) -> ImageData:
    data = _torchvision_dataset(torchvision.datasets.Caltech101, root, "caltech101", "caltech101/101_ObjectCategories")
    return ImageData("caltech101", list(data.categories), LabeledImages(data, np.asarray(data.y)))


_folder_scans: dict = {}  # (directory, modification time) -> (ImageFolder, unreadable files); per process


def _readable_image(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # PIL raises many kinds (UnidentifiedImageError, SyntaxError, OSError, ...)
        return False


def _scan_folder(directory: Path) -> tuple:
    unreadable: list = []

    def is_valid(path: str) -> bool:
        if not path.lower().endswith(torchvision.datasets.folder.IMG_EXTENSIONS):
            return False
        if _readable_image(path):
            return True
        unreadable.append(path)
        return False

    try:
        folder = torchvision.datasets.ImageFolder(str(directory), is_valid_file=is_valid)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise DataUnavailable(f"data_dir {str(directory)!r}: {str(exc).splitlines()[0]}") from None
    return folder, sorted(unreadable)


def load_folder(directory: Optional[str], strict_images: bool = False) -> ImageData:
    """An ImageFolder directory, with unreadable image files left out (or an error when strict)."""
    if not directory:
        raise JobSetupError("dataset 'folder': set data_dir to a directory with one subfolder of images per class")
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise DataUnavailable(f"data_dir {str(path)!r}: not a directory")
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _folder_scans:
        _folder_scans[key] = _scan_folder(path)
    folder, unreadable = _folder_scans[key]
    if len(folder.classes) < 2:
        raise DataUnavailable(
            f"data_dir {str(path)!r}: one class ({folder.classes[0]!r}); a classifier needs at least 2 "
            f"subfolders of images, one per class (a single class trains to loss 0 and means nothing)"
        )
    if unreadable:
        if strict_images:
            raise CorruptImage(
                f"data_dir {str(path)!r}: {len(unreadable)} unreadable image file(s), e.g. {unreadable[0]} "
                f"(strict_images is on; remove them or turn it off to skip them)"
            )
        for bad in unreadable:
            logger.warning("skipping unreadable image %s", bad)
    return ImageData("folder", list(folder.classes), LabeledImages(folder, np.asarray(folder.targets)), None, list(unreadable))


def check_dataset(name: str, data_dir: Optional[str] = None) -> None:
    """Raise a one-line ``JobSetupError`` for a data set name that is not one of :data:`DATASETS`, or
    ``folder`` without ``data_dir`` (nothing is read: whether the directory holds images is for
    :func:`load_dataset` to find)."""
    if name not in DATASETS:
        raise JobSetupError(f"dataset {name!r}: must be one of {', '.join(DATASETS)}")
    if name == "folder" and not data_dir:
        raise JobSetupError("dataset 'folder': set data_dir to a directory with one subfolder of images per class")


def load_dataset(name: str, data_root: Optional[str] = None, data_dir: Optional[str] = None, strict_images: bool = False) -> ImageData:
    """The data set ``name`` (one of :data:`DATASETS`)."""
    check_dataset(name, data_dir)
    root = resolve_data_root(data_root)
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist(root)
    if name == "cifar10":
        return load_cifar10(root)
    if name == "caltech101":
        return load_caltech101(root)
    return load_folder(data_dir, strict_images)
