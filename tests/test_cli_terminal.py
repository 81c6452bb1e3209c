"""What the terminal shows: the Ctrl-C message, ``hpo train``'s epochs and summary, help texts."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SPACES, hpo_command


def _read_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_ctrl_c_names_the_jobs_lost_the_results_and_hpo_report(tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "synthetic.yaml").read_text() + "  seconds_per_epoch: 1.5\n")
    results = tmp_path / "run"
    run = subprocess.Popen(hpo_command("run", str(space), "--workers", "2", "--results", str(results),
                                       "--run-id", "ctrlc", "--no-progress", "--insecure"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        deadline = time.time() + 90
        while not _read_lines(results / "results.json"):
            assert time.time() < deadline and run.poll() is None, "no result within 90 s"
            time.sleep(0.2)
        time.sleep(0.7)  # both workers are inside a job of at least 1.5 s
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(r"hpo: interrupted; (\d+) jobs? in flight lost; results so far in (\S+); "
                         r"see: hpo-report (\S+); continue: hpo run --resume (\S+)", last)
    assert match, last
    assert match.group(2) == match.group(3) == match.group(4) == str(results)
    # the jobs lost are those the workers started that have no result
    started = sum(len(re.findall(r"job \(\d+, \d+, \d+\): synthetic at budget", log.read_text()))
                  for log in (results / "logs").glob("worker-*.log"))
    assert int(match.group(1)) == started - len(_read_lines(results / "results.json")) >= 1
    assert "Traceback" not in err


def _hpo(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(hpo_command(*args), capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_train_prints_each_epoch_and_a_summary_with_a_constant_overridden(tmp_path):
    proc = _hpo("train", "search_spaces/quickstart.yaml", "--budget", "2", "--set", "regime=frozen",
                "--set", "max_train_images=64", "--set", "lr=0.05", "--device", "cpu", "--work-dir", str(tmp_path),
                timeout=300, env={"HPO_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert "regime=frozen" in lines[0] and "max_train_images=64" in lines[0]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(" | ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(re.search(r"train loss [\d.]+, acc [\d.]+% \| val loss [\d.]+, acc [\d.]+% \| lr [\d.e-]+ \| "
                         r"[\d.]+ s$", line) for line in epochs), epochs
    assert lines[-1].startswith("done: 2 epochs in ") and "val loss" in lines[-1]
    assert not proc.stdout.lstrip().startswith("[")  # no JSON without --json


def test_train_json_is_the_log_line_and_epochs_go_to_stderr():
    proc = _hpo("train", str(SPACES / "synthetic.yaml"), "--budget", "2", "--set", "model=vgg16", "--json",
                "--indent", "1")
    assert proc.returncode == 0, proc.stderr
    config_id, budget, stamps, result, exception = json.loads(proc.stdout)
    assert budget == 2.0 and exception is None and result["info"]["epochs"] == 2
    assert result["info"]["state"] == "SUCCESS"  # as the results log holds it
    assert result["info"]["worker"].endswith(":train") and result["info"]["wall_time"] >= 0
    assert "epoch 1/2 | " in proc.stderr and "epoch 2/2 | " in proc.stderr


def test_a_failed_train_says_why_once_and_exits_2_for_a_setup_reason(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text((ROOT / "search_spaces" / "quickstart.yaml").read_text().replace("model: resnet18",
                                                                                   "model: resnet181"))
    assert "resnet181" in space.read_text()
    proc = _hpo("train", str(space), "--budget", "1", "--device", "cpu", "--work-dir", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("resnet181") == 1, proc.stderr
    assert "model 'resnet181'" in proc.stderr.strip().splitlines()[-1]


def test_train_set_of_an_unknown_name_lists_the_known_ones():
    proc = _hpo("train", str(SPACES / "synthetic.yaml"), "--set", "learning_rate=0.1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "--set learning_rate: no such hyperparameter (known: " in last and "lr" in last and "model" in last


def test_train_help_has_no_search_flags():
    text = _hpo("train", "--help").stdout
    for flag in ("--optimizer", "--iterations", "--eta", "--min-budget", "--max-budget", "--seed", "--no-progress"):
        assert flag not in text, flag
    for flag in ("--budget", "--set", "--json", "--device"):
        assert flag in text, flag


def _subparsers(parser) -> dict:
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_help_shows_defaults_and_an_example():
    from hpo.cli import build_parser
    from hpo.report.cli import build_parser as build_report_parser

    hpo = build_parser()
    commands = _subparsers(hpo)
    helps = {"hpo": hpo.format_help(), "hpo-report": build_report_parser().format_help(),
             "hpo space check": _subparsers(commands["space"])["check"].format_help()}
    for name in ("run", "master", "worker", "nameserver", "certs", "train", "export", "dashboard"):
        helps[f"hpo {name}"] = commands[name].format_help()
    for name, text in helps.items():
        assert "default" in text and "\nExample" in text.replace("\n\n", "\n"), name
    assert "Example:\n  hpo space check " in commands["space"].format_help()
    # values argparse knows are shown as such; nothing says "default: None"
    assert "(default: 2)" in helps["hpo run"] and "(default: 1)" in helps["hpo run"]  # --max-retries, --workers
    assert "(default: bohb)" in helps["hpo space check"]
    assert "(default: 8050)" in helps["hpo dashboard"]
    assert "Example:\n  hpo export results/run1 --optuna sqlite:///run1.db" in helps["hpo export"]
    assert not any("default: None" in text or "default: False" in text for text in helps.values())


def test_help_through_the_command_line():
    proc = _hpo("run", "--help", timeout=60)
    assert proc.returncode == 0 and "Example:\n  hpo run search_spaces/quickstart.yaml" in proc.stdout


def test_a_run_counts_the_epochs_its_brackets_plan(tmp_path):
    # budgets 1, 3, 9 (eta 3), 2 iterations: 17 jobs, 36 epochs with continuation, 45 without
    for flags, epochs in (((), 36), (("--no-checkpoints",), 45)):
        results = tmp_path / f"run{epochs}"
        proc = _hpo("run", str(SPACES / "synthetic.yaml"), "--workers", "2", "--iterations", "2", "--results",
                    str(results), "--insecure", "--no-progress", *flags, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        last = [line for line in proc.stderr.splitlines() if "hpo.progress" in line][-1]
        assert "jobs 17/17 finished, 0 running, 0 queued" in last and f"epochs {epochs}/{epochs}" in last, last
        best = re.search(r"best loss ([\d.]+) @ 9 ep", last)
        at_nine = [r[3]["loss"] for r in _read_lines(results / "results.json") if r[1] == 9.0]
        assert best and abs(float(best.group(1)) - min(at_nine)) < 1e-3 * min(at_nine), last
        # the final summary names the incumbent's budget too
        summary = re.search(r"^run \S+ finished: 17 jobs \(0 failed\), best loss ([\d.]+) @ 9 epochs; "
                            r"results in (\S+)$", proc.stdout, re.MULTILINE)
        assert summary and summary.group(1) == best.group(1) and summary.group(2) == str(results), proc.stdout


def test_run_summary_names_the_budget_of_its_best_loss():
    from hpo.master import RunSummary

    summary = RunSummary("r1", "results/r1", 17, 2, 0.231412, (1, 0, 0), best_budget=9.0)
    assert summary.line() == "run r1 finished: 17 jobs (2 failed), best loss 0.2314 @ 9 epochs; results in results/r1"
    assert RunSummary("r1", "results/r1", 3, 3, None, None).best_text() == "-"


def test_space_check_cost_says_one_job_and_one_iteration_in_the_singular():
    from hpo.space import BudgetSettings
    from hpo.space_summary import cost_lines

    lines = cost_lines(BudgetSettings(min_budget=9, max_budget=9, eta=3, iterations=1))
    assert lines[0].startswith("  cost of 1 iteration of BOHB or Hyperband,")
    assert lines[1:] == ["    iteration 1: 1 x 9 ep: 1 job, 9 epochs (9) each", "    in all: 1 job, 9 epochs (9)"]


def test_train_set_accepts_a_key_the_job_reads_that_the_space_leaves_out(tmp_path):
    """quickstart.yaml does not hold max_train_images: --set adds it for this one job (the image
    classifier declares its keys); a misspelt name is still refused, naming what can be set."""
    proc = _hpo("train", "search_spaces/quickstart.yaml", "--budget", "1", "--json", "--set", "image_size=32",
                "--set", "max_train_images=40", "--set", "max_eval_images=40", "--set", "model=resnet18",
                "--set", "weights=none", "--set", "dataset=digits", "--work-dir", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)[3]
    assert result["info"]["train_images"] == 40, result["info"]
    proc = _hpo("train", "search_spaces/quickstart.yaml", "--set", "max_train_image=40")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "--set max_train_image: no such hyperparameter" in last
    assert "the job also reads: " in last and "max_train_images" in last


def test_train_summary_says_early_stopping_the_restored_epoch_and_what_trains():
    from hpo.train import summary

    info = {"epochs": 2, "epochs_trained": 2, "val_loss": 2.3, "val_accuracy": 0.1, "train_loss": 2.2,
            "train_accuracy": 0.2, "stopped_early": True, "stop_reason": "no improvement for 1 epoch",
            "restored_best_epoch": 1, "trainable_params": 1290, "total_params": 11177538, "trains": "fc"}
    line = summary({"loss": 2.3, "info": info}, 3, 4.2)
    assert line.startswith("done: 2 epochs in 4.2 s")
    assert "stopped early (no improvement for 1 epoch)" in line
    assert "metrics of the best epoch, 1 (restore_best)" in line
    assert "trains 1,290 of 11,177,538 parameters: fc" in line


@pytest.mark.parametrize("command, wrong", [
    (("run", "--workers", "x"), "hpo run: argument --workers: invalid int value: 'x'"),
    (("bogus",), "hpo: argument COMMAND: invalid choice: 'bogus'"),
    (("space",), "hpo space: the following arguments are required: SUBCOMMAND"),
])
def test_usage_errors_are_one_line_naming_the_argument(command, wrong):
    proc = _hpo(*command)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(wrong), proc.stderr
    assert proc.stderr.rstrip().endswith("--help)")


def test_report_usage_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hpo.report", str(tmp_path), "--top", "0"],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 2
    assert proc.stderr == "hpo-report: argument --top: must be at least 1: 0 (see hpo-report --help)\n"
