"""Models: torchvision by name, head replacement, regimes, and the three kinds of weights."""

from __future__ import annotations

import urllib.error
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import torchvision

from hpo.jobs import is_failure
from workers.config import ClassifierConfig
from workers.errors import JobSetupError, WeightsUnavailable
from workers.image_classifier import run
from workers.models import DropoutLinear, build_model
from workers_helpers import context, tiny


@pytest.mark.parametrize(
    "name, head",
    [
        ("alexnet", "classifier.6"),
        ("resnet18", "fc"),
        ("vgg11_bn", "classifier.6"),
        ("mobilenet_v3_small", "classifier.3"),
        ("squeezenet1_1", "classifier.1"),
        ("efficientnet_b0", "classifier.1"),
    ],
)
def test_any_classification_model_gets_a_head_with_the_data_sets_classes(name, head):
    built = build_model(name, num_classes=7)
    assert built.head_name == head
    built.model.eval()
    with torch.no_grad():
        out = built.model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)


def test_frozen_vgg16_trains_only_the_classifier_block():
    built = build_model("vgg16", num_classes=10, regime="frozen")
    trainable, total = built.parameter_counts()
    classifier_params = sum(p.numel() for p in built.model.classifier.parameters())
    assert trainable == classifier_params
    assert total == trainable + sum(p.numel() for p in built.model.features.parameters())
    assert not any(p.requires_grad for p in built.model.features.parameters())


def test_frozen_resnet50_trains_only_fc_and_keeps_batch_norm_in_eval_mode():
    built = build_model("resnet50", num_classes=10, regime="frozen")
    trainable, total = built.parameter_counts()
    assert trainable == 2048 * 10 + 10
    built.train_mode()
    assert built.model.fc.training
    batch_norms = [m for m in built.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)


def test_finetune_trains_every_weight():
    built = build_model("resnet18", num_classes=10, regime="finetune")
    trainable, total = built.parameter_counts()
    assert trainable == total


def test_unknown_model_and_regime_are_setup_errors():
    with pytest.raises(JobSetupError, match="model 'resnet5'"):
        build_model("resnet5", num_classes=3)
    with pytest.raises(JobSetupError, match="regime 'fc_only'"):
        build_model("resnet18", num_classes=3, regime="fc_only")


@pytest.mark.parametrize("model, blocks, message", [
    ("resnet18", 5, "trainable_blocks 5: regime partial with resnet18 needs 1 to 4 (its stages)"),
    ("alexnet", 4, "trainable_blocks 4: regime partial with alexnet needs 1 to 3 (its convolutional blocks)"),
    ("vgg11_bn", None, "trainable_blocks None: regime partial with vgg11_bn needs 1 to 5 (its convolutional blocks)"),
])
def test_too_many_trainable_blocks_is_one_line_naming_the_maximum(model, blocks, message):
    with pytest.raises(JobSetupError) as caught:
        build_model(model, num_classes=3, regime="partial", trainable_blocks=blocks)
    assert str(caught.value) == message


@pytest.mark.parametrize("overrides, message", [
    ({"regime": "partial"}, "trainable_blocks None: regime partial needs a whole number >= 1"),
    ({"regime": "partial", "trainable_blocks": 0}, "trainable_blocks 0: regime partial needs a whole number >= 1"),
    ({"regime": "partial", "trainable_blocks": 1.5}, "trainable_blocks 1.5: expected"),
    ({"regime": "partial", "trainable_blocks": 9}, "trainable_blocks 9: regime partial with resnet18 needs 1 to 4"),
    ({"dropout": 1.0}, "dropout 1.0: must be in [0, 1)"),
    ({"label_smoothing": -0.1}, "label_smoothing -0.1: must be in [0, 1)"),
    ({"backbone_lr_scale": 0}, "backbone_lr_scale 0.0: must be positive"),
    ({"regime": "fc-frozen"}, "regime 'fc-frozen': must be one of finetune, frozen, fc_frozen, partial"),
])
def test_bad_regime_settings_are_config_failures(overrides, message):
    result = run(tiny(**overrides), context())
    info = result["info"]
    assert result["loss"] is None and info["reason"] == "config"
    assert info["message"].startswith(message) and "\n" not in info["message"]


def test_partial_trains_the_classifier_block_and_the_last_stages():
    built = build_model("vgg11_bn", num_classes=10, regime="partial", trainable_blocks=1)
    assert built.trains == "features[22:29], classifier"
    assert all(p.requires_grad for p in built.model.features[22:].parameters())
    assert not any(p.requires_grad for p in built.model.features[:22].parameters())
    built.train_mode()
    assert not built.model.features[1].training and built.model.features[23].training  # batch norm


def test_a_self_saved_imagenet_shaped_state_dict_loads_the_backbone_and_gets_a_new_head(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)

    built = build_model("resnet18", num_classes=10, weights=str(path))

    loaded = built.model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert loaded["fc.weight"].shape == (10, 512)


def test_a_state_dict_with_a_fitting_head_loads_the_head_too(tmp_path):
    torch.manual_seed(2)
    source = torchvision.models.resnet18(num_classes=10)
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    built = build_model("resnet18", num_classes=10, weights=str(path))
    assert torch.equal(built.model.fc.weight, source.fc.weight)


def test_a_state_dict_of_another_architecture_is_refused_in_one_line(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(WeightsUnavailable) as caught:
        build_model("resnet18", num_classes=10, weights=str(path))
    assert "resnet34.pth" in str(caught.value) and "\n" not in str(caught.value)


def test_the_job_runs_from_a_self_saved_state_dict(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    result = run(tiny(weights=str(path)), context(budget=1, max_budget=1))
    assert not is_failure(result)


def test_imagenet_weights_that_cannot_be_fetched_fail_with_how_to_provide_them(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    result = run(tiny(weights="imagenet"), context())
    assert result["loss"] is None
    info = result["info"]
    assert info["status"] == "failed" and info["reason"] == "weights"
    assert "resnet18-f37072fd.pth" in info["message"] and str(tmp_path / "torch") in info["message"]
    assert "\n" not in info["message"]


def test_a_missing_weights_file_is_a_weights_failure():
    result = run(tiny(weights="/nonexistent/model.pth"), context())
    assert result["info"]["reason"] == "weights" and "/nonexistent/model.pth" in result["info"]["message"]


def test_imagenet_weights_already_in_the_torch_cache_load_without_network(tmp_path, monkeypatch):
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(4)
    provided = torchvision.models.resnet18().state_dict()
    torch.save(provided, cache / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    built = build_model("resnet18", num_classes=5, weights="imagenet")
    assert torch.equal(built.model.conv1.weight, provided["conv1.weight"])
    assert built.model.fc.out_features == 5


def test_workers_readme_lists_every_key_the_job_reads():
    readme = (Path(__file__).resolve().parents[1] / "workers" / "README.md").read_text()
    keys = readme.split("## Config keys", 1)[1].split("\n## ", 1)[0]
    assert [spec.name for spec in fields(ClassifierConfig) if f"`{spec.name}`" not in keys] == []


def test_dropout_zero_adds_no_module_and_a_positive_one_wraps_the_new_layer():
    plain = build_model("resnet18", num_classes=4, dropout=0.0)
    assert type(plain.model.fc) is torch.nn.Linear
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.model.modules())
    dropped = build_model("resnet18", num_classes=4, dropout=0.25)
    assert isinstance(dropped.model.fc, DropoutLinear) and dropped.model.fc.dropout.p == 0.25
