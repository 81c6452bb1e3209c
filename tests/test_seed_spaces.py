"""The shipped search spaces: each passes ``hpo space check``, and each seed-study space trains.

The training cases run ``hpo train SPACE --set ... --json`` as a real process for one epoch on
digits, at a small image size, on a few images and without pretrained weights (offline), in the
regime the seed study is about, and check the result line: a finite loss, one epoch, and a frozen
or partly frozen model that trains fewer parameters than it has. ``--set`` refuses names a space
does not hold, so SPACE is a copy of the shipped file with ``max_train_images`` and
``max_eval_images`` added as constants; everything else is overridden with ``--set``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torchvision

from hpo.space import load_space
from workers.regimes import backbone_stages

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
ALL_SPACES = sorted(SPACES.glob("*.yaml"))

# space -> (image size, extra --set overrides, info entries the result must hold); the regime's
# model trains fewer parameters than it has where the entries name a "trains" other than "everything"
SEED_STUDIES = {
    "alexnet_caltech101": (64, ["optimizer=sgd", "nesterov=true", "lr_schedule=step", "lr_step_size=1"],
                           {"trains": "everything"}),
    "vgg16_caltech101_extended": (32, ["regime=fc_frozen", "backbone_lr_scale=0.1"], {}),
    "resnet50_caltech101_extended": (32, ["regime=partial", "trainable_blocks=1", "lr_schedule=plateau"],
                                     {"trains": "layer4, fc"}),
    "vgg11bn_cifar10": (32, ["dropout=0.3"], {"trains": "everything", "best_epoch": 1, "restored_best_epoch": 1,
                                              "stopped_early": False}),
    "resnet18_cifar10_partial": (32, ["regime=partial", "trainable_blocks=2"], {"trains": "layer3, layer4, fc"}),
    "alexnet_features_dropout": (64, ["dropout=0.5", "lr_patience=2"], {"trains": "classifier"}),
}


def test_every_shipped_space_passes_space_check(run_hpo):
    assert len(ALL_SPACES) >= 9
    done = run_hpo("space", "check", *map(str, ALL_SPACES), timeout=120)
    assert done.returncode == 0, done.stderr
    for path in ALL_SPACES:  # each file is summarised (the summary's format is hpo space check's)
        assert str(path) in done.stdout, done.stdout


def test_every_seed_study_has_a_space_and_a_training_case():
    assert set(SEED_STUDIES) <= {path.stem for path in ALL_SPACES}


def train_result(stdout: str) -> dict:
    """The job's result from ``hpo train --json``: a results-log line ``[id, budget, stamps, result, exc]``."""
    return json.loads(stdout)[3]


def with_few_images(name: str, directory: Path, train_images: int = 32, eval_images: int = 20) -> Path:
    """A copy of the shipped space ``name`` in ``directory`` with the image caps added as constants."""
    text = (SPACES / f"{name}.yaml").read_text()
    assert "\nhyperparameters:\n" in text and "max_train_images" not in text
    text = text.replace("\nhyperparameters:\n", f"\nhyperparameters:\n  max_train_images: {train_images}\n"
                        f"  max_eval_images: {eval_images}\n", 1)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEED_STUDIES))
def test_seed_study_space_trains_one_epoch_on_digits(name, run_hpo, tmp_path):
    image_size, overrides, expected = SEED_STUDIES[name]
    sets = ["dataset=digits", f"image_size={image_size}", "weights=none", *overrides]
    args = ["train", str(with_few_images(name, tmp_path)), "--budget", "1", "--device", "cpu", "--json"]
    for item in sets:
        args += ["--set", item]
    env = {"HPO_CACHE_DIR": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch"),
           "HPO_DATA_ROOT": str(tmp_path / "data"), "OMP_NUM_THREADS": "2"}
    done = run_hpo(*args, timeout=300, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = train_result(done.stdout)
    info = result["info"]
    assert math.isfinite(result["loss"]), info
    assert info["epochs"] == 1
    assert len(info["history"]) == 1
    trainable, total = info["trainable_params"], info["total_params"]
    assert 0 < trainable <= total
    assert {key: info.get(key) for key in expected} == expected
    assert (trainable < total) == (info["trains"] != "everything"), (trainable, total, info["trains"])


@pytest.mark.parametrize("path", [p for p in ALL_SPACES if "trainable_blocks" in p.read_text()], ids=lambda p: p.stem)
def test_trainable_blocks_range_is_the_models_stages(path):
    space = load_space(path)
    hp = space.configspace["trainable_blocks"]
    with torch.device("meta"):  # the architecture only: no memory, no initialisation
        model = torchvision.models.get_model(space.default_config()["model"])
    assert (hp.lower, hp.upper) == (1, len(backbone_stages(model)))
