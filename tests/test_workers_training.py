"""The training job: budgets, schedule, objective, metrics, failures, devices."""

from __future__ import annotations

import math

import pytest
import torch

import workers.image_classifier as image_classifier
from hpo.errors import UserError
from hpo.jobs import is_failure
from workers.devices import resolve_device, training_settings
from workers.errors import JobSetupError
from workers.image_classifier import job_seed, run
from workers.optimization import build_optimizer, epochs_for_budget
from workers.schedules import build_schedule, lr_factor, make_spec
from workers_helpers import context, tiny

INFO_KEYS = {
    "status", "epochs", "budget", "loss_metric", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
    "test_loss", "test_accuracy", "history", "wall_time", "device", "trainable_params", "total_params",
    "skipped_images",
}
HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


@pytest.fixture(scope="module")
def short_and_full_runs():
    """The same configuration (same config id) for 1 epoch and for the max budget of 2 epochs."""
    config = tiny(lr=0.05, lr_schedule="cosine")
    short = run(config, context(budget=1, max_budget=2, config_id=(0, 0, 4)))
    full = run(config, context(budget=2, max_budget=2, config_id=(0, 0, 4)))
    return short, full


@pytest.mark.parametrize("budget, epochs", [(0.4, 1), (1, 1), (2.5, 3), (3.33, 3), (10.000000000000002, 10), (11.1, 11), (30, 30)])
def test_fractional_budgets_map_to_whole_epochs(budget, epochs):
    assert epochs_for_budget(budget) == epochs


def test_the_job_records_the_epochs_it_trained_for_a_fractional_budget():
    result = run(tiny(), context(budget=1.4, max_budget=3.33))
    assert result["info"]["epochs"] == 1 and len(result["info"]["history"]) == 1
    assert result["info"]["budget"] == 1.4


@pytest.mark.parametrize("kind, keys", [("cosine", {}), ("constant", {}), ("step", {"step_size": 10}),
                                        ("multistep", {"milestones": "5,20"}), ("cosine", {"warmup_epochs": 2})])
def test_the_schedule_of_a_short_budget_is_a_prefix_of_the_max_budget_schedule(kind, keys):
    spec = make_spec(kind, 30, **keys)
    full = [lr_factor(spec, e) for e in range(30)]
    for budget in (3.33, 10):
        epochs = epochs_for_budget(budget)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = build_schedule(optimizer, spec)
        seen = []
        for _ in range(epochs):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step(1.0)
        assert seen == pytest.approx([0.1 * f for f in full[:epochs]])
    if kind != "constant":
        assert full[-1] < full[0]


def test_cosine_decays_over_the_max_budget_not_the_job_budget():
    assert lr_factor(make_spec("cosine", 30), 0) == 1.0
    assert lr_factor(make_spec("cosine", 30), 15) == pytest.approx(0.5)
    assert lr_factor(make_spec("step", 30, step_size=10, gamma=0.1), 10) == pytest.approx(0.1)
    with pytest.raises(JobSetupError, match="lr_schedule"):
        make_spec("warm_restarts", 30)


def test_a_short_job_trains_exactly_the_first_epochs_of_the_max_budget_job(short_and_full_runs):
    short, full = short_and_full_runs
    assert short["info"]["history"][0]["lr"] == full["info"]["history"][0]["lr"] == 0.05
    assert full["info"]["history"][1]["lr"] == pytest.approx(0.05 * lr_factor(make_spec("cosine", 2), 1))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert short["info"]["history"][0][key] == full["info"]["history"][0][key], key
    assert short["info"]["seed"] == full["info"]["seed"] == job_seed(0, (0, 0, 4))


def test_test_metrics_are_measured_only_at_the_max_budget(short_and_full_runs):
    short, full = short_and_full_runs
    assert short["info"]["test_loss"] is None and short["info"]["test_accuracy"] is None
    assert math.isfinite(full["info"]["test_loss"]) and 0.0 <= full["info"]["test_accuracy"] <= 1.0
    assert full["info"]["test_images"] == 40


