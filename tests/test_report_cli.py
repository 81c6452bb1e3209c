"""hpo-report's command line: formats, several runs, bad input, no torch."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hpo.report.cli import main
from report_logs import LogWriter, metadata, nan_free, write_standard_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(tmp_path):
    return write_standard_run(tmp_path / "run1")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_default_is_a_terminal_table_of_the_best_configurations(capsys, run_dir):
    code, out, err = run_cli(capsys, run_dir)
    assert code == 0 and err == ""
    lines = out.splitlines()
    header = next(line for line in lines if line.split()[:4] == ["optimizer", "lr", "momentum", "batch_size"])
    assert header.split()[4:] == ["train", "loss", "train", "acc.", "val.", "loss", "val.", "acc.", "test", "acc.", "budget", "config"]
    rows = lines[lines.index(header) + 1 : lines.index(header) + 4]
    assert rows[0].split()[:4] == ["adamw", "1.00e-04", "-", "64"]  # momentum inactive: a dash
    assert rows[1].split()[:4] == ["sgd", "1.00e-02", "0.9", "32"]
    assert rows[0].split()[-4:] == ["9", "(0,", "0,", "2)"]
    assert "Best 3 configurations at budget 9" in out
    for title in ("Budgets", "Failures", "Incumbent trajectory", "Rank correlation between budgets", "Compute"):
        assert title in lines
    assert "RuntimeError: CUDA out of memory" in out


def test_markdown(capsys, run_dir):
    code, out, _ = run_cli(capsys, run_dir, "--top", "2", "--format", "markdown")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("| optimizer | lr | momentum | batch_size | train loss | train acc. | val. loss | val. acc. | test acc. | budget | config |")
    assert lines[start + 1].startswith("|---|")
    assert lines[start + 2].startswith("| adamw | 1.00e-04 | - | 64 |")
    assert lines[start + 3].startswith("| sgd |") and not lines[start + 4].startswith("|")
    assert "## Best 2 configurations at budget 9 (of 3 results at that budget)" in lines


def test_csv_is_the_best_configurations_table(capsys, run_dir):
    code, out, _ = run_cli(capsys, run_dir, "--format", "csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    assert table["config_id"].tolist() == ["(0, 0, 2)", "(0, 0, 0)", "(0, 0, 3)"]
    assert table["lr"].tolist() == [1e-4, 1e-2, 1e-3]
    assert pd.isna(table["momentum"][0])


def test_json_is_strict_and_carries_tables_and_summary(capsys, run_dir):
    code, out, _ = run_cli(capsys, run_dir, "--format", "json")
    assert code == 0

    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    data = json.loads(out, parse_constant=refuse)
    assert nan_free(data)
    [run] = data["runs"]
    assert run["name"] == "run1" and run["top_budget"] == 9
    assert [row["config_id"] for row in run["top"]] == ["(0, 0, 2)", "(0, 0, 0)", "(0, 0, 3)"]
    assert run["top"][0]["momentum"] is None  # inactive
    assert run["top"][0]["val_accuracy"] == 0.85
    assert [row["budget"] for row in run["budgets"]] == [1, 3, 9]
    assert [row["reason"] for row in run["failures"]] == ["diverged", "crashed"]
    assert [row["loss"] for row in run["trajectory"]][-1] == 0.30
    assert [row["spearman"] for row in run["rank_correlations"]] == [1.0, 1.0]
    assert run["compute"]["wall_time"] == 7200
    assert run["metadata"]["optimizer"] == "bohb"
    assert [hp["name"] for hp in run["hyperparameters"]] == ["optimizer", "lr", "momentum", "batch_size"]


def test_several_runs_side_by_side(capsys, tmp_path):
    first = write_standard_run(tmp_path / "vgg16", run_id="vgg16")
    second = write_standard_run(tmp_path / "resnet50", run_id="resnet50")
    code, out, _ = run_cli(capsys, first, second, "--top", "2")
    assert code == 0
    assert "Runs compared" in out and "Run vgg16" in out and "Run resnet50" in out
    assert "vgg16: Budgets" in out and "resnet50: Compute" in out
    code, out, _ = run_cli(capsys, first, second, "--top", "2", "--format", "csv")
    table = pd.read_csv(io.StringIO(out))
    assert table["run"].tolist() == ["vgg16", "vgg16", "resnet50", "resnet50"]
    code, out, _ = run_cli(capsys, first, second, "--format", "json")
    data = json.loads(out)
    assert [row["run"] for row in data["comparison"]] == ["vgg16", "resnet50"]
    assert data["comparison"][0]["best_loss"] == 0.30


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: tmp / "absent", "absent: no such directory"),
        (lambda tmp: tmp, "no results.json here"),
        (lambda tmp: LogWriter(tmp / "run", metadata()).directory, "results.json: empty log, no results yet"),
    ],
    ids=["missing directory", "no log", "empty log"],
)
def test_nothing_to_report_is_one_line_and_exit_code_2(capsys, tmp_path, make, expected):
    code, out, err = run_cli(capsys, make(tmp_path))
    assert code == 2 and out == ""
    assert err.startswith("hpo-report: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_corrupt_line_in_the_middle_warns_and_reports_the_rest(capsys, run_dir):
    path = run_dir / "results.json"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, "[[0, 0, 9], 1.0, {\n")
    path.write_text("".join(lines))
    code, out, err = run_cli(capsys, run_dir)
    assert code == 0
    assert f"hpo-report: warning: {path}:3: not valid JSON, line skipped" in err
    assert "Best 3 configurations at budget 9" in out


def test_a_torn_last_line_warns_and_reports_the_rest(capsys, run_dir):
    with open(run_dir / "results.json", "a") as handle:
        handle.write('[[1, 0, 0], 1.0, {"subm')
    code, out, err = run_cli(capsys, run_dir, "--format", "json")
    assert code == 0
    assert "results.json:12: incomplete last line skipped" in err
    assert json.loads(out)["runs"][0]["warnings"] == [err.strip().removeprefix("hpo-report: warning: ")]


def test_a_log_of_only_corrupt_lines_is_exit_code_2(capsys, run_dir):
    (run_dir / "results.json").write_text("garbage\n")
    code, out, err = run_cli(capsys, run_dir)
    assert code == 2 and out == ""
    assert "results.json: no readable result" in err and "results.json:1" in err
    assert "Traceback" not in err


def test_an_unknown_budget_is_exit_code_2(capsys, run_dir):
    code, _, err = run_cli(capsys, run_dir, "--budget", "5")
    assert code == 2 and "no result at budget 5 (budgets: 1, 3, 9)" in err


def test_a_bad_flag_is_exit_code_2(capsys, run_dir):
    code, _, err = run_cli(capsys, run_dir, "--top", "0")
    assert code == 2 and "--top" in err


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_the_report_does_not_import_torch_nor_matplotlib_without_plots(run_dir):
    script = (
        "import sys\n"
        "from hpo.report.cli import main\n"
        f"code = main([{str(run_dir)!r}, '--format', 'json'])\n"
        "assert code == 0, code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported without --plots'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_python_dash_m_hpo_report(run_dir):
    done = subprocess.run(
        [sys.executable, "-m", "hpo.report", str(run_dir), "--format", "csv", "--top", "1"],
        cwd=REPO, env=_env(), capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("adamw,0.0001,,64,")
