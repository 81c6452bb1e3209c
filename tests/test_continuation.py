"""Continuation from checkpoints: exact for the image classifier and the synthetic job, safe with
broken checkpoints, kept tidy by the master, and used by a job run again after its worker died."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hpbandster.optimizers.iterations import SuccessiveHalving

import workers.image_classifier as image_classifier
import workers.synthetic as synthetic
from hpo.checkpoints import CheckpointKeeper, checkpoint_path, checkpoints, config_directory, latest, prune, save_atomic
from hpo.jobs import JobContext
from hpo.worker import JobWorker, WorkerSettings
from tests.conftest import SPACES
from tests.test_faults import cluster_factory, slow_space, wait_until  # noqa: F401  (cluster_factory: a fixture)
from tests.test_service import read_lines
from workers_helpers import context, tiny

SYNTHETIC = str(SPACES / "synthetic.yaml")
CONFIG = tiny(lr=0.05, lr_schedule="cosine", augmentation="flip_jitter")


def without_seconds(history: list) -> list:
    return [{key: value for key, value in entry.items() if key != "seconds"} for entry in history]


def saved_model(directory: Path) -> dict:
    return torch.load(latest(directory)[1], map_location="cpu", weights_only=True)["model"]


# --- the image classifier -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def continued_and_from_scratch(tmp_path_factory):
    """One configuration: 1 epoch then continued to 3, and 3 from scratch (max budget 3, CPU)."""
    continued, scratch = tmp_path_factory.mktemp("continued"), tmp_path_factory.mktemp("scratch")
    short = image_classifier.run(CONFIG, context(budget=1, max_budget=3, checkpoint_dir=str(continued)))
    long = image_classifier.run(CONFIG, context(budget=3, max_budget=3, checkpoint_dir=str(continued),
                                                previous_budget=1))
    full = image_classifier.run(CONFIG, context(budget=3, max_budget=3, checkpoint_dir=str(scratch)))
    return short, long, full, continued, scratch


def test_one_epoch_continued_to_three_equals_three_from_scratch_bit_for_bit(continued_and_from_scratch):
    short, long, full, continued, scratch = continued_and_from_scratch
    assert short["info"]["epochs_trained"] == 1 and short["info"]["continued_from"] == 0
    assert long["info"]["continued_from"] == 1 and long["info"]["epochs_trained"] == 2
    assert long["info"]["epochs"] == full["info"]["epochs"] == 3 and full["info"]["continued_from"] == 0
    assert long["loss"] == full["loss"]
    assert without_seconds(long["info"]["history"]) == without_seconds(full["info"]["history"])
    assert long["info"]["history"][0] == short["info"]["history"][0]  # the first epoch is the one trained before
    assert long["info"]["test_loss"] == full["info"]["test_loss"]
    a, b = saved_model(continued), saved_model(scratch)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert [epochs for epochs, _ in checkpoints(continued)] == [3]  # older checkpoints are pruned
    assert "checkpoint_warning" not in long["info"]


def test_a_corrupt_checkpoint_means_from_scratch_with_a_warning(continued_and_from_scratch, tmp_path):
    _, _, full, _, _ = continued_and_from_scratch
    checkpoint_path(tmp_path, 1, "pt").write_bytes(b"PK\x03\x04 not really a zip file")
    result = image_classifier.run(CONFIG, context(budget=3, max_budget=3, checkpoint_dir=str(tmp_path),
                                                  previous_budget=1))
    info = result["info"]
    assert info["continued_from"] == 0 and info["epochs_trained"] == 3
    assert "unreadable" in info["checkpoint_warning"] and "from scratch" in info["checkpoint_warning"]
    assert result["loss"] == full["loss"]  # nothing of the broken file was used


def test_a_checkpoint_of_another_configuration_is_not_continued(continued_and_from_scratch, tmp_path):
    _, _, _, continued, _ = continued_and_from_scratch
    other = tmp_path / "other"
    other.mkdir()
    checkpoint_path(other, 1, "pt").write_bytes(latest(continued)[1].read_bytes())  # another lr, same model
    result = image_classifier.run(tiny(lr=0.01), context(budget=1, max_budget=3, checkpoint_dir=str(other)))
    assert result["info"]["continued_from"] == 0
    assert "another configuration" in result["info"]["checkpoint_warning"]


def test_a_missing_checkpoint_that_was_expected_is_warned_about(tmp_path):
    result = image_classifier.run(CONFIG, context(budget=1, max_budget=3, checkpoint_dir=str(tmp_path / "none"),
                                                  previous_budget=1))
    assert result["info"]["continued_from"] == 0 and "no checkpoint" in result["info"]["checkpoint_warning"]


def test_without_a_checkpoint_directory_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = image_classifier.run(CONFIG, context(budget=1, max_budget=3))
    assert result["info"]["continued_from"] == 0 and result["info"]["epochs_trained"] == 1
    assert list(tmp_path.iterdir()) == []


# --- schedules, early stopping and restore_best keep continuation exact ---------------------------

SMALL = tiny(lr=0.05, max_train_images=32, max_eval_images=16, augmentation="flip_jitter")
ONE_THREAD = {"torch_threads": 1}  # several times faster on a busy 2-core machine; restored after each test


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield ONE_THREAD
    torch.set_num_threads(threads)


def saved_checkpoint(directory: Path) -> dict:
    return torch.load(latest(directory)[1], map_location="cpu", weights_only=True)


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [
    {"lr_schedule": "constant"},
    {"lr_schedule": "step", "lr_step_size": 1, "lr_gamma": 0.5},
    {"lr_schedule": "multistep", "lr_milestones": "1,2", "lr_gamma": 0.3},
    {"lr_schedule": "plateau", "lr_patience": 0, "lr_factor": 0.5},
    {"lr_schedule": "cosine", "warmup_epochs": 1, "early_stopping_patience": 5},
])  # cosine alone: test_one_epoch_continued_to_three_equals_three_from_scratch_bit_for_bit
def test_every_schedule_continued_from_one_epoch_to_three_equals_three_from_scratch(schedule, tmp_path, one_thread):
    config = {**SMALL, **schedule}
    continued, scratch = tmp_path / "continued", tmp_path / "scratch"
    image_classifier.run(config, context(budget=1, max_budget=3, checkpoint_dir=str(continued), options=one_thread))
    long = image_classifier.run(config, context(budget=3, max_budget=3, checkpoint_dir=str(continued),
                                                previous_budget=1, options=one_thread))
    full = image_classifier.run(config, context(budget=3, max_budget=3, checkpoint_dir=str(scratch), options=one_thread))
    assert long["info"]["continued_from"] == 1 and long["info"]["epochs_trained"] == 2
    assert "checkpoint_warning" not in long["info"] and full["info"]["epochs"] == 3
    assert long["loss"] == full["loss"]
    assert without_seconds(long["info"]["history"]) == without_seconds(full["info"]["history"])
    a, b = saved_checkpoint(continued), saved_checkpoint(scratch)
    assert same_weights(a["model"], b["model"]) and a["scheduler"] == b["scheduler"]
    rates = [entry["lr"] for entry in full["info"]["history"]]
    if schedule["lr_schedule"] == "plateau":  # the validation loss rises at this rate: reduced after epoch 2,
        assert rates == [0.05, 0.05, 0.025]  # so the continued job had to restore the plateau's state
    if schedule.get("warmup_epochs"):
        assert rates[0] == pytest.approx(0.05 / 2) and rates[1] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi / 3)))


@pytest.fixture(scope="module")
def stopped_early(tmp_path_factory):
    """early_stopping_min_delta 100: epoch 1 is the best and stays so; patience 1 stops after epoch 2.
    One configuration: 1 epoch, continued to budget 3 (stops at 2), promoted to 9 (trains nothing);
    and budget 3 from scratch."""
    config = {**SMALL, "early_stopping_patience": 1, "early_stopping_min_delta": 100.0, "restore_best": True}
    continued, scratch = tmp_path_factory.mktemp("stopped"), tmp_path_factory.mktemp("stopped_scratch")
    threads = torch.get_num_threads()
    one = image_classifier.run(config, context(budget=1, max_budget=9, checkpoint_dir=str(continued),
                                               options=ONE_THREAD))
    after_one = saved_checkpoint(continued)
    three = image_classifier.run(config, context(budget=3, max_budget=9, checkpoint_dir=str(continued),
                                                 previous_budget=1, options=ONE_THREAD))
    nine = image_classifier.run(config, context(budget=9, max_budget=9, checkpoint_dir=str(continued),
                                                previous_budget=3, options=ONE_THREAD))
    full = image_classifier.run(config, context(budget=3, max_budget=9, checkpoint_dir=str(scratch),
                                                options=ONE_THREAD))
    torch.set_num_threads(threads)
    return one, after_one, three, nine, full, continued, scratch


@pytest.mark.slow
def test_a_job_that_stops_early_records_why_and_reports_its_best_epoch(stopped_early):
    one, after_one, three, _, full, continued, scratch = stopped_early
    assert not one["info"]["stopped_early"] and one["info"]["best_epoch"] == 1
    for result in (three, full):
        info = result["info"]
        assert info["stopped_early"] is True and info["epochs"] == 2 and len(info["history"]) == 2
        assert "no improvement" in info["stop_reason"] and info["best_epoch"] == info["restored_best_epoch"] == 1
        first = info["history"][0]
        assert result["loss"] == info["val_loss"] == first["val_loss"] != info["history"][1]["val_loss"]
        assert info["train_loss"] == first["train_loss"] and info["val_accuracy"] == first["val_accuracy"]
    assert three["info"]["epochs_trained"] == 1 and three["loss"] == full["loss"]
    assert without_seconds(three["info"]["history"]) == without_seconds(full["info"]["history"])
    a, b = saved_checkpoint(continued), saved_checkpoint(scratch)
    assert a["stopping"] == b["stopping"] and a["stopping"]["stopped"] and a["stopping"]["best_epoch"] == 1
    assert same_weights(a["last_model"], b["last_model"])  # the last epoch's: training continues from there
    assert same_weights(a["model"], after_one["model"]) and same_weights(a["model"], after_one["last_model"])
    assert not same_weights(a["model"], a["last_model"])  # the kept (reported) model is epoch 1's, not epoch 2's


@pytest.mark.slow
def test_a_promoted_job_whose_checkpoint_stopped_early_trains_no_further(stopped_early):
    _, _, three, nine, _, continued, _ = stopped_early
    info = nine["info"]
    assert info["epochs_trained"] == 0 and info["continued_from"] == 2 and info["epochs"] == 2
    assert info["already_stopped"] is True and info["stopped_early"] is True
    assert nine["loss"] == three["loss"] and info["history"] == three["info"]["history"]
    assert [epochs for epochs, _ in checkpoints(continued)] == [2]
    assert math.isfinite(info["test_loss"])  # at the max budget, measured on the best epoch's weights


# --- regimes, discriminative learning rates, dropout and label smoothing keep continuation exact ---

REGULARISED = [
    {"regime": "partial", "trainable_blocks": 1, "backbone_lr_scale": 0.1, "dropout": 0.3, "label_smoothing": 0.1,
     "optimizer": "adamw", "lr": 0.01},
    {"model": "mobilenet_v3_small", "image_size": 32, "regime": "fc_frozen", "backbone_lr_scale": 0.5,
     "dropout": 0.2, "label_smoothing": 0.2, "optimizer": "sgd", "nesterov": True, "lr": 0.05},
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", REGULARISED, ids=["resnet18-partial", "mobilenet-fc_frozen"])
def test_regimes_and_regularisation_continue_exactly(overrides, tmp_path):
    """Dropout draws from torch's generator, seeded per epoch and saved in the checkpoint: continuing
    from epoch 1 to 3 still equals 3 epochs from scratch, bit for bit."""
    config = tiny(max_train_images=32, max_eval_images=16, augmentation="flip_jitter", **overrides)
    continued, scratch = tmp_path / "continued", tmp_path / "scratch"
    short = image_classifier.run(config, context(budget=1, max_budget=3, checkpoint_dir=str(continued)))
    long = image_classifier.run(config, context(budget=3, max_budget=3, checkpoint_dir=str(continued),
                                                previous_budget=1))
    full = image_classifier.run(config, context(budget=3, max_budget=3, checkpoint_dir=str(scratch)))
    assert long["info"]["continued_from"] == 1 and "checkpoint_warning" not in long["info"]
    assert long["loss"] == full["loss"] and long["info"]["test_loss"] == full["info"]["test_loss"]
    assert without_seconds(long["info"]["history"]) == without_seconds(full["info"]["history"])
    a, b = saved_model(continued), saved_model(scratch)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    undropped = image_classifier.run({**config, "dropout": 0.0}, context(budget=1, max_budget=3))
    assert undropped["info"]["history"][0]["train_loss"] != short["info"]["history"][0]["train_loss"]


# --- the synthetic job and the files --------------------------------------------------------------


def synthetic_context(budget: float, directory: Path | None, **kwargs) -> JobContext:
    return JobContext(budget=budget, max_budget=9, min_budget=1, config_id=(0, 0, 1),
                      checkpoint_dir=str(directory) if directory else None, **kwargs)


def test_the_synthetic_job_continues_exactly_and_survives_a_torn_checkpoint(tmp_path):
    config = {"lr": 0.01, "optimizer": "sgd"}
    synthetic.run(config, synthetic_context(3, tmp_path))
    continued = synthetic.run(config, synthetic_context(9, tmp_path, previous_budget=3))
    scratch = synthetic.run(config, synthetic_context(9, None))
    assert continued["info"]["continued_from"] == 3 and continued["info"]["epochs_trained"] == 6
    assert continued["loss"] == scratch["loss"]
    assert without_seconds(continued["info"]["history"]) == without_seconds(scratch["info"]["history"])
    checkpoint_path(tmp_path, 9, "json").write_text('{"fingerprint": ')  # torn
    again = synthetic.run(config, synthetic_context(9, tmp_path))
    assert again["info"]["continued_from"] == 0 and "unreadable" in again["info"]["checkpoint_warning"]
    assert again["loss"] == scratch["loss"]


def test_atomic_saves_latest_and_prune(tmp_path):
    directory = config_directory(tmp_path / "root", (2, 0, 11))
    assert directory.name == "2_0_11" and latest(directory) is None
    for epochs in (1, 3, 9):
        save_atomic(checkpoint_path(directory, epochs, "json"), lambda fh, e=epochs: fh.write(str(e).encode()))
    assert latest(directory)[0] == 9 and latest(directory, at_most=5)[0] == 3
    def crash(fh) -> None:
        fh.write(b"half a checkpoint")
        raise RuntimeError("the job died while saving")

    with pytest.raises(RuntimeError):
        save_atomic(checkpoint_path(directory, 27, "json"), crash)
    assert latest(directory)[0] == 9 and sorted(p.name for p in directory.iterdir()) == [
        "epoch-00001.json", "epoch-00003.json", "epoch-00009.json"]  # no temporary file left behind
    prune(directory, checkpoint_path(directory, 3, "json"))
    assert [e for e, _ in checkpoints(directory)] == [3, 9]


# --- the master's housekeeping --------------------------------------------------------------------


def make_iteration(index: int, num_configs: list, budgets: list) -> SuccessiveHalving:
    counter = itertools.count()
    return SuccessiveHalving(HPB_iter=index, num_configs=num_configs, budgets=budgets,
                             config_sampler=lambda budget: ({"x": next(counter)}, {}))


def run_stage(iteration, root: Path, losses: dict) -> list:
    """Run the jobs the iteration schedules now (its stage is decided only at the next
    ``get_next_run``), writing a checkpoint for each; returns their ids."""
    scheduled = []
    while (job := iteration.get_next_run()) is not None:
        scheduled.append(job)
    for config_id, config, budget in scheduled:
        directory = config_directory(root, config_id)
        save_atomic(checkpoint_path(directory, int(budget), "json"), lambda fh: fh.write(b"{}"))
        loss = losses.get(config_id, 1.0)
        job = SimpleNamespace(id=config_id, kwargs={"config": config, "budget": budget}, timestamps={},
                              result=None if loss is None else {"loss": loss, "info": {}}, exception=None)
        iteration.register_result(job)
    return [config_id for config_id, _, _ in scheduled]


@pytest.mark.parametrize("policy", ["best", "all", "none"])
def test_checkpoints_go_once_a_configuration_can_no_longer_be_promoted(policy, tmp_path):
    root = tmp_path / "checkpoints"
    keeper = CheckpointKeeper(root, policy, max_budget=3)
    first = make_iteration(0, [3, 1], [1, 3])
    losses = {(0, 0, 0): 0.5, (0, 0, 1): 0.2, (0, 0, 2): None}  # (0, 0, 2) failed
    assert len(run_stage(first, root, losses)) == 3
    if policy != "all":
        shutil.rmtree(root / "0_0_2")  # as if the failed job never wrote a checkpoint
    assert keeper.sweep([first]) == []  # so nothing was deleted, and nothing is counted
    # the stage is not decided yet, but the failed configuration can never be promoted
    assert {p.name for p in root.iterdir()} == ({"0_0_0", "0_0_1", "0_0_2"} if policy == "all" else {"0_0_0", "0_0_1"})
    assert run_stage(first, root, {(0, 0, 1): 0.4}) == [(0, 0, 1)]  # decides the stage: 0_0_1 promoted
    keeper.sweep([first])
    assert {p.name for p in root.iterdir()} == ({"0_0_0", "0_0_1", "0_0_2"} if policy == "all" else {"0_0_1"})
    second = make_iteration(1, [1], [3])
    run_stage(second, root, {(1, 0, 0): 0.1})  # better at the max budget
    first.get_next_run(), second.get_next_run()  # both iterations finish: COMPLETED
    keeper.sweep([first, second])
    best = keeper.finish([first, second])
    left = {p.name for p in root.iterdir()} if root.exists() else set()
    if policy == "best":
        assert left == {"1_0_0"} and best["config_id"] == [1, 0, 0] and best["loss"] == 0.1
        assert Path(best["path"]).name == "epoch-00003.json" and Path(best["path"]).is_file()
    elif policy == "all":
        assert left == {"0_0_0", "0_0_1", "0_0_2", "1_0_0"} and best["config_id"] == [1, 0, 0]
    else:
        assert left == set() and best is None


def test_a_worker_refuses_a_checkpoint_root_outside_its_work_root(tmp_path):
    worker = JobWorker(WorkerSettings(run_id="ck", work_dir=str(tmp_path / "work")), host="127.0.0.1")
    config = {"lr": 0.01, "optimizer": "sgd"}
    base = {"job": "synthetic", "max_budget": 9, "min_budget": 1}
    refused = worker.compute((0, 0, 0), config=config, budget=1.0, working_directory=str(tmp_path / "work"),
                             context={**base, "checkpoint_root": str(tmp_path / "elsewhere")})
    assert refused["loss"] is None and "checkpoint directory" in refused["info"]["message"]
    ok = worker.compute((0, 0, 3), config=config, budget=3.0, working_directory=str(tmp_path / "work"),
                        context={**base, "checkpoint_root": str(tmp_path / "work" / "ck"), "previous_budget": 1.0})
    assert math.isfinite(ok["loss"]) and (tmp_path / "work" / "ck" / "0_0_3" / "epoch-00003.json").is_file()
    assert "no checkpoint" in ok["info"]["checkpoint_warning"]  # it was told budget 1 had finished
    shared = JobWorker(WorkerSettings(run_id="ck", work_dir=str(tmp_path / "work"),
                                      checkpoint_dir=str(tmp_path / "shared")), host="127.0.0.1")
    allowed = shared.compute((0, 0, 0), config=config, budget=1.0, working_directory=str(tmp_path / "work"),
                             context={**base, "checkpoint_root": str(tmp_path / "shared" / "ck")})
    assert math.isfinite(allowed["loss"])


# --- whole runs (real processes) ------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["best", "all", "none"])
def test_promoted_configurations_train_only_the_missing_epochs(policy, tmp_path, run_hpo):
    results = tmp_path / "run"
    proc = run_hpo("run", SYNTHETIC, "--workers", "2", "--results", str(results), "--run-id", f"cont-{policy}",
                   "--iterations", "2", "--no-progress", "--keep-checkpoints", policy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = read_lines(results / "results.json")
    first_budget = {}
    for config_id, budget, _, result, _ in sorted(lines, key=lambda line: line[1]):
        info = result["info"]
        key = tuple(config_id)
        assert info["epochs"] == round(budget) == len(info["history"])
        assert info["continued_from"] == (round(first_budget[key]) if key in first_budget else 0)
        assert info["epochs_trained"] == info["epochs"] - info["continued_from"]
        assert "checkpoint_warning" not in info
        first_budget[key] = budget
    assert any(r[3]["info"]["continued_from"] for r in lines)
    meta = json.loads((results / "run.json").read_text())
    root = results / "checkpoints"
    assert meta["checkpoint_root"] == str(root.resolve()) and meta["keep_checkpoints"] == policy
    at_max = {tuple(r[0]): r[3]["loss"] for r in lines if r[1] == 9}
    best_id = min(at_max, key=at_max.get)
    if policy == "none":
        assert not root.exists() and "best_model" not in meta
        return
    assert meta["best_model"]["config_id"] == list(best_id) and meta["best_model"]["loss"] == at_max[best_id]
    kept = Path(meta["best_model"]["path"])
    assert kept.is_file() and kept.parent == config_directory(root, best_id) and kept.name == "epoch-00009.json"
    assert f"best model: {kept}" in proc.stdout
    names = {p.name for p in root.iterdir()}
    if policy == "best":
        assert names == {kept.parent.name}
        report = subprocess.run([sys.executable, "-m", "hpo.report", str(results)], capture_output=True, text=True,
                                timeout=120)
        assert report.returncode == 0 and f"kept in {kept}" in report.stdout, report.stderr
    else:
        assert names == {"_".join(map(str, r[0])) for r in lines}
        assert all(len(list((root / name).iterdir())) == 1 for name in names)  # only the latest of each


def test_a_job_run_again_after_its_worker_died_continues_from_its_checkpoint(tmp_path, cluster_factory):
    """One worker; it is killed during the budget-9 job once that job saved a few epochs; a second
    worker runs the job again, from the last checkpoint."""
    cluster = cluster_factory(slow_space(tmp_path, 0.4), iterations=1)
    cluster.start_nameserver()
    victim = cluster.start_worker()
    master = cluster.start_master()
    root = cluster.results / "checkpoints"

    def killable():
        if " at budget 9" not in cluster.log("w1").read_text():
            return None
        saved = [latest(d) for d in root.iterdir()] if root.exists() else []
        return max((found[0] for found in saved if found), default=0) >= 5

    wait_until(killable, 90, "the budget-9 job to save 5 epochs")
    victim.send_signal(signal.SIGKILL)
    saved = max(latest(d)[0] for d in root.iterdir() if latest(d))
    cluster.start_worker()
    assert master.wait(timeout=120) == 0, cluster.log("m").read_text()[-3000:]
    line = next(r for r in read_lines(cluster.results / "results.json") if r[1] == 9)
    info = line[3]["info"]
    assert info["attempt"] == 2 and info["lost_attempts"]
    assert saved <= info["continued_from"] < 9 and info["epochs_trained"] == 9 - info["continued_from"]
    assert info["epochs"] == len(info["history"]) == 9



@pytest.mark.parametrize("flags, message", [
    (["--checkpoint-dir", "FILE"], "checkpoints cannot be written there"),
    (["--no-checkpoints", "--keep-checkpoints", "all"], "--no-checkpoints and --keep-checkpoints: choose one"),
    (["--keep-checkpoints", "some"], "invalid choice"),
])
def test_bad_checkpoint_flags_are_one_line_and_change_nothing(flags, message, tmp_path, run_hpo):
    (tmp_path / "FILE").write_text("not a directory")
    flags = [str(tmp_path / "FILE") if flag == "FILE" else flag for flag in flags]
    proc = run_hpo("run", SYNTHETIC, "--results", str(tmp_path / "run"), "--no-progress", *flags, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_a_resumed_run_keeps_its_checkpoint_settings(tmp_path, run_hpo):
    results = tmp_path / "run"
    assert run_hpo("run", SYNTHETIC, "--results", str(results), "--iterations", "1", "--no-progress",
                   "--keep-checkpoints", "none").returncode == 0
    meta = json.loads((results / "run.json").read_text())
    (results / "run.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    proc = run_hpo("run", "--resume", str(results), "--keep-checkpoints", "all", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("hpo: --keep-checkpoints: a resumed run keeps the checkpoint "
                                                     "settings in its run.json")


def test_a_resumed_master_keeps_the_checkpoints_it_still_needs(tmp_path, cluster_factory):
    """The master is killed mid-run and resumed: the replayed iterations delete nothing a promoted
    configuration still needs; every promotion continues from its checkpoint, and the best is kept."""
    cluster = cluster_factory(slow_space(tmp_path, 0.1))
    cluster.start_nameserver()
    cluster.start_worker()
    cluster.start_worker()
    master = cluster.start_master("--min-workers", "2")
    results = cluster.results / "results.json"
    wait_until(lambda: results.exists() and len(results.read_text().splitlines()) >= 11, 90, "11 results")
    master.kill()
    master.wait(timeout=10)
    resumed = cluster.start_master(resume=True, name="m2")
    assert resumed.wait(timeout=150) == 0, cluster.log("m2").read_text()[-3000:]
    lines = read_lines(results)
    first_budget = {}
    for config_id, budget, _, result, _ in sorted(lines, key=lambda line: line[1]):
        info = result["info"]
        expected = round(first_budget[tuple(config_id)]) if tuple(config_id) in first_budget else 0
        assert info["continued_from"] >= expected and "checkpoint_warning" not in info, (config_id, budget, info)
        first_budget[tuple(config_id)] = budget
    meta = json.loads((cluster.results / "run.json").read_text())
    assert meta["status"] == "finished" and Path(meta["best_model"]["path"]).is_file()
    assert [p.name for p in (cluster.results / "checkpoints").iterdir()] == [Path(meta["best_model"]["directory"]).name]
