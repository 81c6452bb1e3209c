"""The configuration keys the image-classifier job reads, with their defaults and checks.

See ``workers/README.md`` for the table. Unknown keys are ignored with a warning (a search space
may carry keys for other purposes, but a misspelt key should not pass unnoticed); values arrive as
plain Python or numpy scalars from ConfigSpace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional

from workers.errors import JobSetupError

logger = logging.getLogger(__name__)

OBJECTIVES = ("val_loss", "val_error")
CACHE_CHOICES = ("auto", "off")
REGIMES = ("finetune", "frozen", "fc_frozen", "partial")  # see workers.regimes


@dataclass(frozen=True)
class ClassifierConfig:
    model: str = "resnet18"
    weights: str = "none"  # imagenet | none | path of a state-dict file
    regime: str = "finetune"  # finetune | frozen | fc_frozen | partial (workers.regimes)
    trainable_blocks: Optional[int] = None  # regime "partial": the last N backbone stages train
    backbone_lr_scale: float = 1.0  # backbone lr = lr * backbone_lr_scale; the head gets lr
    dropout: float = 0.0  # before the new output layer (0: none)
    label_smoothing: float = 0.0  # of the training loss only
    dataset: str = "digits"
    data_dir: Optional[str] = None  # dataset "folder" only
    image_size: int = 224
    augmentation: str = "none"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0
    batch_size: int = 32
    lr_schedule: str = "cosine"
    lr_step_size: Optional[int] = None  # lr_schedule "step"
    lr_gamma: float = 0.1  # lr_schedule "step" and "multistep"
    lr_milestones: Optional[str] = None  # lr_schedule "multistep": epochs, "10,20" (workers.schedules)
    lr_factor: float = 0.1  # lr_schedule "plateau"
    lr_patience: int = 2  # lr_schedule "plateau"
    warmup_epochs: int = 0  # linear warm-up, with every schedule
    early_stopping_patience: Optional[int] = None  # epochs without improvement; None or 0: off
    early_stopping_min_delta: float = 0.0
    restore_best: bool = False  # report (and keep) the best epoch's model, not the last one
    objective: str = "val_loss"
    split_seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2  # data sets without their own test split
    max_train_images: Optional[int] = None
    max_eval_images: Optional[int] = None  # caps validation and test sets (quick runs)
    strict_images: bool = False
    decoded_cache: str = "auto"  # auto | off: decode each split once into a uint8 memory map
    feature_cache: str = "auto"  # auto | off: frozen regime, backbone features computed once
    feature_views: int = 4  # augmented views per training image in the feature cache


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "yes", "1", "on"}:
            return True
        if lowered in {"false", "no", "0", "off", "none", ""}:
            return False
        raise JobSetupError(f"{key} {value!r}: not a boolean")
    return bool(value)


def _convert(key: str, kind: Any, value: Any) -> Any:
    if value is None:
        return None
    try:
        if kind in (int, "int", "Optional[int]"):
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if kind in (float, "float"):
            return float(value)
        if kind in (bool, "bool"):
            return _as_bool(key, value)
        return str(value)
    except (TypeError, ValueError):
        name = kind if isinstance(kind, str) else kind.__name__
        name = name.removeprefix("Optional[").removesuffix("]")
        expected = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(name, name)
        raise JobSetupError(f"{key} {value!r}: expected {expected}") from None


def read_config(config: Mapping[str, Any]) -> ClassifierConfig:
    """The job's settings from a sampled configuration (defaults for absent keys)."""
    values = {}
    for spec in fields(ClassifierConfig):
        if spec.name in config:
            values[spec.name] = _convert(spec.name, spec.type, config[spec.name])
    unknown = sorted(set(config) - {spec.name for spec in fields(ClassifierConfig)})
    if unknown:
        logger.warning("config keys the image classifier does not read (misspelt?): %s", ", ".join(unknown))
    settings = ClassifierConfig(**values)
    if settings.objective not in OBJECTIVES:
        raise JobSetupError(f"objective {settings.objective!r}: must be one of {', '.join(OBJECTIVES)}")
    for key in ("decoded_cache", "feature_cache"):  # YAML reads a bare off as false
        word = {"false": "off", "no": "off", "true": "auto", "yes": "auto", "on": "auto"}.get(getattr(settings, key).lower())
        if word:
            settings = replace(settings, **{key: word})
        if getattr(settings, key) not in CACHE_CHOICES:
            raise JobSetupError(f"{key} {getattr(settings, key)!r}: must be one of {', '.join(CACHE_CHOICES)}")
    if settings.feature_views < 1:
        raise JobSetupError(f"feature_views {settings.feature_views}: must be at least 1")
    if settings.batch_size < 1:
        raise JobSetupError(f"batch_size {settings.batch_size}: must be at least 1")
    _check_regularisation(settings)
    return settings


def _check_regularisation(settings: ClassifierConfig) -> None:
    """Regime, discriminative learning rates, dropout and label smoothing (workers.regimes)."""
    if settings.regime not in REGIMES:
        raise JobSetupError(f"regime {settings.regime!r}: must be one of {', '.join(REGIMES)}")
    if settings.regime == "partial" and (settings.trainable_blocks is None or settings.trainable_blocks < 1):
        raise JobSetupError(f"trainable_blocks {settings.trainable_blocks}: regime partial needs a whole number >= 1")
    if not settings.backbone_lr_scale > 0:
        raise JobSetupError(f"backbone_lr_scale {settings.backbone_lr_scale}: must be positive")
    for key in ("dropout", "label_smoothing"):
        if not 0 <= getattr(settings, key) < 1:
            raise JobSetupError(f"{key} {getattr(settings, key)}: must be in [0, 1)")
