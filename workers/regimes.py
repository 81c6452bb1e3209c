"""Training regimes: which parameters of a classifier train, which parts stay in eval mode, and the
optimizer's parameter groups.

The **classifier block** is the top-level child holding the head (the new output layer):
``classifier`` for VGG/AlexNet, ``fc`` for ResNet, ``heads`` for ViT. The **backbone** is the
rest. ``regime``:

* ``finetune``: every weight trains.
* ``frozen``: only the classifier block trains (feature extraction).
* ``fc_frozen``: the backbone and the new output layer train; the rest of the classifier block is
  frozen (seed 000, §3.2.3). Where the classifier block holds no weights but the output layer's
  (ResNet's ``fc``, DenseNet's and EfficientNet's ``classifier``) this trains what ``finetune``
  trains, and ``info["trains"]`` says so.
* ``partial`` with ``trainable_blocks: N``: the classifier block and the last ``N`` stages of the
  backbone train (:func:`backbone_stages`: ResNet's ``layer4``, ``layer3``, ...; VGG's and
  AlexNet's convolutional blocks, each ending at a ``MaxPool2d``; DenseNet's dense blocks, each
  with the transition or final norm after it; otherwise the children of a ``features`` sequence
  that hold parameters).

Frozen parts (:func:`frozen_subtrees`, at any depth) are put back in eval mode after every
``model.train()``, so their batch-norm running statistics stay as loaded (dropout layers hold no
parameters and keep training behaviour). :func:`parameter_groups`: the head group (the trainable
parameters of the classifier block) gets ``lr``, the backbone group ``lr * backbone_lr_scale``.
"""

from __future__ import annotations

from typing import Optional

import torchvision
from torch import nn

from workers.config import REGIMES
from workers.errors import JobSetupError


def classifier_block(head_name: str) -> str:
    """Name of the top-level child holding the output layer ``head_name``."""
    return head_name.split(".")[0]


def backbone_stages(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The backbone's stages in forward order, as (label, modules); empty when none are known."""
    if isinstance(model, torchvision.models.ResNet):
        return [(name, [getattr(model, name)]) for name in ("layer1", "layer2", "layer3", "layer4")]
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        return []
    layers = list(features)
    if isinstance(model, (torchvision.models.VGG, torchvision.models.AlexNet)):
        stages, start = [], 0
        for index, layer in enumerate(layers):
            if isinstance(layer, nn.MaxPool2d):
                stages.append((f"features[{start}:{index + 1}]", layers[start:index + 1]))
                start = index + 1
        return stages
    if isinstance(model, torchvision.models.DenseNet):  # a dense block with its transition (or the final norm5)
        names = [name for name, _ in features.named_children()]
        starts = [index for index, name in enumerate(names) if name.startswith("denseblock")]
        return [(f"features.{'+'.join(names[start:end])}", layers[start:end])
                for start, end in zip(starts, starts[1:] + [len(layers)])]
    return [(f"features.{index}", [layer]) for index, layer in enumerate(layers) if any(True for _ in layer.parameters())]


def _stage_word(model: nn.Module) -> str:
    return "convolutional blocks" if isinstance(model, (torchvision.models.VGG, torchvision.models.AlexNet)) else "stages"


def apply_regime(model: nn.Module, head_name: str, regime: str, trainable_blocks: Optional[int] = None,
                 model_name: str = "") -> str:
    """Set ``requires_grad`` for ``regime``; return what trains, in words (for ``info``)."""
    model_name = model_name or type(model).__name__
    block = classifier_block(head_name)
    if regime == "finetune":
        return "everything"
    if regime == "fc_frozen":
        model.get_submodule(block).requires_grad_(False)
        model.get_submodule(head_name).requires_grad_(True)
        if all(p.requires_grad for p in model.get_submodule(block).parameters()):
            return f"everything (fc_frozen = finetune for {model_name}: its {block} holds no weights but {head_name}'s)"
        return f"everything but {block}, except {head_name}"
    if regime not in ("frozen", "partial"):
        raise JobSetupError(f"regime {regime!r}: must be one of {', '.join(REGIMES)}")
    model.requires_grad_(False)
    model.get_submodule(block).requires_grad_(True)
    if regime == "frozen":
        return block
    stages = backbone_stages(model)
    if not stages:
        raise JobSetupError(f"regime partial: {model_name} has no known backbone stages (use ResNet, VGG, AlexNet "
                            f"or a model with a features sequence)")
    if trainable_blocks is None or not 1 <= trainable_blocks <= len(stages):
        raise JobSetupError(f"trainable_blocks {trainable_blocks}: regime partial with {model_name} needs 1 to "
                            f"{len(stages)} (its {_stage_word(model)})")
    trained = stages[-trainable_blocks:]
    for _, modules in trained:
        for module in modules:
            module.requires_grad_(True)
    return ", ".join([label for label, _ in trained] + [block])


def frozen_subtrees(model: nn.Module) -> list[nn.Module]:
    """The largest submodules holding parameters or buffers of which no parameter trains (the root excluded)."""
    frozen = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            params = list(child.parameters())
            if any(p.requires_grad for p in params):
                visit(child)
            elif params or any(True for _ in child.buffers()):
                frozen.append(child)

    visit(model)
    return frozen


def parameter_groups(model: nn.Module, head_name: str, lr: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """The trainable parameters as optimizer groups: ``head`` (the classifier block's) at ``lr``, then
    ``backbone`` (the rest) at ``lr * backbone_lr_scale``; empty groups are left out."""
    if not backbone_lr_scale > 0:
        raise JobSetupError(f"backbone_lr_scale {backbone_lr_scale}: must be positive (freeze parts with regime)")
    prefix = classifier_block(head_name) + "."
    head, backbone = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (head if name.startswith(prefix) else backbone).append(param)
    groups = [{"params": head, "lr": lr, "name": "head"},
              {"params": backbone, "lr": lr * backbone_lr_scale, "name": "backbone"}]
    return [group for group in groups if group["params"]]
