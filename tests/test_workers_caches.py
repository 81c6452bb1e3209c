"""Computed once: decoded images, frozen-backbone features, batched augmentation, the epoch order."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from workers import feature_cache as feature_cache_module
from workers.array_cache import cached_array, resolve_cache_dir
from torchvision.transforms.v2 import functional as TF

from workers import batch_augment
from workers.batch_augment import BatchAugment, jitter_and_normalize_, rotate_and_flip, rotation_border
from workers.batch_loader import BatchLoader
from workers.batches import EpochBatches
from workers.config import read_config
from workers.datasets import load_digits, load_folder
from workers.decoded_cache import decoded_split
from workers.devices import default_loader_workers, loader_workers, training_settings
from workers.errors import JobSetupError
from workers.input_pipeline import build_pipeline
from workers.models import build_model
from workers.optimization import build_optimizer
from workers.splits import make_splits
from workers.training import evaluate, train_one_epoch
from workers.transforms import eval_transform, normalize_float, train_transform
from workers_helpers import write_image_folder

CPU = training_settings(torch.device("cpu"))


def _splits(image_size: int = 24, augmentation: str = "none", data=None, **caps):
    caps = caps or {"max_train_images": 48, "max_eval_images": 30}
    return make_splits(data or load_digits(), train_transform(image_size, augmentation), eval_transform(image_size), **caps)


def _decode(subset, image_size, cache_dir):
    return decoded_split(subset.images, subset.indices, subset.targets, image_size, cache_dir)


# --- decoded cache -------------------------------------------------------------------------------


def test_decoded_batches_equal_the_per_image_evaluation_transform_on_digits(tmp_path):
    splits = _splits(24)
    images = _decode(splits.val, 24, tmp_path)
    pixels, targets = images[list(range(len(images)))]
    assert pixels.dtype == torch.uint8 and pixels.shape == (30, 3, 24, 24)
    expected = torch.stack([splits.val[i][0] for i in range(len(splits.val))])
    assert torch.equal(BatchAugment("none")(pixels), expected)
    assert targets.tolist() == splits.val.targets.tolist()


def test_decoded_batches_equal_the_per_image_path_for_colour_images_of_any_shape(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=2, per_class=5, size=37)
    data = load_folder(str(root))
    splits = make_splits(data, train_transform(20), eval_transform(20), val_fraction=0.4, test_fraction=0.2)
    images = _decode(splits.train, 20, tmp_path / "cache")
    expected = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    assert torch.equal(BatchAugment("none")(images[list(range(len(images)))][0]), expected)


def test_the_decoded_cache_is_made_once_and_a_corrupt_file_is_rebuilt(tmp_path):
    splits = _splits(16)
    first = _decode(splits.train, 16, tmp_path)
    files = list((tmp_path / "decoded").glob("*.npy"))
    assert len(files) == 1 and isinstance(first.pixels, np.memmap)
    made = files[0].stat().st_mtime_ns
    again = _decode(splits.train, 16, tmp_path)
    assert files[0].stat().st_mtime_ns == made and np.array_equal(first.pixels, again.pixels)
    assert len({p.name for p in (tmp_path / "decoded").glob("*.npy")}) == 1
    _decode(splits.val, 16, tmp_path)  # another split: another file
    _decode(splits.train, 20, tmp_path)  # another size: another file
    assert len(list((tmp_path / "decoded").glob("*.npy"))) == 3
    expected = np.array(first.pixels)
    del first, again  # truncating a mapped file in place would fault its readers
    files[0].write_bytes(files[0].read_bytes()[: files[0].stat().st_size // 2])  # a partial copy
    assert np.array_equal(np.array(_decode(splits.train, 16, tmp_path).pixels), expected)
    files[0].write_bytes(b"garbage")
    assert np.array_equal(np.array(_decode(splits.train, 16, tmp_path).pixels), expected)
    assert not list((tmp_path / "decoded").glob("*.tmp"))


def _build_slowly(path: str, log: str) -> None:
    def fill(array):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        array[:] = 7

    cached_array(Path(path), (4, 3), np.int16, fill)


def test_concurrent_processes_compute_a_cached_array_once(tmp_path):
    context = multiprocessing.get_context("fork")
    path, log = tmp_path / "shared" / "a.npy", tmp_path / "fills.log"
    processes = [context.Process(target=_build_slowly, args=(str(path), str(log))) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert len(log.read_text().split()) == 1
    assert np.all(np.load(path) == 7)


def test_the_cache_dir_comes_from_the_options_then_the_environment_then_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir({"cache_dir": str(tmp_path / "opt")}) == tmp_path / "opt"
    assert resolve_cache_dir({}) == tmp_path / "env"
    monkeypatch.delenv("HPO_CACHE_DIR")
    assert resolve_cache_dir(None) == Path("~/.cache/hpo/cache").expanduser()


# --- batched augmentation and the epoch order ----------------------------------------------------


def _same_images(count: int = 16, size: int = 20) -> torch.Tensor:
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, size, size), dtype=np.uint8))
    return image.expand(count, -1, -1, -1).contiguous()


@pytest.mark.parametrize("augmentation", ["flip_jitter", "flip_rotate", "all"])
def test_batched_augmentation_draws_per_sample_and_repeats_with_the_seed(augmentation):
    images = _same_images()
    augment = BatchAugment(augmentation)
    out = augment(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.float32
    distinct = {tuple(sample.flatten()[::37].tolist()) for sample in out}
    assert len(distinct) > 4  # identical inputs, different augmentations within one batch
    assert torch.equal(out, augment(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, augment(images, torch.Generator().manual_seed(2)))


def test_flip_flips_whole_samples_and_none_only_normalises():
    images = _same_images(32)
    plain = BatchAugment("none")(images)
    flipped = BatchAugment("flip_rotate")
    flipped.steps = ("flip",)
    out = flipped(images, torch.Generator().manual_seed(0))
    same = [torch.allclose(o, plain[0]) for o in out]
    mirrored = [torch.allclose(o, plain[0].flip(-1)) for o in out]
    assert all(a or b for a, b in zip(same, mirrored)) and any(same) and any(mirrored)
    with pytest.raises(JobSetupError, match="augmentation"):
        BatchAugment("mixup")


@pytest.mark.parametrize("size", [20, 33])
def test_flip_and_rotation_in_one_gather_equal_torchvision_s_nearest_rotation(size):
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    degrees = (17.0, -29.5)
    border = rotation_border(size, size)
    padded = images.new_full((2, 3, size + 2 * border, size + 2 * border), 0)
    out = rotate_and_flip(images, torch.tensor([1.0, -1.0]), torch.tensor(degrees) * math.pi / 180, padded)
    nearest = TF.InterpolationMode.NEAREST  # our angle turns the other way: the draws are symmetric
    assert torch.equal(out[0], TF.rotate(images[0], -degrees[0], interpolation=nearest))  # zero-filled corners too
    assert torch.equal(out[1], TF.rotate(TF.horizontal_flip(images[1]), -degrees[1], interpolation=nearest))
    again = rotate_and_flip(images.flip(0), torch.tensor([1.0, -1.0]), torch.tensor(degrees) * math.pi / 180, padded)
    assert torch.equal(again[0], TF.rotate(images[1], -degrees[0], interpolation=nearest))  # the reused border stays zero


def test_the_jitter_is_torchvision_s_brightness_contrast_saturation_then_normalisation():
    images = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    factors = torch.tensor([[0.6, 1.4, 1.1], [1.4, 0.6, 0.9], [1.2, 1.3, 0.6]])  # (brightness, contrast, saturation) x sample
    out = torch.empty(images.shape)
    jitter_and_normalize_(images, out, factors)
    for sample, (brightness, contrast, saturation) in zip(range(3), factors.T.tolist()):
        expected = TF.adjust_brightness(images[sample].float() / 255, brightness)
        expected = TF.adjust_saturation(TF.adjust_contrast(expected, contrast), saturation)
        assert torch.allclose(out[sample], normalize_float(expected), atol=1e-5)


def test_cpu_chunks_change_no_value(monkeypatch):
    images = torch.randint(0, 256, (10, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    outputs = []
    for chunk in (64, 3):
        monkeypatch.setattr(batch_augment, "CPU_CHUNK", chunk)
        outputs.append([BatchAugment(name)(images, torch.Generator().manual_seed(3)) for name in ("none", "flip_jitter", "all")])
    for whole, chunked in zip(*outputs):
        assert torch.equal(whole, chunked)


def test_the_epoch_order_depends_only_on_seed_and_epoch():
    sampler = EpochBatches(50, 8, shuffle=True, drop_last=True, seed=3)
    epochs = [list(sampler) for _ in range(3)]
    assert len(epochs[0]) == len(sampler) == 6 and all(len(batch) == 8 for batch in epochs[0])
    assert epochs[0] != epochs[1] != epochs[2]
    resumed = EpochBatches(50, 8, shuffle=True, drop_last=True, seed=3)
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2]
    assert list(EpochBatches(50, 8, shuffle=True, drop_last=True, seed=4)) != epochs[0]
    ordered = list(EpochBatches(10, 4, shuffle=False, drop_last=False))
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_batch_loader_resumed_at_an_epoch_gives_that_epoch_s_batches_and_augmentation(tmp_path):
    images = _decode(_splits(16).train, 16, tmp_path)
    make = lambda: BatchLoader(images, 8, True, torch.device("cpu"), seed=11, transform=BatchAugment("all"))  # noqa: E731
    loader = make()
    epochs = [[(x.clone(), y.clone()) for x, y in loader] for _ in range(2)]
    resumed = make()
    resumed.set_epoch(1)
    for (x, y), (x2, y2) in zip(epochs[1], resumed):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(epochs[0][0][1], epochs[1][0][1])


# --- frozen-feature cache ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for name in ("resnet18", "vgg11", "alexnet", "squeezenet1_0"):
        torch.manual_seed(3)
        paths[name] = str(folder / f"{name}.pth")
        torch.save(torchvision.models.get_model(name).state_dict(), paths[name])
    return paths


def _train(model: str, weights: str, cache_dir: Path, epochs: int = 2, image_size: int = 32, **overrides):
    config = {"model": model, "weights": weights, "regime": "frozen", "image_size": image_size, "batch_size": 16, **overrides}
    cfg = read_config(config)
    splits = _splits(image_size, cfg.augmentation, max_train_images=48, max_eval_images=24)
    torch.manual_seed(5)
    classifier = build_model(model, 10, weights, "frozen")
    pipeline = build_pipeline(cfg, splits, classifier, CPU, seed=7, options={"cache_dir": str(cache_dir)})
    optimizer = build_optimizer("sgd", [p for p in classifier.model.parameters() if p.requires_grad], lr=0.05)
    metrics = []
    for _ in range(epochs):
        metrics.append(train_one_epoch(pipeline.classifier, pipeline.loaders["train"], optimizer, CPU))
        metrics.append(evaluate(pipeline.classifier, pipeline.loaders["val"], CPU))
    return pipeline, np.array(metrics), classifier


def test_frozen_resnet_on_cached_features_gives_the_uncached_losses(weights_files, tmp_path):
    cached, with_cache, classifier = _train("resnet18", weights_files["resnet18"], tmp_path)
    uncached, without, _ = _train("resnet18", weights_files["resnet18"], tmp_path, feature_cache="off")
    assert cached.path == "features" and uncached.path == "decoded"
    np.testing.assert_allclose(with_cache, without, rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 3  # train, val, test
    x, _ = next(iter(cached.loaders["train"]))
    assert x.shape == (16, 512)  # after avgpool, flattened
    assert cached.classifier.parameter_counts() == classifier.parameter_counts()


@pytest.mark.slow
@pytest.mark.parametrize("model, size, width", [("vgg11", 32, 25088), ("alexnet", 64, 9216)])
def test_frozen_vgg_and_alexnet_on_cached_features_give_the_uncached_losses(weights_files, tmp_path, model, size, width):
    cached, with_cache, _ = _train(model, weights_files[model], tmp_path, epochs=1, image_size=size)
    _, without, _ = _train(model, weights_files[model], tmp_path, epochs=1, image_size=size, feature_cache="off")
    assert cached.path == "features"
    assert next(iter(cached.loaders["val"]))[0].shape[1] == width  # after features and avgpool
    np.testing.assert_allclose(with_cache, without, rtol=1e-4, atol=1e-5)


def test_the_features_are_computed_once_per_host_and_shared_by_jobs(weights_files, tmp_path, monkeypatch):
    calls = []
    original = feature_cache_module.compute_features
    monkeypatch.setattr(feature_cache_module, "compute_features", lambda *a, **k: calls.append(1) or original(*a, **k))
    _train("resnet18", weights_files["resnet18"], tmp_path, epochs=1)
    assert len(calls) == 3
    _train("resnet18", weights_files["resnet18"], tmp_path, epochs=1, lr=0.5, batch_size=8)  # another job of the run
    assert len(calls) == 3


def test_augmented_features_have_k_views_and_epoch_e_uses_view_e_mod_k(weights_files, tmp_path):
    pipeline, _, _ = _train("resnet18", weights_files["resnet18"], tmp_path, epochs=1, augmentation="flip_rotate", feature_views=3)
    train = pipeline.loaders["train"].dataset
    assert len(train.views) == 3 and len(pipeline.loaders["val"].dataset.views) == 1
    assert not np.allclose(train.views[0], train.views[1]) and not np.allclose(train.views[1], train.views[2])
    loader = pipeline.loaders["train"]
    for epoch in (0, 1, 2, 3, 4):
        loader.set_epoch(epoch)
        x, _ = next(iter(loader))
        order = loader.sampler.order(epoch)[:16].numpy()
        assert np.allclose(x.numpy(), train.views[epoch % 3][order])
    assert len(list((tmp_path / "features").glob("*.npy"))) == 5  # 3 training views, val, test


def test_a_random_backbone_keeps_its_features_in_memory(tmp_path):
    pipeline, _, _ = _train("resnet18", "none", tmp_path, epochs=1)
    assert pipeline.path == "features" and not (tmp_path / "features").exists()


def test_a_model_that_does_not_split_into_backbone_and_head_trains_on_images(weights_files, tmp_path):
    pipeline, metrics, _ = _train("squeezenet1_0", weights_files["squeezenet1_0"], tmp_path, epochs=1, image_size=48)
    assert pipeline.path == "decoded" and np.all(np.isfinite(metrics))


def test_decoded_cache_off_keeps_the_per_image_path(tmp_path):
    pipeline, metrics, _ = _train("resnet18", "none", tmp_path, epochs=1, decoded_cache="off", feature_cache="off")
    assert pipeline.path == "images" and np.all(np.isfinite(metrics))
    assert not (tmp_path / "decoded").exists()


def test_cache_config_keys_are_checked_and_a_yaml_off_is_read_as_off():
    assert read_config({"feature_cache": False}).feature_cache == "off"
    assert read_config({"decoded_cache": "off"}).decoded_cache == "off"
    assert read_config({}).feature_cache == "auto" and read_config({}).feature_views == 4
    with pytest.raises(JobSetupError, match="feature_cache"):
        read_config({"feature_cache": "sometimes"})
    with pytest.raises(JobSetupError, match="feature_views"):
        read_config({"feature_views": 0})


# --- loader defaults -----------------------------------------------------------------------------


def test_loader_processes_default_to_a_share_of_the_cores_on_cuda_only():
    assert default_loader_workers(torch.device("cpu")) == 0
    assert default_loader_workers(torch.device("cuda:0"), cores=16, gpus=1) == 8
    assert default_loader_workers(torch.device("cuda:0"), cores=16, gpus=4) == 3
    assert default_loader_workers(torch.device("cuda:0"), cores=2, gpus=2) == 1
    assert loader_workers({"loader_workers": 0}, torch.device("cuda:0")) == 0
    assert loader_workers({"loader_workers": 3}, torch.device("cpu")) == 3
    assert loader_workers({}, torch.device("cpu")) == 0


def test_a_cache_dir_that_cannot_be_written_means_the_per_image_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    pipeline, metrics, _ = _train("resnet18", "none", blocker / "cache", epochs=1)
    assert pipeline.path == "images" and np.all(np.isfinite(metrics))


def test_the_frozen_job_trains_on_cached_features_with_the_losses_of_the_uncached_job(weights_files, tmp_path):
    from workers.image_classifier import run
    from workers_helpers import context, tiny

    config = tiny(model="resnet18", weights=weights_files["resnet18"], regime="frozen", lr=0.05)
    options = {"cache_dir": str(tmp_path)}
    cached = run(config, context(budget=2, max_budget=2, options=options))
    uncached = run({**config, "feature_cache": "off"}, context(budget=2, max_budget=2, options=options))
    per_image = run({**config, "feature_cache": "off", "decoded_cache": "off"}, context(budget=2, max_budget=2, options=options))
    assert (cached["info"]["input"], uncached["info"]["input"], per_image["info"]["input"]) == ("features", "decoded", "images")
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        for other in (uncached, per_image):
            assert [e[key] for e in cached["info"]["history"]] == pytest.approx([e[key] for e in other["info"]["history"]], rel=1e-4, abs=1e-6), key
    assert cached["info"]["test_loss"] == pytest.approx(uncached["info"]["test_loss"], rel=1e-4)
    assert cached["info"]["trainable_params"] == uncached["info"]["trainable_params"] == 512 * 10 + 10


def _linear_classifier():
    from workers.models import ClassifierModel

    return ClassifierModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), "tiny", "1", "finetune", [])


def test_the_training_loop_synchronises_only_every_few_steps_and_still_notices_divergence(monkeypatch):
    from workers.errors import Diverged
    from workers.training import FINITE_CHECK_STEPS

    torch.manual_seed(0)
    classifier = _linear_classifier()
    optimizer = torch.optim.SGD(classifier.model.parameters(), lr=0.1)
    batches = [(torch.randn(4, 12), torch.randint(0, 3, (4,))) for _ in range(2 * FINITE_CHECK_STEPS + 5)]
    calls = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append(1) or item(self))
    loss, accuracy = train_one_epoch(classifier, batches, optimizer, CPU)
    assert math.isfinite(loss) and 0 <= accuracy <= 1
    assert len(calls) <= 5  # two periodic checks, the final check, the two results: not one per step
    batches[7] = (torch.full((4, 12), float("nan")), batches[7][1])
    with pytest.raises(Diverged, match="training loss is nan within the first"):
        train_one_epoch(classifier, batches, optimizer, CPU)
