"""Classification models from torchvision, their weights, head and training regime.

* The model comes from ``torchvision.models.get_model(name)``; any classification model name
  works (``torchvision.models.list_models(module=torchvision.models)``).
* Weights: ``imagenet`` (torchvision's default ImageNet weights for the model, downloaded once
  into the torch cache, ``$TORCH_HOME/hub/checkpoints``), ``none`` (random initialisation), or
  the path of a state-dict file.
* The head (the last ``Linear``, or for SqueezeNet the last 1x1 ``Conv2d``, producing the
  ImageNet classes) is replaced by a fresh layer with the data set's number of classes; with
  ``dropout > 0`` the new layer drops its input first (:class:`DropoutLinear`, same state-dict keys).
* Weights-file rule: the model is built with its ImageNet head, the head is replaced, then the
  file is loaded. Every backbone tensor must be present with the right shape; the file's head
  tensors are loaded when their shapes fit the new head (a file saved from a model trained on
  the same number of classes), otherwise they are ignored and the new head stays freshly
  initialised (e.g. a 1000-class ImageNet checkpoint).
* Regimes (``finetune``, ``frozen``, ``fc_frozen``, ``partial``): see :mod:`workers.regimes`;
  frozen parts stay in eval mode during training, so batch-norm running statistics do not move.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torchvision
from torch import nn

from workers.config import REGIMES
from workers.errors import JobSetupError, WeightsUnavailable
from workers.locks import exclusive_lock
from workers.regimes import apply_regime, frozen_subtrees

logger = logging.getLogger(__name__)

IMAGENET_CLASSES = 1000


@dataclass
class ClassifierModel:
    """A model with its replaced head, which parts train, and its training loss's label smoothing."""

    model: nn.Module
    name: str
    head_name: str  # dotted module name of the output layer, e.g. "classifier.6"
    regime: str
    frozen_modules: list  # frozen submodules, at any depth (eval mode during training)
    trains: str = "everything"  # what the regime trains, in words (info["trains"])
    label_smoothing: float = 0.0  # of the training loss only (validation and test: plain cross-entropy)

    def train_mode(self) -> None:
        """``model.train()``, keeping frozen parts in eval mode (batch-norm statistics fixed)."""
        self.model.train()
        for module in self.frozen_modules:
            module.eval()

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        params = list(self.model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def classification_models() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def find_head(model: nn.Module) -> str:
    """Name of the output layer: the last Linear (or 1x1 Conv2d) producing the ImageNet classes."""
    head = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == IMAGENET_CLASSES:
            head = name
        elif isinstance(module, nn.Conv2d) and module.out_channels == IMAGENET_CLASSES and module.kernel_size == (1, 1):
            head = name
    if head is None:
        raise JobSetupError(f"model {type(model).__name__}: no {IMAGENET_CLASSES}-class output layer to replace")
    return head


class DropoutLinear(nn.Linear):
    """A ``Linear`` layer that applies dropout to its input (state-dict keys as ``nn.Linear``'s)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))


class DropoutConv2d(nn.Conv2d):
    """A 1x1 ``Conv2d`` output layer that applies dropout to its input (SqueezeNet's head)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))


def replace_head(model: nn.Module, head_name: str, num_classes: int, dropout: float = 0.0) -> None:
    """Swap the output layer ``head_name`` for a new one with ``num_classes`` outputs (dropping its
    input with probability ``dropout``; 0: a plain layer)."""
    parent_name, _, attr = head_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    if isinstance(old, nn.Linear):
        bias = old.bias is not None
        new: nn.Module = (DropoutLinear(old.in_features, num_classes, bias, dropout) if dropout
                          else nn.Linear(old.in_features, num_classes, bias=bias))
    else:
        new = (DropoutConv2d(old.in_channels, num_classes, dropout) if dropout
               else nn.Conv2d(old.in_channels, num_classes, kernel_size=1))
    setattr(parent, attr, new)


def _imagenet_model(name: str) -> nn.Module:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    target = checkpoints / os.path.basename(weights.url)
    try:
        with exclusive_lock(checkpoints / ".download.lock"):
            return torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a truncated file a RuntimeError
        raise WeightsUnavailable(
            f"weights 'imagenet' for {name}: cannot get {weights.url} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); download it elsewhere and copy it to {target} "
            f"(set TORCH_HOME to change the cache), or set weights to a state-dict file path"
        ) from None


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise WeightsUnavailable(f"weights {str(path)!r}: no such file (use imagenet, none, or a state-dict file path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of any kind: the file is not a state dict
        raise WeightsUnavailable(f"weights {str(path)!r}: cannot load as a state dict ({type(exc).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"weights {str(path)!r}: does not hold a state dict")
    return state


def load_weights_file(model: nn.Module, head_name: str, path: Path) -> None:
    """Load a state-dict file into ``model`` (its head already replaced), by the rule in the module doc."""
    state = _read_state_dict(path)
    own = model.state_dict()
    head_prefix = head_name + "."
    for key in [k for k in state if k.startswith(head_prefix)]:
        if key not in own or own[key].shape != state[key].shape:
            logger.info("weights %s: not loading %s %s (new head)", path, key, tuple(state[key].shape))
            del state[key]
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise WeightsUnavailable(
                f"weights {str(path)!r}: {key} has shape {tuple(value.shape)}, {name_of(model)} needs {tuple(own[key].shape)}"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(head_prefix)]
    if missing or unexpected:
        shown = ", ".join((list(missing) + list(unexpected))[:3])
        raise WeightsUnavailable(
            f"weights {str(path)!r}: does not fit {name_of(model)} "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {shown})"
        )


def name_of(model: nn.Module) -> str:
    return type(model).__name__


def check_model_name(name: str) -> None:
    """Raise a one-line ``JobSetupError`` unless ``name`` is a torchvision classification model."""
    if name not in classification_models():
        raise JobSetupError(f"model {name!r}: not a torchvision classification model (e.g. resnet50, vgg16, resnet18)")


def build_model(name: str, num_classes: int, weights: Optional[str] = "none", regime: str = "finetune",
                trainable_blocks: Optional[int] = None, dropout: float = 0.0) -> ClassifierModel:
    """The torchvision model ``name`` with ``weights``, a ``num_classes`` head (after ``dropout``), and
    ``regime`` applied (``partial``: the last ``trainable_blocks`` backbone stages train too)."""
    check_model_name(name)
    if regime not in REGIMES:
        raise JobSetupError(f"regime {regime!r}: must be one of {', '.join(REGIMES)}")
    weights = "none" if weights in (None, "", "none", "None") else str(weights)
    if weights == "imagenet":
        model = _imagenet_model(name)
    else:
        model = torchvision.models.get_model(name, weights=None)
    head_name = find_head(model)
    replace_head(model, head_name, num_classes, dropout)
    if weights not in ("none", "imagenet"):
        load_weights_file(model, head_name, Path(weights).expanduser())
    trains = apply_regime(model, head_name, regime, trainable_blocks, name)
    return ClassifierModel(model, name, head_name, regime, frozen_subtrees(model), trains)
