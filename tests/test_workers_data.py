"""Data sets, splits, transforms, the data root and its download lock."""

from __future__ import annotations

import fcntl
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from hpo.jobs import is_failure
from workers.datasets import data_lock, load_dataset, load_digits, load_folder, resolve_data_root
from workers.errors import CorruptImage, JobSetupError
from workers.image_classifier import run
from workers.splits import make_splits
from workers.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from workers_helpers import context, tiny, write_image_folder


def _identity(image):
    return image


def test_digits_is_real_offline_data_with_ten_classes():
    data = load_digits()
    assert data.num_classes == 10 and len(data.train.targets) == 1797 and data.test is None
    image, label = data.train.images[0]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (8, 8)
    assert label == int(data.train.targets[0])
    assert np.asarray(image).max() > 200  # 0..16 intensities scaled to 0..255


def test_grayscale_images_become_three_identical_channels_as_for_mnist():
    fake_mnist_digit = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), mode="L")
    tensor = eval_transform(32)(fake_mnist_digit)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    unnormalized = tensor * std + mean
    assert torch.allclose(unnormalized[0], unnormalized[1], atol=1e-5)
    assert torch.allclose(unnormalized[1], unnormalized[2], atol=1e-5)


def test_evaluation_transform_is_deterministic_and_augmentation_is_random():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    evaluate = eval_transform(24)
    assert torch.equal(evaluate(image), evaluate(image))
    assert torch.equal(train_transform(24, "none")(image), evaluate(image))
    augment = train_transform(24, "all")
    torch.manual_seed(0)
    outputs = [augment(image) for _ in range(4)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


@pytest.mark.parametrize(
    "name, kinds",
    [
        ("none", set()),
        ("flip_jitter", {"RandomHorizontalFlip", "ColorJitter"}),
        ("flip_rotate", {"RandomHorizontalFlip", "RandomRotation"}),
        ("all", {"RandomHorizontalFlip", "ColorJitter", "RandomRotation"}),
    ],
)
def test_augmentation_choices(name, kinds):
    steps = {type(t).__name__ for t in train_transform(32, name).transforms}
    assert steps & {"RandomHorizontalFlip", "ColorJitter", "RandomRotation"} == kinds
    with pytest.raises(JobSetupError, match="augmentation"):
        train_transform(32, "mixup")


def test_splits_are_stratified_disjoint_and_fixed_by_the_seed():
    data = load_digits()
    first = make_splits(data, _identity, _identity, seed=0)
    again = make_splits(data, _identity, _identity, seed=0)
    other = make_splits(data, _identity, _identity, seed=1)
    assert np.array_equal(first.train.indices, again.train.indices)
    assert np.array_equal(first.val.indices, again.val.indices)
    assert not np.array_equal(first.val.indices, other.val.indices)
    train, val, test = (set(s.indices.tolist()) for s in (first.train, first.val, first.test))
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == 1797
    assert len(test) == 360 and len(val) == 288
    # stratified: every class's share of the validation set is within one image of its overall share
    overall = np.bincount(data.train.targets) / 1797
    assert np.all(np.abs(np.bincount(first.val.targets) - overall * len(val)) <= 1)


def test_each_split_has_its_own_transform_and_the_train_subset_can_be_capped():
    data = load_digits()
    splits = make_splits(data, train_transform(16, "flip_rotate"), eval_transform(16), max_train_images=50, max_eval_images=30)
    assert len(splits.train) == 50 and len(splits.val) == 30 and len(splits.test) == 30
    assert np.all(np.bincount(splits.train.targets, minlength=10) == 5)
    assert any(type(t).__name__ == "RandomRotation" for t in splits.train.transform.transforms)
    assert not any(type(t).__name__ == "RandomRotation" for t in splits.val.transform.transforms)
    assert splits.val.transform is splits.test.transform
    image, label = splits.train[0]
    assert image.shape == (3, 16, 16) and isinstance(label, int)


def test_data_root_comes_from_the_context_then_the_environment_then_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(str(tmp_path / "ctx")) == tmp_path / "ctx"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("HPO_DATA_ROOT")
    assert resolve_data_root(None) == Path("~/.cache/hpo/data").expanduser()


def test_the_download_lock_is_exclusive_between_processes(tmp_path):
    with data_lock(tmp_path, "mnist"):
        with open(tmp_path / ".mnist.lock") as other:  # another open file description, like another process
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / ".mnist.lock") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again


def test_a_data_set_that_cannot_be_downloaded_fails_the_job_with_reason_data(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    result = run(tiny(dataset="mnist"), context(data_root=str(tmp_path)))
    assert result["info"]["reason"] == "data"
    assert str(tmp_path / "MNIST") in result["info"]["message"]
    assert (tmp_path / ".mnist.lock").exists()


def test_unknown_dataset_is_a_config_failure():
    result = run(tiny(dataset="imagenet21k"), context())
    assert result["info"]["reason"] == "config" and "dataset 'imagenet21k'" in result["info"]["message"]


def test_a_folder_data_set_skips_and_counts_a_corrupt_image(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=2, per_class=6, garbage=1)
    data = load_folder(str(root))
    assert data.classes == ["class_0", "class_1"]
    assert len(data.train.targets) == 12 and len(data.skipped_images) == 1
    with pytest.raises(CorruptImage, match="broken_0.png"):
        load_folder(str(root), strict_images=True)


def test_the_job_on_a_folder_with_a_corrupt_image_counts_it_or_fails_when_strict(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=2, per_class=6, garbage=1)
    config = tiny(dataset="folder", data_dir=str(root), batch_size=4, max_train_images=None)
    result = run(config, context(budget=1, max_budget=1))
    assert not is_failure(result)
    assert result["info"]["skipped_images"] == 1
    assert result["info"]["test_images"] + result["info"]["val_images"] + result["info"]["train_images"] == 12

    strict = run(config, context(budget=1, max_budget=1, options={"strict_images": True}))
    assert strict["loss"] is None and strict["info"]["reason"] == "images"
    assert "broken_0.png" in strict["info"]["message"]
    assert run({**config, "strict_images": True}, context())["info"]["reason"] == "images"


def test_a_missing_folder_is_a_data_failure(tmp_path):
    result = run(tiny(dataset="folder", data_dir=str(tmp_path / "nope")), context())
    assert result["info"]["reason"] == "data"
    with pytest.raises(JobSetupError, match="data_dir"):
        load_dataset("folder")


def test_caltech101_leaves_out_the_background_class(tmp_path):
    categories = tmp_path / "caltech101" / "101_ObjectCategories"
    write_image_folder(categories, classes=2, per_class=3)
    write_image_folder(tmp_path / "background", classes=1, per_class=3)
    (tmp_path / "background" / "class_0").rename(categories / "BACKGROUND_Google")
    for c in (0, 1):  # torchvision's file naming
        for i, png in enumerate(sorted((categories / f"class_{c}").iterdir()), start=1):
            Image.open(png).save(png.with_name(f"image_{i:04d}.jpg"))
            png.unlink()
    data = load_dataset("caltech101", str(tmp_path))
    assert data.classes == ["class_0", "class_1"] and data.test is None
    assert sorted(data.train.targets.tolist()) == [0, 0, 0, 1, 1, 1]
    image, label = data.train.images[4]
    assert label == 1 and image.size == (12, 12)
