"""`hpo space check`, `hpo run` and `hpo master` refuse configurations the job could only refuse at run
time; a closed pipe ends a command quietly; `hpo run --devices cuda` without CUDA is refused at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.errors import UserError
from hpo.job_check import check_space_config
from hpo.space import parse_space
from tests.conftest import ROOT, SPACES, hpo_command
from tests.test_without_torch import BLOCK_TORCH

QUICKSTART = (ROOT / "search_spaces" / "quickstart.yaml").read_text()


def _edited(tmp_path: Path, old: str, new: str, name: str = "edited.yaml") -> Path:
    assert old in QUICKSTART
    path = tmp_path / name
    path.write_text(QUICKSTART.replace(old, new))
    return path


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("old, new, expected", [
    ("max_train_images", "max_train_imgs",
     "hyperparameters.max_train_imgs: not a key the image_classifier job reads (did you mean max_train_images"),
    ("model: resnet18", "model: resnet181", "model 'resnet181': not a torchvision classification model"),
    ("regime: finetune", "regime: partial", "trainable_blocks None: regime partial needs a whole number >= 1"),
    ("lr_schedule: cosine", "lr_schedule: step", "lr_step_size: required with lr_schedule step"),
    ("augmentation: none", "augmentation: flp", "augmentation 'flp': must be one of none, flip_jitter"),
    ("choices: [sgd, adamw]", "choices: [sgd, adamx]",
     "optimizer 'adamx': must be one of sgd, adam, adamw (the configuration with optimizer = 'adamx')"),
])
def test_space_check_refuses_what_would_fail_at_run_time(tmp_path, run_hpo, old, new, expected):
    space = _edited(tmp_path, old, new)
    proc = run_hpo("space", "check", str(space))
    assert proc.returncode == 2 and " ok: " not in proc.stdout
    assert _one_line(proc).startswith(f"hpo: {space}: ") and expected in _one_line(proc)


def test_every_choice_and_conditional_value_is_checked_as_it_would_be_sampled():
    base = QUICKSTART.replace("  lr_schedule: cosine\n", "")
    good = parse_space(base + "  lr_schedule: {type: categorical, choices: [cosine, step]}\n"
                              "  lr_step_size: {type: int, low: 1, high: 5, when: {lr_schedule: step}}\n", "good.yaml")
    assert check_space_config(good) is None
    missing = parse_space(base + "  lr_schedule: {type: categorical, choices: [cosine, step]}\n", "missing.yaml")
    with pytest.raises(UserError, match=r"missing.yaml: lr_step_size: required with lr_schedule step .*"
                                        r"\(the configuration with lr_schedule = 'step'\)"):
        check_space_config(missing)
    # a value only active under a non-default parent value is checked with that parent set
    hidden = parse_space(base + "  lr_schedule: {type: categorical, choices: [cosine, step]}\n"
                                "  lr_step_size: {type: int, low: 0, high: 5, when: {lr_schedule: step}}\n", "h.yaml")
    with pytest.raises(UserError, match=r"h.yaml: lr_step_size 0: must be at least 1 epoch \(the configuration "
                                        r"with lr_step_size = 0\)"):
        check_space_config(hidden)
    # a forbidden combination is never sampled, so it is not refused
    regimes = "regime: {type: categorical, choices: [finetune, partial]}"
    forbidden = parse_space(base.replace("regime: finetune", regimes) + "forbidden:\n  - {regime: partial}\n", "f.yaml")
    assert check_space_config(forbidden) is None


def test_run_and_master_refuse_the_space_before_starting_anything(tmp_path, run_hpo):
    space = _edited(tmp_path, "model: resnet18", "model: resnet181")
    results = tmp_path / "results"
    proc = run_hpo("run", str(space), "--workers", "1", "--results", str(results), timeout=120)
    assert proc.returncode == 2
    assert _one_line(proc) == (f"hpo: {space}: model 'resnet181': not a torchvision classification model "
                               f"(e.g. resnet50, vgg16, resnet18)")
    assert not results.exists()  # no run.json, no logs: no nameserver, no worker
    proc = run_hpo("master", str(space), "--run-id", "m", "--results", str(results), "--nameserver", "127.0.0.1:1",
                   "--connect-timeout", "1", timeout=120)
    assert proc.returncode == 2 and "model 'resnet181'" in _one_line(proc)
    assert not results.exists()


def test_the_synthetic_job_checks_its_own_keys_and_reads_any_other(tmp_path, run_hpo):
    space = tmp_path / "s.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  fail_when: optimizer\n  anything: 3\n")
    proc = run_hpo("space", "check", str(space))
    assert proc.returncode == 2
    assert _one_line(proc) == (f"hpo: {space}: fail_when 'optimizer': expected NAME=VALUE "
                               f"(the job fails when NAME takes VALUE)")
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  fail_when: optimizer=adamw\n  anything: 3\n")
    proc = run_hpo("space", "check", str(space))
    assert proc.returncode == 0, proc.stderr
    assert "not checked" not in proc.stdout


def test_a_job_without_check_config_is_not_checked(tmp_path, run_hpo):
    (tmp_path / "plainjob.py").write_text("def run(config, context):\n    return {'loss': 1.0, 'info': {}}\n")
    space = tmp_path / "plugin.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text().replace("job: synthetic", "job: plainjob:run")
                     + "  whatever_key: 1\n")
    proc = run_hpo("space", "check", str(space), env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "  configurations not checked: job plainjob:run has no check_config" in proc.stdout.splitlines()


def test_without_torch_the_image_classifier_space_is_still_ok(tmp_path, run_hpo):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    proc = run_hpo("space", "check", str(ROOT / "search_spaces" / "quickstart.yaml"), env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "configurations not checked: cannot load job image_classifier here" in proc.stdout


def test_every_shipped_space_passes(run_hpo):
    spaces = sorted(str(p) for p in (ROOT / "search_spaces").glob("*.yaml"))
    proc = run_hpo("space", "check", *spaces)
    assert proc.returncode == 0, proc.stderr
    assert sum(" ok: " in line for line in proc.stdout.splitlines()) == len(spaces)
    assert "not checked" not in proc.stdout


def _closed_pipe_run(*args: str) -> subprocess.CompletedProcess:
    """Run hpo with stdout a pipe whose reader has already gone (as `| head` after its lines)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(hpo_command(*args), stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              cwd=str(ROOT), stdin=subprocess.DEVNULL)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [
    ("space", "check", str(SPACES / "synthetic.yaml"), str(SPACES / "synthetic.yaml")),
    ("train", str(SPACES / "synthetic.yaml"), "--budget", "2"),
])
def test_a_closed_pipe_ends_quietly(args):
    proc = _closed_pipe_run(*args)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_broken_pipe_that_is_not_stdout_is_an_error_not_a_quiet_success(monkeypatch, capsys):
    """A socket or child pipe breaking under a command (stdout still open) must not pass for `| head`."""
    import hpo.cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(hpo.cli, "cmd_space_check", broken)
    assert hpo.cli.main(["space", "check", str(SPACES / "synthetic.yaml")]) == 1
    assert capsys.readouterr().err == "hpo space: a connection or pipe closed under it ([Errno 32] Broken pipe)\n"


def test_run_devices_cuda_without_cuda_is_refused_before_anything_starts(tmp_path, run_hpo):
    results = tmp_path / "results"
    space = str(SPACES / "synthetic.yaml")
    check = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    if check.stdout.strip() == "False":
        proc = run_hpo("run", space, "--devices", "cuda:0", "--results", str(results), timeout=120)
        assert proc.returncode == 2
        assert _one_line(proc).startswith("hpo: --devices cuda:0: CUDA is not available on this host (")
        assert not results.exists()
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    proc = run_hpo("run", space, "--devices", "cpu,cuda", "--results", str(results), "--workers", "1",
                   env={"PYTHONPATH": str(tmp_path)}, timeout=120)
    assert proc.returncode == 2
    assert _one_line(proc) == ("hpo: --devices cpu,cuda: torch is not installed here, and the workers need it for "
                               "cuda (pip install -e '.[worker]')")
    assert not results.exists()
