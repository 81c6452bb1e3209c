"""BOHB's vectorised sampling (hpo.sampling) proposes what hpbandster's own config generator does,
and imputes inactive values before a model fit as it does, in distribution; jobs are resolved once
per process, not once per job."""

from __future__ import annotations

import math
from collections import Counter

import ConfigSpace as CS
import numpy as np
import pytest
import scipy.stats as sps
import statsmodels.api as sm
from hpbandster.core.dispatcher import Job
from hpbandster.optimizers.config_generators.bohb import BOHB as HpBandSterBOHB

import hpo.jobs
import hpo.worker
from hpo.optimizers import ServiceBOHB, _install_generator, _model_ordinals, _OrdinalsAsCategoricals
from hpo import sampling
from hpo.sampling import KdeScorer, VectorizedBOHB, draw_candidates, kde_pdf, pick_best
from hpo.space import load_space
from tests.conftest import SPACES

#: p-value under which two samples count as from different distributions. Every test draws at a
#: fixed seed, so the outcome is fixed; the threshold only has to leave room for many comparisons.
ALPHA = 1e-3
CS_FLOAT, CS_INT = CS.UniformFloatHyperparameter, CS.UniformIntegerHyperparameter


def _generator(cls, configspace, **settings):
    generator = cls(configspace=_OrdinalsAsCategoricals(configspace), **settings)
    _model_ordinals(generator, configspace)
    return generator


@pytest.fixture(scope="module")
def space():
    return load_space(SPACES / "synthetic.yaml").configspace


@pytest.fixture(scope="module")
def fitted_models(space):
    """KDE models of hpbandster's generator after 60 results (random configurations, a fixed seed)
    at budget 9: a good model of 9 points, a bad one of 51."""
    space.seed(0)
    generator = _generator(HpBandSterBOHB, space)
    for i, config in enumerate(space.sample_configuration(60)):
        job = Job((0, 0, i), config=dict(config), budget=9.0, working_directory=".")
        good = config["optimizer"] == "sgd" and config["augmentation"] == "flip_jitter"
        job.result = {"loss": abs(math.log10(config["lr"]) + 2) + (0 if good else 1)}
        generator.new_result(job)
    assert list(generator.kde_models) == [9.0]
    return generator.kde_models


def _with_models(cls, space, models, **settings):
    generator = _generator(cls, space, **settings)
    generator.kde_models = models  # the same fitted models for both samplers; sampling only reads them
    return generator


def _draw(generator, n: int, seed: int) -> list[tuple[dict, dict]]:
    np.random.seed(seed)
    generator.configspace.seed(seed)
    return [generator.get_config(9) for _ in range(n)]


def _assert_same_distribution(ours: list[dict], theirs: list[dict], space) -> None:
    """KS per numeric hyperparameter (log-scaled ones in logs, inactive ones left out), chi-square
    per choice (with 'inactive' as a level)."""
    for h in space.values():
        a = [c.get(h.name) for c in ours]
        b = [c.get(h.name) for c in theirs]
        if isinstance(h, (CS_FLOAT, CS_INT)):
            a = np.array([v for v in a if v is not None], dtype=float)
            b = np.array([v for v in b if v is not None], dtype=float)
            if h.log:
                a, b = np.log(a), np.log(b)
            p = sps.ks_2samp(a, b).pvalue
        else:
            levels = sorted({repr(v) for v in a + b})
            ca, cb = Counter(map(repr, a)), Counter(map(repr, b))
            if len(levels) == 1:
                continue
            p = sps.chi2_contingency([[ca[v] for v in levels], [cb[v] for v in levels]])[1]
        assert p > ALPHA, f"{h.name}: p = {p:.2g}"


