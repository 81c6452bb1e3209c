"""hpo export DIR --optuna URL: a run as an Optuna study that Optuna reads back."""

from __future__ import annotations

import sys

import pytest

from hpo.cli import main
from report_logs import LogWriter, metadata, write_standard_run

optuna = pytest.importorskip("optuna", reason="optuna is the export extra (pip install 'hpo[export]')")


def test_a_run_exported_to_optuna_reads_back(tmp_path, capsys):
    run_dir = write_standard_run(tmp_path / "run1")
    url = f"sqlite:///{tmp_path / 'tmp.db'}"
    assert main(["export", str(run_dir), "--optuna", url]) == 0
    assert "study 'run1'" in capsys.readouterr().out
    study = optuna.load_study(study_name="run1", storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.user_attrs["run_id"] == "run1" and study.user_attrs["optimizer"] == "bohb"
    trials = {trial.user_attrs["config_id"]: trial for trial in study.trials}
    assert len(trials) == 5
    complete = {cid: trial.value for cid, trial in trials.items() if trial.state == optuna.trial.TrialState.COMPLETE}
    assert complete == {"(0, 0, 0)": 0.35, "(0, 0, 2)": 0.30, "(0, 0, 3)": 0.50}  # at budget 9, the highest reached
    assert {cid for cid, t in trials.items() if t.state == optuna.trial.TrialState.FAIL} == {"(0, 0, 1)", "(0, 0, 4)"}
    assert trials["(0, 0, 1)"].user_attrs["reason"] == "diverged"
    best = trials["(0, 0, 2)"]
    assert best.params == {"optimizer": "adamw", "lr": 1e-4, "batch_size": 64}  # momentum inactive for adamw
    assert best.distributions["lr"] == optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    assert best.distributions["batch_size"] == optuna.distributions.IntDistribution(16, 64, log=True)
    assert best.distributions["optimizer"] == optuna.distributions.CategoricalDistribution(["sgd", "adamw"])
    assert trials["(0, 0, 0)"].params["momentum"] == 0.9
    # the budget-9 history: val_loss = loss + 0.5/e - 0.5/9, epochs 1..9
    assert sorted(best.intermediate_values) == list(range(1, 10))
    assert best.intermediate_values[9] == pytest.approx(0.30)
    assert best.intermediate_values[1] == pytest.approx(0.30 + 0.5 - 0.5 / 9)
    assert best.user_attrs["budget"] == 9 and best.user_attrs["budgets"] == [1, 3, 9]
    assert best.user_attrs["results_dir"] == str(run_dir)
    assert study.best_trial.user_attrs["config_id"] == "(0, 0, 2)"


def test_an_existing_study_is_refused_unless_named_otherwise(tmp_path, capsys):
    run_dir = write_standard_run(tmp_path / "run1")
    url = f"sqlite:///{tmp_path / 'tmp.db'}"
    assert main(["export", str(run_dir), "--optuna", url]) == 0
    assert main(["export", str(run_dir), "--optuna", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'run1' exists there already" in err and "--study-name" in err
    assert main(["export", str(run_dir), "--optuna", url, "--study-name", "again"]) == 0
    assert sorted(optuna.get_all_study_names(url)) == ["again", "run1"]


def test_without_histories_the_losses_per_budget_are_the_intermediate_values(tmp_path):
    log = LogWriter(tmp_path / "run", metadata())
    cid = log.config(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32)
    log.ok(cid, 1, 0.9, history=None)
    log.ok(cid, 3, 0.6, history=None)
    url = f"sqlite:///{tmp_path / 'tmp.db'}"
    assert main(["export", str(tmp_path / "run"), "--optuna", url]) == 0
    (trial,) = optuna.load_study(study_name="run1", storage=url).trials
    assert trial.intermediate_values == {1: 0.9, 3: 0.6} and trial.value == 0.6


@pytest.mark.parametrize("where, url, message", [
    ("missing", "sqlite:///{tmp}/x.db", "missing: no such directory"),
    ("run1", "not a url", "--optuna not a url: cannot open the storage"),
    ("run1", "sqlite:///{tmp}/no/such/dir/x.db", "cannot open the storage"),
])
def test_bad_directory_or_url_is_one_line_and_exit_2(tmp_path, capsys, where, url, message):
    write_standard_run(tmp_path / "run1")
    assert main(["export", str(tmp_path / where), "--optuna", url.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_without_optuna_one_line_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    run_dir = write_standard_run(tmp_path / "run1")
    assert main(["export", str(run_dir), "--optuna", f"sqlite:///{tmp_path / 'tmp.db'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hpo: hpo export --optuna needs optuna: pip install 'hpo[export]' (or pip install optuna)"
