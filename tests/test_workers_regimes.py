"""Frozen vs fine-tune on the real VGG16 and ResNet50: what moves and what stays bit-identical."""

from __future__ import annotations

import pytest
import torch
import torchvision

from hpo.jobs import is_failure
from workers.image_classifier import execute, prepare
from workers_helpers import context, tiny

pytestmark = pytest.mark.slow


def _train_and_compare(config: dict) -> tuple[dict, dict, dict, str]:
    job = prepare(config, context(budget=1, max_budget=1))
    before = {key: value.clone() for key, value in job.classifier.model.state_dict().items()}
    trainable_child = job.classifier.head_name.split(".")[0]
    result = execute(job)
    assert not is_failure(result), result["info"]
    after = job.classifier.model.state_dict()
    return before, after, result, trainable_child


def _tiny_regime(model: str, regime: str, **extra) -> dict:
    # 32 training images of 32 px, batch 8: four steps
    return tiny(model=model, regime=regime, image_size=32, max_train_images=32, max_eval_images=16, batch_size=8, **extra)


@pytest.fixture
def resnet50_file(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return str(path)


@pytest.mark.parametrize("model", ["resnet50", "vgg16"])
def test_frozen_backbone_weights_and_batch_norm_buffers_stay_bit_identical(model, resnet50_file):
    weights = resnet50_file if model == "resnet50" else "none"
    before, after, result, head_block = _train_and_compare(_tiny_regime(model, "frozen", weights=weights, lr=0.05))
    backbone = [key for key in before if not key.startswith(head_block + ".")]
    assert backbone
    for key in backbone:
        assert torch.equal(before[key], after[key]), f"{model} frozen: {key} changed"
    if model == "resnet50":
        assert any("running_mean" in key for key in backbone)
        assert result["info"]["trainable_params"] == 2048 * 10 + 10
    head = [key for key in before if key.startswith(head_block + ".") and key.endswith("weight")]
    assert any(not torch.equal(before[key], after[key]) for key in head), f"{model} frozen: head did not train"
    assert result["info"]["trainable_params"] < result["info"]["total_params"]


@pytest.mark.parametrize("model", ["resnet50", "vgg16"])
def test_finetune_changes_the_backbone(model):
    before, after, result, head_block = _train_and_compare(_tiny_regime(model, "finetune", lr=0.05))
    first_conv = "conv1.weight" if model == "resnet50" else "features.0.weight"
    assert not torch.equal(before[first_conv], after[first_conv])
    if model == "resnet50":
        assert not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert result["info"]["trainable_params"] == result["info"]["total_params"]