def test_kde_pdf_is_statsmodels_pdf(fitted_models):
    np.random.seed(1)
    for kde in (fitted_models[9.0]["good"], fitted_models[9.0]["bad"]):
        points = np.vstack([kde.data, draw_candidates(kde, np.array([3, 0, 0, 0, 2, 0, 0]), 200, 3, 1e-3)])
        with np.errstate(all="ignore"):
            expected = kde.pdf(points)
        np.testing.assert_allclose(kde_pdf(kde, points), expected, rtol=1e-10, atol=0, equal_nan=True)
    # every kernel (c, u, o), a single-level unordered variable (its kernel is infinite off the level)
    rng = np.random.default_rng(2)
    data = np.column_stack([rng.random(30), rng.integers(0, 3, 30), rng.integers(0, 4, 30), np.zeros(30)])
    kde = sm.nonparametric.KDEMultivariate(data=data, var_type="cuou", bw="normal_reference")
    points = np.column_stack([rng.random(50), rng.integers(0, 3, 50), rng.integers(0, 4, 50), rng.integers(0, 2, 50)])
    with np.errstate(all="ignore"):
        expected = kde.pdf(points)
    assert not np.isfinite(expected).all() and np.isfinite(expected).any()
    np.testing.assert_allclose(kde_pdf(kde, points), expected, rtol=1e-10, atol=0, equal_nan=True)


def _fit_models(space, results: int, seed: int = 0) -> dict:
    """hpbandster's KDE models at budget 9 after ``results`` results of random configurations."""
    space.seed(seed)
    np.random.seed(seed)
    generator = _generator(HpBandSterBOHB, space)
    configs = space.sample_configuration(results)
    for i, config in enumerate(configs):
        job = Job((0, 0, i), config=dict(config), budget=9.0, working_directory=".")
        job.result = {"loss": abs(math.log10(config["lr"]) + 2) + (0 if config["optimizer"] == "sgd" else 1)}
        generator.new_result(job, update_model=i == results - 1)
    return generator.kde_models


def _assert_same_pdf(got: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10, atol=0)


def test_kde_scorer_is_statsmodels_pdf(space, fitted_models):
    """The per-fit precomputed scorer (one matrix product) gives statsmodels' pdf: on the fitted
    models, on large ones (700 bad points, a good model whose 'optimizer' saw one level: infinite
    off it), and on every kernel with a one-level unordered variable (inf, and NaN where a term is 0)."""
    np.random.seed(11)
    vartypes = np.array([3, 0, 0, 0, 2, 0, 0])
    large = _fit_models(space, 820)
    assert large[9.0]["bad"].data.shape[0] > 600
    assert np.unique(large[9.0]["good"].data[:, 4]).size == 1, "the one-level case is covered"
    for models in (fitted_models, large):
        for kde in (models[9.0]["good"], models[9.0]["bad"]):
            points = np.vstack([kde.data[:100], draw_candidates(kde, vartypes, 300, 3, 1e-3)])
            with np.errstate(all="ignore"):
                expected = kde.pdf(points)
            scorer = KdeScorer(kde, vartypes)
            assert not scorer.exact_only
            _assert_same_pdf(scorer.pdf(points), expected)
    rng = np.random.default_rng(2)
    data = np.column_stack([rng.random(30), rng.integers(0, 3, 30), rng.integers(0, 4, 30), np.zeros(30)])
    kde = sm.nonparametric.KDEMultivariate(data=data, var_type="cuou", bw="normal_reference")
    points = np.column_stack([rng.random(50), rng.integers(0, 3, 50), rng.integers(0, 4, 50), rng.integers(0, 2, 50)])
    points[0, 0] = 50.0  # far from every data point: every kernel term 0, so 0 × inf: NaN off the level
    points[0, 3] = 1
    with np.errstate(all="ignore"):
        expected = kde.pdf(points)
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    _assert_same_pdf(KdeScorer(kde, np.array([0, 3, 4, 2])).pdf(points), expected)
    # a level beyond those declared: the exact path
    points[1, 1] = 7
    with np.errstate(all="ignore"):
        _assert_same_pdf(KdeScorer(kde, np.array([0, 3, 4, 2])).pdf(points), kde.pdf(points))


def test_the_scorer_picks_the_configurations_kde_pdf_picks(space, monkeypatch):
    """Same seed, same proposals, whether the candidates are scored by the scorer or by kde_pdf:
    the scorer changes the cost, not one choice (400 proposals, on a model of 700+ bad points)."""
    models = _fit_models(space, 820)
    generator = _with_models(VectorizedBOHB, space, models, random_fraction=0.0)
    fast = _draw(generator, 400, seed=12)
    assert len(generator._scorers) == 2, "the scorers are made once and kept"
    monkeypatch.setattr(sampling.KdeScorer, "pdf", lambda self, points: kde_pdf(self.kde, points))
    exact = _draw(_with_models(VectorizedBOHB, space, models, random_fraction=0.0), 400, seed=12)
    assert fast == exact
    assert len({tuple(sorted(c.items())) for c, _ in fast}) > 300, "the proposals are not all the same"


