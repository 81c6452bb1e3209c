"""Regimes on real torchvision models: what trains, what stays bit-identical, batch norm of frozen
parts in eval mode; discriminative learning rates, dropout and label smoothing in the job."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision

from hpo.jobs import is_failure
from workers.image_classifier import execute, prepare
from workers.models import ClassifierModel, build_model
from workers.errors import JobSetupError
from workers.regimes import apply_regime, parameter_groups
from workers_helpers import context, tiny

# the last two backbone stages of each model, as parameter-name prefixes (partial, trainable_blocks 2)
LAST_TWO_STAGES = {
    "resnet18": ("layer3.", "layer4."), "resnet50": ("layer3.", "layer4."),
    "alexnet": tuple(f"features.{i}." for i in range(3, 13)),
    "vgg11_bn": tuple(f"features.{i}." for i in range(15, 29)),
    "vgg16": tuple(f"features.{i}." for i in range(17, 31)),
}
IMAGE_SIZE = {"alexnet": 64, "vgg11_bn": 32, "resnet18": 32}  # AlexNet needs at least 63 px


def should_train(model: str, regime: str, name: str) -> bool:
    """What each regime trains, written out per model family (the table in workers/README.md)."""
    block = "fc." if model.startswith("resnet") else "classifier."
    head = "fc." if model.startswith("resnet") else "classifier.6."
    if regime == "finetune":
        return True
    if regime == "frozen":
        return name.startswith(block)
    if regime == "fc_frozen":
        return not name.startswith(block) or name.startswith(head)
    return name.startswith(block) or name.startswith(LAST_TWO_STAGES[model])


def digests(model: torch.nn.Module) -> dict:
    """A hash of every parameter and buffer (no copy of a 100M-parameter model kept around)."""
    return {key: hashlib.blake2b(value.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes(),
                                 digest_size=16).hexdigest()
            for key, value in model.state_dict().items()}


REGIMES = [("finetune", {}), ("frozen", {}), ("fc_frozen", {}), ("partial", {"trainable_blocks": 2})]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "alexnet", "vgg11_bn"])
@pytest.mark.parametrize("regime, extra", REGIMES, ids=[r for r, _ in REGIMES])
def test_each_regime_trains_exactly_its_parameters_and_keeps_frozen_batch_norm_still(model, regime, extra):
    config = tiny(model=model, regime=regime, image_size=IMAGE_SIZE[model], max_train_images=32, max_eval_images=16,
                  batch_size=16, lr=0.05, dropout=0.2, label_smoothing=0.1, backbone_lr_scale=0.5, **extra)
    job = prepare(config, context(budget=1, max_budget=1))
    network = job.classifier.model
    names = [name for name, _ in network.named_parameters()]
    expected = {name for name in names if should_train(model, regime, name)}
    assert {name for name, p in network.named_parameters() if p.requires_grad} == expected
    optimized = {id(p) for group in job.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for name, p in network.named_parameters() if name in expected}  # no frozen weight
    frozen_norms = [module for part in job.classifier.frozen_modules for module in part.modules()
                    if isinstance(module, torch.nn.BatchNorm2d)]
    before = digests(network)
    result = execute(job)
    assert not is_failure(result), result["info"]
    after = digests(network)
    trainable, total = result["info"]["trainable_params"], result["info"]["total_params"]
    assert trainable == sum(p.numel() for name, p in network.named_parameters() if name in expected)
    assert total == sum(p.numel() for p in network.parameters())
    for name in names:
        assert (before[name] != after[name]) == (name in expected), f"{model} {regime}: {name}"
    job.classifier.train_mode()
    assert all(not m.training for m in frozen_norms)
    frozen_buffers = [key for key in before if key.endswith("running_mean") and key.rsplit(".", 1)[0] + ".weight" not in expected]
    assert all(before[key] == after[key] for key in frozen_buffers)
    if model != "alexnet" and regime in ("frozen", "partial"):
        assert frozen_norms and frozen_buffers  # there was batch norm to keep still
    if model == "resnet18" and regime == "fc_frozen":
        assert "fc_frozen = finetune" in result["info"]["trains"]


@pytest.mark.parametrize("model", ["vgg16", "resnet50"])
@pytest.mark.parametrize("regime, extra", REGIMES, ids=[r for r, _ in REGIMES])
def test_the_heavy_models_get_the_same_flags(model, regime, extra):
    built = build_model(model, num_classes=10, regime=regime, **extra)
    trainable = {name for name, p in built.model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in built.model.named_parameters() if should_train(model, regime, name)}
    block = "fc." if model.startswith("resnet") else "classifier."
    groups = {group["name"]: {id(p) for p in group["params"]}
              for group in parameter_groups(built.model, built.head_name, lr=0.1, backbone_lr_scale=0.1)}
    named = dict(built.model.named_parameters())
    assert groups.get("head", set()) == {id(named[n]) for n in trainable if n.startswith(block)}
    assert groups.get("backbone", set()) == {id(named[n]) for n in trainable if not n.startswith(block)}
    if model == "vgg16" and regime == "fc_frozen":  # the classifier's trainable part is its output layer alone
        assert groups["head"] == {id(p) for p in built.model.classifier[6].parameters()}
    built.train_mode()
    frozen = [m for m in built.model.modules() if isinstance(m, torch.nn.BatchNorm2d)
              and not any(p.requires_grad for p in m.parameters())]
    assert all(not m.training for m in frozen)
    if model == "resnet50" and regime == "partial":
        assert frozen and built.trains == "layer3, layer4, fc"


@pytest.fixture
def resnet50_file(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return str(path)


@pytest.mark.slow
def test_frozen_resnet50_from_a_weights_file_trains_only_fc(resnet50_file):
    job = prepare(tiny(model="resnet50", regime="frozen", weights=resnet50_file, image_size=32, max_train_images=32,
                       max_eval_images=16, batch_size=8, lr=0.05), context(budget=1, max_budget=1))
    before = digests(job.classifier.model)
    result = execute(job)
    assert not is_failure(result), result["info"]
    after = digests(job.classifier.model)
    assert [key for key in before if before[key] != after[key]] == ["fc.weight", "fc.bias"]
    assert result["info"]["trainable_params"] == 2048 * 10 + 10


def test_densenet_partial_counts_dense_blocks_with_their_transitions():
    model = torchvision.models.densenet121(num_classes=10)
    assert apply_regime(model, "classifier", "partial", trainable_blocks=1) == \
        "features.denseblock4+norm5, classifier"
    trained = {name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad and name.startswith("features.")}
    assert trained == {"denseblock4", "norm5"}
    model = torchvision.models.densenet121(num_classes=10)
    apply_regime(model, "classifier", "partial", trainable_blocks=2)
    trained = {name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad and name.startswith("features.")}
    assert trained == {"denseblock3", "transition3", "denseblock4", "norm5"}
    with pytest.raises(JobSetupError, match="needs 1 to 4"):
        apply_regime(torchvision.models.densenet121(num_classes=10), "classifier", "partial", trainable_blocks=5)


def test_backbone_lr_scale_gives_the_backbone_its_share_of_lr_under_a_schedule():
    for optimizer in ("sgd", "adamw"):
        config = tiny(regime="partial", trainable_blocks=1, backbone_lr_scale=0.1, lr=0.02, optimizer=optimizer,
                      lr_schedule="cosine", max_train_images=16, max_eval_images=16, image_size=16)
        job = prepare(config, context(budget=1, max_budget=4))
        groups = {group["name"]: group for group in job.optimizer.param_groups}
        assert groups["head"]["lr"] == pytest.approx(0.02) and groups["backbone"]["lr"] == pytest.approx(0.002)
        head = {id(p) for p in job.classifier.model.fc.parameters()}
        assert {id(p) for p in groups["head"]["params"]} == head
        assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in job.classifier.model.layer4.parameters()}
        result = execute(job)
        assert not is_failure(result), result["info"]
        assert groups["head"]["lr"] < 0.02  # the schedule moved both groups ...
        assert groups["backbone"]["lr"] == pytest.approx(groups["head"]["lr"] * 0.1)  # ... by the same factor
        assert result["info"]["history"][0]["lr"] == pytest.approx(0.02)  # history: the head's lr


def test_dropout_sits_before_the_new_output_layer_and_keeps_its_state_dict_keys():
    plain = build_model("alexnet", num_classes=4)
    dropped = build_model("alexnet", num_classes=4, dropout=0.5)
    assert plain.model.state_dict().keys() == dropped.model.state_dict().keys()
    head = dropped.model.classifier[6]
    features = torch.ones(64, 4096)
    head.train()
    assert not torch.equal(head(features), head(features))  # a random mask each call
    head.eval()
    assert torch.equal(head(features), torch.nn.functional.linear(features, head.weight, head.bias))


def test_label_smoothing_changes_the_training_loss_only():
    from workers.devices import training_settings
    from workers.training import evaluate, train_one_epoch

    targets = torch.arange(8) % 3
    batches = [(torch.nn.functional.one_hot(targets, 3).float(), targets)]
    settings = training_settings(torch.device("cpu"))
    reported = {}
    for smoothing in (0.0, 0.3):
        net = torch.nn.Linear(3, 3)
        with torch.no_grad():  # confident and right: smoothing raises the loss
            net.weight.copy_(5 * torch.eye(3))
            net.bias.zero_()
        classifier = ClassifierModel(net, "tiny", "", "finetune", [], label_smoothing=smoothing)
        train = train_one_epoch(classifier, batches, torch.optim.SGD(net.parameters(), lr=0.0), settings)[0]
        reported[smoothing] = (train, evaluate(classifier, batches, settings)[0])
    logits = 5 * batches[0][0]
    plain = torch.nn.functional.cross_entropy(logits, targets).item()
    smoothed = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.3).item()
    assert smoothed > 2 * plain
    assert reported[0.0] == pytest.approx((plain, plain))
    assert reported[0.3] == pytest.approx((smoothed, plain))  # validation: plain cross-entropy


def test_frozen_batch_norm_stays_still_over_epochs_after_evaluation_switched_the_model_to_eval():
    """evaluate() puts the whole model in eval mode; every later training step must again have the frozen
    parts in eval mode and the trained stages in training mode."""
    job = prepare(tiny(regime="partial", trainable_blocks=1, max_train_images=32, max_eval_images=16),
                  context(budget=3, max_budget=3))
    model = job.classifier.model
    modes = []  # (frozen bn1 training?, trained layer4 bn training?) at every training step

    def record(module, inputs):
        if torch.is_grad_enabled():
            modes.append((model.bn1.training, model.layer4[1].bn2.training))

    model.bn1.register_forward_pre_hook(record)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("bn1.", "layer3."))}
    result = execute(job)
    assert not is_failure(result) and result["info"]["epochs"] == 3, result["info"]
    assert len(modes) == 3 * 2 and set(modes) == {(False, True)}  # 32 images, batches of 16, 3 epochs
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen_before.items())


def test_the_feature_cache_is_refused_where_dropout_sits_between_the_frozen_part_and_the_head():
    """GoogLeNet drops its pooled features before fc in training mode: cached features cannot do that.
    Dropout in the trained head (the new layer's, VGG's classifier) is fine."""
    from workers.feature_cache import backbone_dropout, supports_feature_cache

    torch.manual_seed(0)
    sample = torch.randn(2, 3, 64, 64)
    googlenet = build_model("googlenet", num_classes=4, regime="frozen", dropout=0.3)
    assert backbone_dropout(googlenet) == ["dropout"] and not supports_feature_cache(googlenet, sample)
    for name in ("resnet18", "alexnet"):
        head_only = build_model(name, num_classes=4, regime="frozen", dropout=0.3)
        assert backbone_dropout(head_only) == [] and supports_feature_cache(head_only, sample)


@pytest.mark.slow
def test_dropout_in_the_head_acts_the_same_on_cached_features_as_on_images():
    """Frozen regime: the new layer's dropout sits after the cached features, so the cached and the
    uncached job train alike (same masks: dropout draws from the per-epoch seeded generator)."""
    from workers.image_classifier import run

    config = tiny(regime="frozen", max_train_images=32, max_eval_images=16, lr=0.05)
    results = {(dropout, cache): run({**config, "dropout": dropout, "feature_cache": cache}, context(budget=2, max_budget=2))
               for dropout in (0.0, 0.5) for cache in ("auto", "off")}
    assert results[(0.5, "auto")]["info"]["input"] == "features" and results[(0.5, "off")]["info"]["input"] != "features"
    for dropout in (0.0, 0.5):
        cached, uncached = (results[(dropout, cache)]["info"]["history"] for cache in ("auto", "off"))
        for a, b in zip(cached, uncached):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    losses = {dropout: results[(dropout, "auto")]["info"]["history"][0]["train_loss"] for dropout in (0.0, 0.5)}
    assert losses[0.5] != pytest.approx(losses[0.0], rel=1e-4)  # the dropout did act
