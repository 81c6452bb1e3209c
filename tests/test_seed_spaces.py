"""The shipped search spaces: each passes ``hpo space check``, and each seed-study space trains.

The training cases run ``hpo train SPACE --set ...`` as a real process for one epoch on digits,
at a small image size, on a few images and without pretrained weights (offline), in the regime
the seed study is about, and check the result line: a finite loss, one epoch, and a frozen or
partly frozen model that trains fewer parameters than it has.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
ALL_SPACES = sorted(SPACES.glob("*.yaml"))

# space -> (image size, extra --set overrides, whether the regime trains fewer parameters than the model has)
SEED_STUDIES = {
    "alexnet_caltech101": (64, ["optimizer=sgd", "nesterov=true", "lr_schedule=step", "lr_step_size=1"], False),
    "vgg16_caltech101_extended": (32, ["regime=fc_frozen", "backbone_lr_scale=0.1"], True),
    "resnet50_caltech101_extended": (32, ["regime=partial", "trainable_blocks=1", "lr_schedule=plateau"], True),
    "vgg11bn_cifar10": (32, ["dropout=0.3"], False),
    "resnet18_cifar10_partial": (32, ["regime=partial", "trainable_blocks=2"], True),
    "alexnet_features_dropout": (64, ["dropout=0.5", "lr_patience=2"], True),
}


def test_every_shipped_space_passes_space_check(run_hpo):
    assert len(ALL_SPACES) >= 9
    done = run_hpo("space", "check", *map(str, ALL_SPACES), timeout=120)
    assert done.returncode == 0, done.stderr
    for path in ALL_SPACES:
        assert f"{path}: ok:" in done.stdout, done.stdout


def test_every_seed_study_has_a_space_and_a_training_case():
    assert set(SEED_STUDIES) <= {path.stem for path in ALL_SPACES}


def train_result(stdout: str) -> dict:
    """The job's result from ``hpo train``'s output: a results-log line ``[id, budget, stamps, result, exc]``."""
    line = json.loads(stdout)
    return line[3] if isinstance(line, list) else line.get("result", line)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEED_STUDIES))
def test_seed_study_space_trains_one_epoch_on_digits(name, run_hpo, tmp_path):
    image_size, overrides, partly_frozen = SEED_STUDIES[name]
    sets = ["dataset=digits", f"image_size={image_size}", "max_train_images=32", "max_eval_images=20",
            "weights=none", *overrides]
    args = ["train", str(SPACES / f"{name}.yaml"), "--budget", "1", "--device", "cpu"]
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
    assert (trainable < total) == partly_frozen, (trainable, total)