def test_a_refit_model_gets_a_new_scorer(space):
    generator = _with_models(VectorizedBOHB, space, _fit_models(space, 120))
    first = generator._scorer("bad", generator.kde_models[9.0]["bad"])
    assert generator._scorer("bad", generator.kde_models[9.0]["bad"]) is first
    generator.kde_models = _fit_models(space, 150, seed=1)
    assert generator._scorer("bad", generator.kde_models[9.0]["bad"]) is not first


def _hpbandster_pick(good: list, bad: list):
    """hpbandster's loop over candidates (its get_config), on precomputed l(x) and g(x)."""
    best, best_index = np.inf, None
    for i, (l, g) in enumerate(zip(good, bad)):
        val = max(1e-32, g) / max(l, 1e-32)
        if not np.isfinite(val) and np.isfinite(l):
            return i
        if val < best:
            best, best_index = val, i
    return best_index


@pytest.mark.parametrize("good, bad", [
    ([0.1, 0.5, 0.5, 0.2], [0.3, 0.5, 0.1, 0.1]),        # the smallest ratio, first of ties
    ([0.1, 0.5, 2.0, 0.2], [0.3, 0.5, np.inf, 0.0]),     # an infinite g with a finite l stops the loop
    ([0.0, 0.0, 0.0], [0.2, 0.0, 0.1]),                  # l below 1e-32 counts as 1e-32
    ([np.nan, 0.3, 0.4], [0.1, np.nan, 0.9]),            # NaN l: NaN ratio, never kept; NaN g: 1e-32
    ([np.nan, np.nan], [np.inf, np.nan]),                # nothing finite: None (a random configuration)
    ([np.inf, 0.2], [np.inf, 0.1]),                      # inf / inf is NaN, and l is not finite
])
def test_pick_best_is_hpbandsters_choice(good, bad):
    with np.errstate(all="ignore"):
        assert pick_best(np.array(good, dtype=float), np.array(bad, dtype=float)) == _hpbandster_pick(good, bad)


def test_candidates_have_hpbandsters_distribution(space, fitted_models):
    """With one candidate per configuration, get_config returns the candidate itself: the draw
    (a good-KDE point, truncated normals, kept or re-drawn levels) is compared directly."""
    settings = dict(num_samples=1, random_fraction=0.0)
    theirs = _draw(_with_models(HpBandSterBOHB, space, fitted_models, **settings), 1500, seed=3)
    ours = _draw(_with_models(VectorizedBOHB, space, fitted_models, **settings), 1500, seed=4)
    assert all(info["model_based_pick"] for _, info in ours)
    _assert_same_distribution([c for c, _ in ours], [c for c, _ in theirs], space)
    # the comparison sees a difference where there is one: narrower candidates
    narrower = _draw(_with_models(VectorizedBOHB, space, fitted_models, num_samples=1, random_fraction=0.0,
                                  bandwidth_factor=1), 1500, seed=5)
    with pytest.raises(AssertionError, match="p = "):
        _assert_same_distribution([c for c, _ in narrower], [c for c, _ in theirs], space)


def test_proposals_have_hpbandsters_distribution(space, fitted_models):
    """The whole proposal: 8 candidates, the best by l/g, one in three configurations random."""
    theirs = _draw(_with_models(HpBandSterBOHB, space, fitted_models, num_samples=8), 600, seed=6)
    ours = _draw(_with_models(VectorizedBOHB, space, fitted_models, num_samples=8), 600, seed=7)
    _assert_same_distribution([c for c, _ in ours], [c for c, _ in theirs], space)
    picks = [[sum(info["model_based_pick"] for _, info in s), sum(not info["model_based_pick"] for _, info in s)]
             for s in (ours, theirs)]
    assert sps.chi2_contingency(picks)[1] > ALPHA
    for config, _ in ours:  # valid configurations of the space, inactive values left out
        assert CS.Configuration(space, values=config) is not None
        assert ("momentum" in config) == (config["optimizer"] == "sgd")