def test_every_info_key_is_filled_and_the_loss_is_the_final_validation_loss(short_and_full_runs):
    _, full = short_and_full_runs
    info = full["info"]
    assert INFO_KEYS <= set(info)
    assert info["status"] == "ok" and info["epochs"] == 2 and info["loss_metric"] == "val_loss"
    assert full["loss"] == info["val_loss"] == info["history"][-1]["val_loss"]
    assert [entry["epoch"] for entry in info["history"]] == [1, 2]
    assert all(set(entry) == HISTORY_KEYS for entry in info["history"])
    assert info["history"][0]["seconds"] <= info["history"][1]["seconds"] <= info["wall_time"]
    assert info["trainable_params"] == info["total_params"] > 10_000_000
    assert info["device"] == "cpu" and info["skipped_images"] == 0


def test_seeded_jobs_are_reproducible_and_the_config_id_changes_the_seed():
    first = run(tiny(), context(config_id=(1, 0, 2)))
    again = run(tiny(), context(config_id=(1, 0, 2)))
    assert first["loss"] == again["loss"]
    assert job_seed(0, (1, 0, 2)) != job_seed(0, (1, 0, 3)) != job_seed(1, (1, 0, 3))


def test_the_val_error_objective_is_one_minus_validation_accuracy():
    result = run(tiny(objective="val_error", optimizer="adamw", lr=1e-3), context())
    assert result["info"]["loss_metric"] == "val_error"
    assert result["loss"] == pytest.approx(1.0 - result["info"]["val_accuracy"])


def test_a_huge_learning_rate_diverges_into_a_failure_result():
    result = run(tiny(lr=1e6, momentum=0.9), context(budget=2, max_budget=2))
    assert result["loss"] is None and is_failure(result)
    info = result["info"]
    assert info["status"] == "failed" and info["reason"] == "diverged"
    assert "loss" in info["message"] and info["epochs"] == len(info["history"]) < 2
    assert all(value is None or math.isfinite(value) for entry in info["history"] for value in entry.values())


def test_cuda_out_of_memory_becomes_an_oom_failure_and_the_next_job_still_runs(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(image_classifier, "fit", out_of_memory)
        result = run(tiny(), context())
    assert result["info"]["reason"] == "oom" and "Tried to allocate" in result["info"]["message"]
    assert not is_failure(run(tiny(), context()))


@pytest.mark.parametrize(
    "name, kind, extra",
    [("sgd", torch.optim.SGD, {"nesterov": True}), ("adam", torch.optim.Adam, {}), ("adamw", torch.optim.AdamW, {})],
)
def test_optimizers(name, kind, extra):
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = build_optimizer(name, params, lr=0.1, weight_decay=1e-4, momentum=0.8, **extra)
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.8 and optimizer.param_groups[0]["nesterov"]
    with pytest.raises(JobSetupError, match="optimizer 'rmsprop'"):
        build_optimizer("rmsprop", params, lr=0.1)


def test_bad_config_values_are_config_failures_in_one_line():
    result = run(tiny(batch_size="many"), context())
    assert result["info"]["reason"] == "config" and "batch_size" in result["info"]["message"]
    assert run(tiny(objective="test_loss"), context())["info"]["reason"] == "config"


def test_cpu_training_settings_use_no_cuda_features():
    settings = training_settings(torch.device("cpu"))
    assert settings.amp_dtype is None and not settings.use_grad_scaler
    assert not settings.channels_last and not settings.pin_memory and not settings.cudnn_benchmark


def test_cuda_training_settings_pick_bf16_where_supported_else_fp16_with_a_scaler():
    bf16 = training_settings(torch.device("cuda:1"), bf16_supported=True)
    assert bf16.amp_dtype == torch.bfloat16 and not bf16.use_grad_scaler
    assert bf16.channels_last and bf16.cudnn_benchmark and bf16.pin_memory
    fp16 = training_settings(torch.device("cuda"), bf16_supported=False)
    assert fp16.amp_dtype == torch.float16 and fp16.use_grad_scaler


def test_device_is_pinned_by_the_context_and_cuda_is_refused_without_it():
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device(None).type == "cuda"
    else:
        assert resolve_device(None) == torch.device("cpu")
        with pytest.raises(UserError, match="cuda:1"):
            resolve_device("cuda:1")
    with pytest.raises(UserError, match="tpu9"):
        resolve_device("tpu9")
