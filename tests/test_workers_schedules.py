"""Learning-rate schedules and warm-up (per-epoch rates against their definitions, state saved and
restored), early stopping, and the config errors of both. Continuation of whole jobs with each
schedule, early stopping and restore_best: tests/test_continuation.py."""

from __future__ import annotations

import io
import math

import pytest
import torch

from hpo.jobs import is_failure
from workers.early_stopping import EarlyStopping, early_stopping_from_config, validation_objective
from workers.errors import JobSetupError
from workers.image_classifier import run
from workers.schedules import build_schedule, lr_factor, make_spec, parse_milestones
from workers_helpers import context, tiny


def rates(spec, epochs: int, objectives=None, lrs=(0.1,)) -> list:
    """The rate of every parameter group during each of ``epochs`` epochs (objectives: one per epoch)."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])
    schedule = build_schedule(optimizer, spec)
    seen = []
    for epoch in range(epochs):
        seen.append([group["lr"] for group in optimizer.param_groups])
        schedule.step(objectives[epoch] if objectives else 1.0)
    return [row[0] for row in seen] if len(lrs) == 1 else seen


def test_constant_step_and_multistep_rates_per_epoch():
    assert rates(make_spec("constant", 5), 5) == [0.1] * 5
    step = rates(make_spec("step", 6, step_size=2, gamma=0.5), 6)
    assert step == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    multistep = rates(make_spec("multistep", 8, milestones="2, 5", gamma=0.1), 7)
    assert multistep == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001])


def test_cosine_decays_over_the_max_budget_for_every_parameter_group():
    groups = rates(make_spec("cosine", 4), 5, lrs=(0.1, 0.001))
    for epoch, (head, backbone) in enumerate(groups):
        factor = 0.5 * (1 + math.cos(math.pi * min(epoch, 4) / 4))
        assert head == pytest.approx(0.1 * factor) and backbone == pytest.approx(0.001 * factor)
    assert groups[2][0] == pytest.approx(0.05) and groups[4][0] == pytest.approx(0.0)


def test_plateau_reduces_after_more_than_patience_epochs_without_improvement():
    spec = make_spec("plateau", 10, factor=0.5, patience=1)
    objectives = [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7, 0.8]
    # best 0.9 at epoch 2; epochs 3 and 4 are worse (2 > patience 1): halved from epoch 5 on;
    # epoch 5 worse, epoch 6 best again, epochs 7 and 8 worse: halved again from epoch 9
    assert rates(spec, 9, objectives) == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025])


def test_warmup_is_linear_and_multiplies_every_schedule():
    assert rates(make_spec("constant", 6, warmup_epochs=3), 5) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    spec = make_spec("step", 6, step_size=2, gamma=0.5, warmup_epochs=1)
    assert rates(spec, 4) == pytest.approx([0.05, 0.1, 0.05, 0.05])
    cosine = make_spec("cosine", 10, warmup_epochs=4)
    assert [lr_factor(cosine, e) for e in range(6)] == pytest.approx(
        [(e + 1) / 5 * 0.5 * (1 + math.cos(math.pi * e / 10)) if e < 4 else 0.5 * (1 + math.cos(math.pi * e / 10))
         for e in range(6)])


def test_plateau_ignores_the_warmup_epochs():
    spec = make_spec("plateau", 10, factor=0.1, patience=0, warmup_epochs=2)
    # the warm-up epochs get worse (1, 2) without a reduction; epoch 3 sets the best, epoch 4 is worse
    assert rates(spec, 5, [1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx([1 / 30, 2 / 30, 0.1, 0.1, 0.01])


@pytest.mark.parametrize("kind, keys", [
    ("plateau", {"factor": 0.5, "patience": 1, "warmup_epochs": 1}),
    ("multistep", {"milestones": [2, 4], "warmup_epochs": 2}),
    ("cosine", {}),
])
def test_a_schedule_restored_from_its_saved_state_goes_on_as_the_uninterrupted_one(kind, keys):
    spec = make_spec(kind, 8, **keys)
    objectives = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5, 0.6]
    expected = rates(spec, 8, objectives)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build_schedule(optimizer, spec)
    for value in objectives[:4]:
        schedule.step(value)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # as checkpoints are read: plain values only
    fresh_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    fresh = build_schedule(fresh_optimizer, spec)
    fresh_optimizer.load_state_dict(saved["optimizer"])
    fresh.load_state_dict(saved["scheduler"])
    continued = []
    for value in objectives[4:]:
        continued.append(fresh_optimizer.param_groups[0]["lr"])
        fresh.step(value)
    assert continued == expected[4:]  # exactly, not approximately
    if kind == "plateau":
        assert expected[4] < expected[1]  # a reduction happened before the save


def test_milestones_as_a_list_or_a_string():
    assert parse_milestones("10,20") == parse_milestones("[10, 20]") == parse_milestones([10, 20]) == (10, 20)
    assert parse_milestones(15) == (15,) and parse_milestones(None) == ()


def test_early_stopping_stops_after_patience_epochs_without_improvement_by_more_than_min_delta():
    stopping = EarlyStopping(patience=2, min_delta=0.05)
    for epoch, value in enumerate([1.0, 0.9, 0.88, 0.87], start=1):  # 0.88 and 0.87: by less than 0.05
        stopping.update(epoch, value)
    assert stopping.stopped and stopping.best_epoch == 2 and stopping.best == 0.9
    assert "2 epochs" in stopping.stop_reason and "epoch 2" in stopping.stop_reason
    restored = EarlyStopping(patience=2, min_delta=0.05)
    restored.load_state_dict(torch.load(_saved(stopping.state_dict()), weights_only=True))
    assert restored == stopping
    never = EarlyStopping()  # off: tracks the best epoch only
    for epoch, value in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        never.update(epoch, value)
    assert not never.stopped and never.best_epoch == 1 and never.epochs_since_best == 3


def _saved(value) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return buffer


def test_patience_zero_or_absent_is_off_and_the_objective_is_val_loss_or_val_error():
    assert early_stopping_from_config(type("C", (), {"early_stopping_patience": 0})()).patience is None
    entry = {"val_loss": 0.7, "val_accuracy": 0.75}
    assert validation_objective(entry, "val_loss") == 0.7 and validation_objective(entry, "val_error") == 0.25


@pytest.mark.parametrize("overrides, key", [
    ({"lr_schedule": "warm_restarts"}, "lr_schedule"),
    ({"lr_schedule": "step"}, "lr_step_size"),
    ({"lr_schedule": "step", "lr_step_size": 0}, "lr_step_size"),
    ({"lr_schedule": "multistep"}, "lr_milestones"),
    ({"lr_schedule": "multistep", "lr_milestones": "5,3"}, "lr_milestones"),
    ({"lr_schedule": "multistep", "lr_milestones": "5,x"}, "lr_milestones"),
    ({"lr_schedule": "multistep", "lr_milestones": "2.5"}, "lr_milestones"),
    ({"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": -0.1}, "lr_gamma"),
    ({"lr_schedule": "plateau", "lr_factor": 1.5}, "lr_factor"),
    ({"lr_schedule": "plateau", "lr_patience": -1}, "lr_patience"),
    ({"warmup_epochs": -1}, "warmup_epochs"),
    ({"early_stopping_patience": -2}, "early_stopping_patience"),
    ({"early_stopping_min_delta": -0.1}, "early_stopping_min_delta"),
    ({"restore_best": "maybe"}, "restore_best"),
])
def test_bad_schedule_and_stopping_keys_are_one_line_config_failures_naming_the_key(overrides, key):
    result = run(tiny(**overrides), context())
    info = result["info"]
    assert is_failure(result) and info["reason"] == "config" and info["epochs"] == 0
    assert info["message"].startswith(key) and "\n" not in info["message"]


def test_make_spec_refuses_what_the_job_refuses():
    with pytest.raises(JobSetupError, match="^lr_milestones"):
        make_spec("multistep", 10, milestones="0,3")


def test_restore_best_measures_the_test_metrics_on_the_best_epochs_weights():
    """min_delta 100: epoch 1 stays the best; at the max budget the test metrics are epoch 1's weights',
    which a 1-epoch job (same seed, constant rate: the same first epoch) measures too."""
    config = tiny(lr_schedule="constant", lr=0.05, max_train_images=32, max_eval_images=16)
    first = run(config, context(budget=1, max_budget=1))
    best = run({**config, "restore_best": True, "early_stopping_min_delta": 100.0}, context(budget=2, max_budget=2))
    last = run(config, context(budget=2, max_budget=2))
    assert best["info"]["epochs"] == 2 and best["info"]["restored_best_epoch"] == 1
    assert best["info"]["test_loss"] == pytest.approx(first["info"]["test_loss"], rel=1e-6)
    assert best["loss"] == pytest.approx(first["loss"], rel=1e-6)
    assert last["info"]["test_loss"] != pytest.approx(first["info"]["test_loss"], rel=1e-6)  # not the last epoch's


def test_early_stopping_and_restore_best_follow_the_val_error_objective(tmp_path):
    from hpo.checkpoints import latest

    config = tiny(objective="val_error", restore_best=True, lr=0.05, max_train_images=32, max_eval_images=16)
    result = run(config, context(budget=2, max_budget=2, checkpoint_dir=str(tmp_path)))
    info = result["info"]
    errors = [1.0 - entry["val_accuracy"] for entry in info["history"]]
    assert info["best_epoch"] == errors.index(min(errors)) + 1
    assert result["loss"] == pytest.approx(min(errors)) and result["loss"] == pytest.approx(1 - info["val_accuracy"])
    stopping = torch.load(latest(str(tmp_path))[1], weights_only=True)["stopping"]
    assert stopping["best"] == pytest.approx(min(errors))  # the tracker saw errors, not cross-entropies