def test_same_seed_same_proposals(space, fitted_models):
    generator = _with_models(VectorizedBOHB, space, fitted_models)
    assert _draw(generator, 20, seed=8) == _draw(generator, 20, seed=8)


def test_service_bohb_installs_the_vectorised_generator_with_the_same_settings(space):
    assert ServiceBOHB.config_generator_class is VectorizedBOHB

    class Optimizer:
        config_generator = HpBandSterBOHB(configspace=_OrdinalsAsCategoricals(space), top_n_percent=20, num_samples=32,
                                          random_fraction=0.25, bandwidth_factor=2, min_bandwidth=0.01)

    optimizer = Optimizer()
    built = optimizer.config_generator
    _install_generator(optimizer, VectorizedBOHB)
    installed = optimizer.config_generator
    assert type(installed) is VectorizedBOHB
    for name in ("min_points_in_model", "top_n_percent", "num_samples", "random_fraction", "bw_factor",
                 "min_bandwidth", "logger"):
        assert getattr(installed, name) == getattr(built, name), name


def test_entry_points_are_read_once_per_process(monkeypatch):
    calls = []
    real = hpo.jobs.entry_points

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(hpo.jobs, "entry_points", counting)
    hpo.jobs.registered_jobs.cache_clear()
    try:
        for _ in range(5):
            hpo.jobs.load_job("synthetic")
            hpo.jobs.job_problem("synthetic")
        assert len(calls) == 1
    finally:
        hpo.jobs.registered_jobs.cache_clear()


def test_a_worker_loads_its_job_once(monkeypatch, tmp_path):
    loads = []
    real = hpo.worker.load_job

    def counting(name):
        loads.append(name)
        return real(name)

    monkeypatch.setattr(hpo.worker, "load_job", counting)
    worker = hpo.worker.JobWorker(hpo.worker.WorkerSettings(run_id="once", work_dir=str(tmp_path)), host="127.0.0.1")
    config = {"model": "resnet50", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32,
              "augmentation": "none"}
    for i in range(3):
        result = worker.compute((0, 0, i), config=config, budget=1.0, working_directory=str(tmp_path),
                                context={"job": "synthetic", "max_budget": 9, "min_budget": 1})
        assert math.isfinite(result["loss"])
    assert loads == ["synthetic"]


def test_imputation_has_hpbandsters_distribution():
    """Inactive values (NaN) are filled as hpbandster's impute_conditional_data fills them: from a
    donor row among those where the column is set (a donor with NaNs of its own leaves them for a
    next round), uniformly when no row sets the column; a row whose only NaN is in column 0 keeps it
    (hpbandster's loop quirk). Compared cell by cell over repeated imputations."""
    rng = np.random.default_rng(9)
    n = 24
    data = np.column_stack([rng.random(n), rng.random(n), rng.integers(0, 3, n).astype(float),
                            np.full(n, np.nan), np.full(n, np.nan), rng.random(n)])
    data[::2, 1] = np.nan          # conditional on something: half the rows
    data[::3, 2] = np.nan          # some of them inactive together with column 1
    data[1::4, 5] = np.nan
    data[5, :] = [np.nan, 0.5, 1, np.nan, np.nan, 0.5]  # column 0 NaN as well as others
    data[7, :] = [np.nan, 0.5, 1, 0.5, 1, 0.5]          # only column 0 NaN: left as it is
    data[9, 3:5] = [0.25, 2]                             # columns 3 and 4: set in rows 7 and 9 only
    vartypes = np.array([0, 0, 3, 0, 4, 0])
    ours, theirs = _impute_both(data, vartypes, repeats=300)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(ours[:, 7, 0]).all() and not np.isnan(ours[:, 5]).any()
    set_cells = np.isfinite(data)
    assert (ours[:, set_cells] == data[set_cells]).all()
    for row, column in zip(*np.nonzero(np.isnan(data))):
        a, b = ours[:, row, column], theirs[:, row, column]
        if np.isnan(a).all():
            continue
        levels = np.unique(np.concatenate([a, b]))
        if len(levels) > 12:  # uniform draws (no donor), continuous
            p = sps.ks_2samp(a, b).pvalue
        elif len(levels) == 1:
            continue
        else:
            p = sps.chi2_contingency([[np.sum(a == v) for v in levels], [np.sum(b == v) for v in levels]])[1]
        assert p > ALPHA, f"cell ({row}, {column}): p = {p:.2g}"
    # columns set in no row: uniform values, uniform levels
    data = np.column_stack([rng.random(n), np.full(n, np.nan), np.full(n, np.nan)])
    ours, theirs = _impute_both(data, np.array([0, 0, 4]), repeats=100)
    assert not np.isnan(ours).any() and (ours[:, :, 0] == data[:, 0]).all()
    assert sps.ks_2samp(ours[:, :, 1].ravel(), theirs[:, :, 1].ravel()).pvalue > ALPHA
    levels = [[np.sum(x[:, :, 2] == v) for v in range(4)] for x in (ours, theirs)]
    assert sps.chi2_contingency(levels)[1] > ALPHA


