"""The shipped search spaces for the image-classifier job: keys the job reads, the seed's settings."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from hpo.space import load_space
from workers.config import ClassifierConfig, read_config
from workers.models import classification_models

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
JOB_KEYS = {spec.name for spec in fields(ClassifierConfig)}


@pytest.mark.parametrize("name", sorted(path.stem for path in SPACES.glob("*.yaml")))
def test_every_hyperparameter_is_a_key_the_job_reads_and_the_default_config_parses(name):
    space = load_space(SPACES / f"{name}.yaml")
    assert space.job == "image_classifier"
    assert set(space.configspace.keys()) <= JOB_KEYS
    config = read_config(space.default_config())
    assert config.model in classification_models()


@pytest.mark.parametrize("name, model", [("vgg16_caltech101", "vgg16"), ("resnet50_caltech101", "resnet50")])
def test_caltech_spaces_reproduce_the_seed_experiment(name, model):
    space = load_space(SPACES / f"{name}.yaml")
    cs = space.configspace
    config = space.default_config()
    assert (config["model"], config["weights"], config["dataset"]) == (model, "imagenet", "caltech101")
    assert config["image_size"] == 224 and config["augmentation"] == "all"
    assert set(cs["regime"].choices) == {"finetune", "frozen"}
    assert set(cs["optimizer"].choices) == {"sgd", "adamw"}
    assert (cs["lr"].lower, cs["lr"].upper, cs["lr"].log) == (1e-5, 1e-1, True)
    assert (cs["weight_decay"].lower, cs["weight_decay"].upper, cs["weight_decay"].log) == (1e-6, 1e-1, True)
    assert (cs["momentum"].lower, cs["momentum"].upper) == (0.0, 0.99)
    assert [c.parent.name for c in cs.parent_conditions_of["momentum"]] == ["optimizer"]
    assert (space.budget.min_budget, space.budget.max_budget, space.budget.eta) == (3.33, 30, 3)


def test_quickstart_runs_offline_on_a_small_model():
    config = load_space(SPACES / "quickstart.yaml").default_config()
    assert config["dataset"] == "digits" and config["weights"] == "none"
    assert config["image_size"] <= 32


def test_unknown_config_keys_are_warned_about(caplog):
    import logging

    from workers.config import read_config

    with caplog.at_level(logging.WARNING, logger="workers.config"):
        settings = read_config({"lr": 0.1, "learning_rate": 0.5})
    assert settings.lr == 0.1
    assert "learning_rate" in caplog.text
