"""Search-space YAML: every feature builds the right ConfigSpace, every mistake gets one clear line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import ConfigSpace as CS
import pytest

from hpo.errors import UserError
from hpo.space import load_space, parse_space

ROOT = Path(__file__).resolve().parents[1]

FULL = """
name: demo
description: every feature once
job: synthetic
seed: 3
budget: {min: 3.33, max: 30, eta: 3, iterations: 8}
hyperparameters:
  model: resnet50
  image_size: {type: constant, value: 224}
  pretrained: true
  lr: {type: float, low: 1e-5, high: 1.0e-1, log: true, default: 1.0e-3}
  batch_size: {type: int, low: 16, high: 128, log: true, default: 32}
  optimizer: {type: categorical, choices: [sgd, adamw], default: sgd}
  augmentation: {type: ordinal, sequence: [none, flip_jitter, all], default: none}
  momentum: {type: float, low: 0.0, high: 0.99, default: 0.9, when: {optimizer: sgd}}
  nesterov: {type: categorical, choices: [false, true], when: {optimizer: [sgd]}}
  regime: {type: categorical, choices: [finetune, frozen]}
forbidden:
  - {optimizer: adamw, regime: frozen}
"""


def test_every_feature_builds_the_configspace():
    space = parse_space(FULL, "demo.yaml")
    cs = space.configspace
    assert isinstance(cs["model"], CS.Constant) and cs["model"].value == "resnet50"
    assert cs["image_size"].value == 224
    assert cs["lr"].log and cs["lr"].lower == pytest.approx(1e-5) and cs["lr"].default_value == pytest.approx(1e-3)
    assert isinstance(cs["batch_size"], CS.UniformIntegerHyperparameter) and cs["batch_size"].log
    assert list(cs["optimizer"].choices) == ["sgd", "adamw"]
    assert isinstance(cs["augmentation"], CS.OrdinalHyperparameter)
    assert {c.child.name for c in cs.conditions} == {"momentum", "nesterov"}
    assert len(cs.forbidden_clauses) == 1
    assert (space.budget.min_budget, space.budget.max_budget, space.budget.eta, space.budget.iterations) == (
        3.33, 30.0, 3.0, 8)
    assert space.job == "synthetic" and space.seed == 3 and space.name == "demo"


def test_conditions_and_forbidden_hold_in_samples():
    cs = parse_space(FULL, "demo.yaml").configspace
    for config in cs.sample_configuration(200):
        values = dict(config)
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        assert not (values["optimizer"] == "adamw" and values["regime"] == "frozen")


def test_describe_is_json_native_and_marks_constants():
    entries = {e["name"]: e for e in parse_space(FULL, "demo.yaml").describe()}
    assert entries["lr"]["log"] and entries["lr"]["searched"]
    assert not entries["model"]["searched"]
    assert entries["momentum"]["parent_conditions"] == [{"parent": "optimizer", "values": ["sgd"]}]
    assert entries["augmentation"]["choices"] == ["none", "flip_jitter", "all"]
    assert all(type(c) is str for c in entries["optimizer"]["choices"])


def test_config_with_overrides_follows_conditions():
    space = parse_space(FULL, "demo.yaml")
    config = space.config_with({"optimizer": "adamw", "lr": 0.01})
    assert config["optimizer"] == "adamw" and config["lr"] == 0.01 and "momentum" not in config
    assert type(config["optimizer"]) is str
    with pytest.raises(UserError, match="momentum: inactive"):
        space.config_with({"optimizer": "adamw", "momentum": 0.5})
    with pytest.raises(UserError, match="not a legal value"):
        space.config_with({"lr": 5.0})
    with pytest.raises(UserError, match="no such hyperparameter"):
        space.config_with({"learning_rate": 0.1})
    with pytest.raises(UserError, match="forbidden"):
        space.config_with({"optimizer": "adamw", "regime": "frozen"})


def test_shipped_spaces_load():
    spaces = sorted((ROOT / "search_spaces").glob("*.yaml"))
    assert spaces, "no search spaces shipped"
    for path in spaces:
        load_space(path)


# --- one test per kind of mistake: `hpo space check` exits 2 with one line naming file, key, problem ---

BAD = {
    "not_yaml": ("hyperparameters: [unclosed", "not valid YAML"),
    "unknown_type": ("hyperparameters:\n  lr: {type: loguniform, low: 1, high: 2}", "lr: unknown type 'loguniform'"),
    "missing_bounds": ("hyperparameters:\n  lr: {type: float, low: 0.1}", "lr: float range needs 'high'"),
    "low_not_below_high": ("hyperparameters:\n  lr: {type: float, low: 0.5, high: 0.5}", "lr: range needs low < high"),
    "log_low_not_positive": ("hyperparameters:\n  lr: {type: float, low: 0, high: 0.1, log: true}",
                             "lr: log-scale range needs low > 0 (got 0)"),
    "default_outside_range": ("hyperparameters:\n  lr: {type: float, low: 0.1, high: 0.5, default: 0.9}",
                              "lr: default 0.9 outside range"),
    "empty_choices": ("hyperparameters:\n  optimizer: {type: categorical, choices: []}",
                      "optimizer: choices must be a non-empty list"),
    "condition_unknown_parent": (
        "hyperparameters:\n  momentum: {type: float, low: 0, high: 1, when: {optimiser: sgd}}",
        "momentum: when: unknown parent 'optimiser'"),
    "condition_impossible_value": (
        "hyperparameters:\n  optimizer: {type: categorical, choices: [sgd, adamw]}\n"
        "  momentum: {type: float, low: 0, high: 1, when: {optimizer: rmsprop}}",
        "momentum: when: optimizer cannot take 'rmsprop'"),
    "unknown_top_level_key": ("hyperparameter:\n  lr: 0.1", "hyperparameter: unknown top-level key"),
    "budget_min_above_max": ("budget: {min: 30, max: 3}\nhyperparameters:\n  lr: 0.1",
                             "budget: min must be <= max (got min 30 > max 3)"),
    "budget_eta_not_above_one": ("budget: {eta: 1}\nhyperparameters:\n  lr: 0.1", "budget.eta: must be > 1 (got 1)"),
    "default_not_a_choice": ("hyperparameters:\n  optimizer: {type: categorical, choices: [sgd], default: adam}",
                             "optimizer: default 'adam' is not one of the choices"),
    "forbidden_unknown_name": ("hyperparameters:\n  lr: 0.1\nforbidden:\n  - {opt: sgd}",
                               "forbidden[0]: unknown hyperparameter 'opt'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_yaml_is_one_clear_line(case, tmp_path, run_hpo):
    text, expected = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(textwrap.dedent(text) + "\n")
    proc = run_hpo("space", "check", str(path), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith(f"hpo: {path}: "), lines[0]
    assert expected in lines[0]


@pytest.mark.parametrize("command", ["run", "master"])
def test_run_and_master_reject_bad_yaml_before_starting(command, tmp_path, run_hpo):
    path = tmp_path / "bad.yaml"
    path.write_text("hyperparameters:\n  lr: {type: float, low: 0, high: 0.1, log: true}\n")
    args = [command, str(path), "--results", str(tmp_path / "out")]
    if command == "master":
        args += ["--run-id", "x", "--nameserver", "127.0.0.1:1"]
    proc = run_hpo(*args, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"hpo: {path}: lr: log-scale range needs low > 0 (got 0)"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_bad_budget_flags_are_rejected(tmp_path, run_hpo):
    proc = run_hpo("run", str(ROOT / "tests/spaces/synthetic.yaml"), "--min-budget", "10", "--max-budget", "5",
                   "--results", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2 and "min must be <= max" in proc.stderr and "Traceback" not in proc.stderr


def test_space_check_summarises(run_hpo):
    proc = run_hpo("space", "check", str(ROOT / "tests/spaces/synthetic.yaml"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "budgets 1, 3, 9" in proc.stdout and "momentum" in proc.stdout


def test_config_with_constants_overrides_a_constant_for_one_job():
    space = parse_space(FULL, "demo.yaml")
    config = space.config_with({"model": "vgg16", "image_size": 64, "pretrained": False}, constants=True)
    assert (config["model"], config["image_size"], config["pretrained"]) == ("vgg16", 64, False)
    assert space.config_with({"image_size": 224}, constants=True)["image_size"] == 224
    with pytest.raises(UserError, match="not a legal value"):  # a search still refuses it
        space.config_with({"model": "vgg16"})
    with pytest.raises(UserError, match=r"--set modell: no such hyperparameter \(known: augmentation, batch_size, image_size, lr, model"):
        space.config_with({"modell": "vgg16"}, constants=True)


def test_an_overridden_constant_that_is_a_parent_still_decides_its_children():
    text = FULL.replace("optimizer: {type: categorical, choices: [sgd, adamw], default: sgd}", "optimizer: sgd")
    text = text.replace("forbidden:\n  - {optimizer: adamw, regime: frozen}\n", "")
    space = parse_space(text, "demo.yaml")
    assert "momentum" in space.config_with({}, constants=True)
    config = space.config_with({"optimizer": "adamw"}, constants=True)
    assert config["optimizer"] == "adamw" and "momentum" not in config and "nesterov" not in config


def test_check_shows_each_hyperparameter_and_the_runs_cost():
    from hpo.space_summary import cost_lines, hyperparameter_lines

    space = parse_space(FULL, "demo.yaml")
    lines = hyperparameter_lines(space)
    text = "\n".join(lines)
    assert lines.index("  searched:") < lines.index("  constant:")
    assert "lr            float       1e-05 .. 0.1, log scale (default 0.001)" in text
    assert "batch_size    int         16 .. 128, log scale (default 32)" in text
    assert "optimizer     categorical sgd, adamw (default sgd)" in text
    assert "augmentation  ordinal     none < flip_jitter < all (default none)" in text
    assert "momentum      float       0 .. 0.99 (default 0.9); when optimizer = sgd" in text
    assert "\n    image_size    224" in text and "\n    pretrained    True" in text
    cost = cost_lines(space.budget)  # 3.33, 10, 30 (eta 3), 8 iterations: brackets of 3 kinds
    assert cost[1] == "    iterations 1, 4, 7: 9 x 3.33 ep, 3 x 10 ep, 1 x 30 ep: 13 jobs, 68 epochs (87) each"
    assert cost[2] == "    iterations 2, 5, 8: 3 x 10 ep, 1 x 30 ep: 4 jobs, 50 epochs (60) each"
    assert cost[3] == "    iterations 3, 6: 3 x 30 ep: 3 jobs, 90 epochs (90) each"
    assert cost[4] == f"    in all: {3 * 13 + 3 * 4 + 2 * 3} jobs, {3 * 68 + 3 * 50 + 2 * 90} epochs ({3 * 87 + 3 * 60 + 2 * 90})"


def test_space_check_prints_the_summary(run_hpo):
    proc = run_hpo("space", "check", "search_spaces/quickstart.yaml", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "    lr                float       0.0001 .. 0.1, log scale (default 0.01)" in proc.stdout
    assert "    regime            finetune" in proc.stdout
    assert "    in all: 17 jobs, 36 epochs (45)" in proc.stdout