def _impute_both(data: np.ndarray, vartypes: np.ndarray, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    from types import SimpleNamespace

    from hpo.sampling import impute_conditional

    np.random.seed(10)
    theirs = np.stack([HpBandSterBOHB.impute_conditional_data(SimpleNamespace(vartypes=vartypes), data)
                       for _ in range(repeats)])
    np.random.seed(11)
    ours = np.stack([impute_conditional(data, vartypes) for _ in range(repeats)])
    return ours, theirs


def test_active_iterations_are_hpbandsters_without_rescanning_the_finished():
    """The master loop asks for the unfinished iterations at every step: the same list as
    hpbandster's Master.active_iterations, as iterations finish in any order and new ones start."""
    from types import SimpleNamespace

    from hpbandster.core.master import Master

    from hpo.master_loop import ServiceMaster

    rng = np.random.default_rng(13)
    ours, theirs = ServiceMaster(), SimpleNamespace()
    ours.iterations = theirs.iterations = []
    for _ in range(300):
        if rng.random() < 0.3:
            ours.iterations.append(SimpleNamespace(is_finished=False))
        unfinished = [it for it in ours.iterations if not it.is_finished]
        if unfinished and rng.random() < 0.3:
            unfinished[int(rng.integers(len(unfinished)))].is_finished = True
        assert ours.active_iterations() == Master.active_iterations(theirs)
    assert sum(it.is_finished for it in ours.iterations) > 20 and ours._scan_start("active") > 0
    ours.iterations = [SimpleNamespace(is_finished=False)]  # a new list (a resumed run): scanned afresh
    assert ours.active_iterations() == [0]


def test_checkpoint_sweeps_skip_only_iterations_already_swept_finished():
    """The loop sweeps checkpoints at every step; it passes the keeper only the iterations from the
    first one not finished at an earlier sweep, so every configuration is still seen in its final
    state (as when every sweep sees all), and late sweeps do not walk the whole run."""
    from types import SimpleNamespace

    from hpo.master_loop import ServiceMaster

    terminal = ("TERMINATED", "CRASHED", "COMPLETED")

    class Keeper:
        def __init__(self) -> None:
            self.seen: set = set()
            self.sizes: list[int] = []

        def sweep(self, iterations) -> list:
            iterations = list(iterations)
            self.sizes.append(len(iterations))
            self.seen |= {cid for it in iterations for cid, d in it.data.items() if d.status in terminal}
            return []

    rng = np.random.default_rng(14)
    master = ServiceMaster()
    master.iterations, master.checkpoint_keeper = [], Keeper()
    everything: set = set()
    for step in range(400):
        if rng.random() < 0.2:
            i = len(master.iterations)
            master.iterations.append(SimpleNamespace(is_finished=False, data={
                (i, 0, k): SimpleNamespace(status="RUNNING") for k in range(3)}))
        for it in master.iterations:
            if it.is_finished:
                continue
            for datum in it.data.values():
                if datum.status == "RUNNING" and rng.random() < 0.1:
                    datum.status = "TERMINATED" if rng.random() < 0.5 else "REVIEW"
            if rng.random() < 0.05:  # finish_up: every configuration COMPLETED
                it.is_finished = True
                for datum in it.data.values():
                    datum.status = "COMPLETED"
        master._tidy_checkpoints()
        everything |= {cid for it in master.iterations for cid, d in it.data.items() if d.status in terminal}
    for it in master.iterations:  # the run ends: a last sweep after everything finished
        it.is_finished = True
        for datum in it.data.values():
            datum.status = "COMPLETED"
    master._tidy_checkpoints()
    everything |= {cid for it in master.iterations for cid, d in it.data.items()}
    assert master.checkpoint_keeper.seen == everything
    assert len(master.iterations) > 50 and master.checkpoint_keeper.sizes[-2] < len(master.iterations) / 2


class _HpBandSterFit(VectorizedBOHB):
    """The reference: VectorizedBOHB with hpbandster's own ``new_result`` (lists, converted to arrays
    at each refit); the same imputation and sampling."""

    new_result = HpBandSterBOHB.new_result


def _result_sequence(space, count: int, seed: int) -> list[Job]:
    """Results at budgets 1, 3 and 9 (the larger ones later, as in a run), with crashed jobs, NaN
    and infinite losses and tied losses among them."""
    space.seed(seed)
    rng = np.random.default_rng(seed)
    jobs = []
    for i, config in enumerate(space.sample_configuration(count)):
        budget = 1.0 if i < count // 2 else float(rng.choice([1.0, 3.0, 9.0], p=[0.2, 0.3, 0.5]))
        job = Job((i, 0, 0), config=dict(config), budget=budget, working_directory=".")
        kind = rng.integers(0, 10)
        if kind == 0:
            job.result = None
        elif kind == 1:
            job.result = {"loss": float(rng.choice([np.nan, np.inf, -np.inf]))}
        elif kind == 2:
            job.result = {"loss": 0.5}  # ties
        else:
            job.result = {"loss": abs(math.log10(config["lr"]) + 2) + budget / 10}
        jobs.append(job)
    return jobs


def _assert_same_models(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for budget in theirs:
        for role in ("good", "bad"):
            np.testing.assert_array_equal(ours[budget][role].data, theirs[budget][role].data)
            np.testing.assert_array_equal(ours[budget][role].bw, theirs[budget][role].bw)
            assert ours[budget][role].var_type == theirs[budget][role].var_type


def test_new_result_fits_hpbandsters_models_and_proposes_the_same(space):
    """After each result of the same sequence (three budgets, crashes, non-finite and tied losses,
    updates skipped now and then), the growing-array new_result has fitted exactly the KDEs
    hpbandster's new_result fits (data, bandwidths), consumed the same random numbers, and the
    configurations sampled between results are identical for a seed."""
    ours, theirs = _generator(VectorizedBOHB, space), _generator(_HpBandSterFit, space)
    for i, job in enumerate(_result_sequence(space, 400, seed=3)):
        proposals = []
        for generator in (ours, theirs):
            np.random.seed(i)
            generator.configspace.seed(i)
            generator.new_result(job, update_model=i % 7 != 3)
            proposals.append((generator.get_config(job.kwargs["budget"]), np.random.rand()))
        assert proposals[0] == proposals[1], i
        _assert_same_models(ours.kde_models, theirs.kde_models)
    assert {1.0, 9.0} <= set(ours.kde_models)
    assert ours.kde_models[9.0]["bad"].data.shape[0] > 80
    for budget in theirs.configs:
        np.testing.assert_array_equal(ours.configs[budget], np.array(theirs.configs[budget]).reshape(-1, 7))
        np.testing.assert_array_equal(ours.losses[budget], np.array(theirs.losses[budget], dtype=float))


def test_new_result_is_hpbandsters_own_without_conditions():
    """On a space without inactive values (no imputation draws), the models are those of
    hpbandster's own, unmodified config generator."""
    space = CS.ConfigurationSpace(seed=4)
    space.add([CS_FLOAT("lr", 1e-5, 1e-1, log=True), CS_INT("batch_size", 16, 128, log=True),
               CS.CategoricalHyperparameter("optimizer", ["sgd", "adamw", "rmsprop"])])
    ours, theirs = VectorizedBOHB(configspace=space), HpBandSterBOHB(configspace=space)
    for i, config in enumerate(space.sample_configuration(300)):
        job = Job((i, 0, 0), config=dict(config), budget=3.0 if i % 3 else 1.0, working_directory=".")
        job.result = {"loss": round(abs(math.log10(config["lr"]) + 3), 1)}  # rounded: many ties
        ours.new_result(job)
        theirs.new_result(job)
        _assert_same_models(ours.kde_models, theirs.kde_models)
    assert ours.kde_models[3.0]["bad"].data.shape[0] > 150
