"""BOHB's configuration sampling, vectorised at hpbandster's config-generator seam.

hpbandster 0.7.4's BOHB config generator (``hpbandster.optimizers.config_generators.bohb.BOHB``)
proposes a configuration by drawing ``num_samples`` candidates around points of the good KDE, one
candidate and one dimension at a time (a scipy ``truncnorm.rvs`` call per continuous value), and
evaluating the acquisition ``g(x) / l(x)`` with statsmodels' ``KDEMultivariate.pdf`` once per
candidate. Measured in the master: about 113 ms per configuration, 78 % of it in ``truncnorm.rvs``,
all while the master holds its lock.

:class:`VectorizedBOHB` draws the same candidates from the same distribution in a few numpy/scipy
calls over the whole (candidates × dimensions) array, and evaluates both KDEs at every candidate at
once with the same product kernels statsmodels uses (Gaussian for continuous, Aitchison-Aitken for
unordered, Wang-Ryzin for ordered variables; the same bandwidths and level counts). The "bad" KDE
holds nearly every result of the largest budget, so that evaluation grows with the results: a
:class:`KdeScorer`, made once per model fit, does it as one matrix product and one ``exp`` (about 8×
cheaper than :func:`kde_pdf` at 750 points, the same pdf up to rounding, the same picks). The model
fit (``new_result``) fits hpbandster's models exactly, with each budget's results kept in growing
arrays (:class:`BudgetResults`) rather than a list converted to an array at every refit, and its
imputation of inactive values, a Python loop over the rows, vectorised (:func:`impute_conditional`).
Everything else is hpbandster's: ``random_fraction``, ``bandwidth_factor``,
``min_bandwidth``, the choice of the best candidate (the first minimum of ``max(1e-32, g) /
max(l, 1e-32)``, or the first candidate whose ratio is not finite while ``l`` is), and the
fallbacks to a random configuration. Random numbers come from numpy's global generator, as in
hpbandster, so seeding ``np.random`` still makes a run repeatable (the draws come in another order,
so the configurations differ from hpbandster's own for one seed; their distribution does not).
"""

from __future__ import annotations

import math

import ConfigSpace
import ConfigSpace.util
import numpy as np
import scipy.stats as sps
import statsmodels.api as sm
from hpbandster.core.base_config_generator import base_config_generator
from hpbandster.optimizers.config_generators.bohb import BOHB as HpBandSterBOHB

_TINY = 1e-32
_GAUSS_NORM = 1.0 / math.sqrt(2 * math.pi)


def kde_pdf(kde, points: np.ndarray) -> np.ndarray:
    """``kde.pdf`` (statsmodels ``KDEMultivariate``) at each row of ``points``, in one pass.

    The generalised product kernel of statsmodels' ``gpke`` with its default kernels: Gaussian
    (continuous ``c``; one ``exp`` of the summed exponents for all continuous variables, equal to
    the product of statsmodels' per-variable ``exp`` up to rounding), Aitchison-Aitken with the
    number of levels seen in the data (unordered ``u``), Wang-Ryzin (ordered ``o``); divided by the
    product of the continuous bandwidths and by the number of data points."""
    data = np.asarray(kde.data, dtype=float)
    bw = np.asarray(kde.bw, dtype=float)
    points = np.atleast_2d(np.asarray(points, dtype=float))
    kinds = np.array(list(kde.var_type))
    if not set(kinds) <= {"c", "u", "o"}:
        raise ValueError(f"unknown KDE variable types in {kde.var_type!r}")
    continuous = kinds == "c"
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        if continuous.any():
            h = bw[continuous]
            exponent = np.zeros((points.shape[0], data.shape[0]))
            for x, xi, hj in zip(points[:, continuous].T, data[:, continuous].T, h):
                exponent -= (xi[None, :] - x[:, None]) ** 2 / (hj ** 2 * 2.0)
            kernel = _GAUSS_NORM ** int(continuous.sum()) * np.exp(exponent)
        else:
            kernel = np.ones((points.shape[0], data.shape[0]))
        for j in np.flatnonzero(~continuous):
            x = points[:, j, None]
            xi = data[None, :, j]
            hj = bw[j]
            if kinds[j] == "u":
                levels = np.unique(data[:, j]).size
                kernel *= np.where(xi == x, 1 - hj, np.float64(hj) / np.float64(levels - 1))
            else:
                kernel *= np.where(xi == x, 1 - hj, 0.5 * (1 - hj) * (hj ** np.abs(xi - x)))
        return (kernel / np.prod(bw[continuous])).sum(axis=1) / data.shape[0]


class KdeScorer:
    """:func:`kde_pdf` of one fitted KDE, with all that does not depend on the candidates computed
    once (per model fit): scoring 64 candidates is then one matrix product, one ``exp`` and one sum
    over the data points, about ten times cheaper than :func:`kde_pdf` at 750 points.

    The log of a data point's product kernel at a candidate is a sum over the variables: for the
    continuous ones ``-|a - b|^2 = 2 a.b - |a|^2 - |b|^2`` (``a``, ``b``: candidate and data point,
    centred on the data's mean and divided by ``sqrt(2) * bw``), for a discrete one the log of its
    kernel factor, looked up in a (level × data point) table by the candidate's level (a one-hot
    row). Stacked as columns, all of it is one product ``[a, one-hot, 1] @ [2b, log table, -|b|^2]``.
    The pdf equals statsmodels' within 1e-10 relative (rounding; tests/test_sampling.py), so the
    proposals are those of :func:`kde_pdf`. An unordered variable with one level in the data has an
    infinite kernel off that level (statsmodels divides by the number of other levels; NaN for a
    zero bandwidth): the pdf there is inf, or NaN where a kernel term is 0, as statsmodels has it. Where a kernel factor is not finite
    and non-negative otherwise (a bandwidth above 1), or a candidate's discrete value is not one of
    ``levels``, it falls back to :func:`kde_pdf`."""

    def __init__(self, kde, levels: np.ndarray) -> None:
        self.kde = kde
        self._data = kde.data
        self._bw = np.array(kde.bw, dtype=float, copy=True)
        data = np.asarray(kde.data, dtype=float)
        kinds = np.array(list(kde.var_type))
        if not set(kinds) <= {"c", "u", "o"}:
            raise ValueError(f"unknown KDE variable types in {kde.var_type!r}")
        self.levels = np.asarray(levels, dtype=int)
        self.continuous = kinds == "c"
        self.discrete = np.flatnonzero(~self.continuous)
        n = data.shape[0]
        bw = self._bw
        h = bw[self.continuous]
        self.factor = _GAUSS_NORM ** int(self.continuous.sum()) / np.prod(h) / n
        self.centre = data[:, self.continuous].mean(axis=0) if n else np.zeros(int(self.continuous.sum()))
        self.scale = 1.0 / (math.sqrt(2.0) * h)
        b = (data[:, self.continuous] - self.centre) * self.scale
        columns = [2.0 * b]
        self.offsets = []
        self.single_levels: list[tuple[int, float]] = []
        self.exact_only = False
        offset = b.shape[1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for j in self.discrete:
                count = int(self.levels[j])
                x = np.arange(count, dtype=float)[:, None]
                xi = data[None, :, j]
                hj = bw[j]
                if kinds[j] == "u":
                    seen = np.unique(data[:, j]).size
                    table = np.where(xi == x, 1 - hj, np.float64(hj) / np.float64(seen - 1))
                    if seen == 1 and 1 - hj > 0:
                        # one level seen: off it the kernel is hj / 0 (inf, or NaN for a zero
                        # bandwidth) for every data point alike; pdf() applies that to the candidates
                        self.single_levels.append((j, data[0, j], bool(hj > 0)))
                        table = np.where(xi == x, 1 - hj, 1.0)
                else:
                    table = np.where(xi == x, 1 - hj, 0.5 * (1 - hj) * (hj ** np.abs(xi - x)))
                if count < 1 or not (np.isfinite(table).all() and (table >= 0).all()):
                    self.exact_only = True
                # log 0 is -inf, which a matrix product turns into NaN next to a 0: -1e4 is exp's 0 too
                columns.append(np.maximum(np.log(table), -1e4).T)
                self.offsets.append(offset)
                offset += count
        columns.append(-(b ** 2).sum(axis=1, keepdims=True))
        self.width = offset + 1
        self.table = np.ascontiguousarray(np.hstack(columns).T) if n else np.zeros((self.width, 0))

    def fits(self, kde) -> bool:
        """True while ``kde`` is the model this scorer was made for, unchanged."""
        return kde is self.kde and kde.data is self._data and np.array_equal(kde.bw, self._bw)

    def pdf(self, points: np.ndarray) -> np.ndarray:
        """The KDE's pdf at each row of ``points`` (as :func:`kde_pdf`)."""
        points = np.atleast_2d(np.asarray(points, dtype=float))
        if self.exact_only or self.table.shape[1] == 0:
            return kde_pdf(self.kde, points)
        row = np.zeros((points.shape[0], self.width))
        a = (points[:, self.continuous] - self.centre) * self.scale
        row[:, :a.shape[1]] = a
        for j, offset in zip(self.discrete, self.offsets):
            level = points[:, j]
            if not ((level >= 0) & (level < self.levels[j]) & (level == np.trunc(level))).all():
                return kde_pdf(self.kde, points)
            row[np.arange(len(level)), offset + level.astype(int)] = 1.0
        row[:, -1] = 1.0
        with np.errstate(over="ignore", under="ignore"):
            log_kernel = row @ self.table
            log_kernel -= (a ** 2).sum(axis=1)[:, None]
            kernel = np.exp(log_kernel)
            pdf = kernel.sum(axis=1) * self.factor
        if self.single_levels:
            off = np.zeros(points.shape[0], dtype=bool)
            off_nan = np.zeros(points.shape[0], dtype=bool)
            for j, level, infinite in self.single_levels:
                off |= points[:, j] != level
                if not infinite:
                    off_nan |= points[:, j] != level
            # finite kernel × inf: inf, but 0 × inf is NaN, and one NaN term makes the sum NaN
            pdf[off] = np.where((kernel[off] == 0).any(axis=1), np.nan, np.inf)
            pdf[off_nan] = np.nan
        return pdf


def draw_candidates(kde_good, vartypes: np.ndarray, num_samples: int, bandwidth_factor: float,
                    min_bandwidth: float) -> np.ndarray:
    """``num_samples`` candidate vectors around points of the good KDE, as hpbandster draws them.

    Each candidate starts from a data point of ``kde_good`` picked uniformly. A continuous value
    (``vartypes`` 0) is drawn from a normal around it with standard deviation ``bandwidth_factor *
    max(bw, min_bandwidth)``, truncated to [0, 1]; a discrete one (``vartypes`` = its number of
    levels) keeps the point's level with probability ``1 - max(bw, min_bandwidth)``, else takes a
    level uniformly at random."""
    data = np.asarray(kde_good.data, dtype=float)
    bw = np.maximum(np.asarray(kde_good.bw, dtype=float), min_bandwidth)
    vartypes = np.asarray(vartypes, dtype=int)
    centres = data[np.random.randint(0, len(data), size=num_samples)]
    vectors = np.empty_like(centres)
    continuous = vartypes == 0
    if continuous.any():
        m = centres[:, continuous]
        scale = np.broadcast_to(bandwidth_factor * bw[continuous], m.shape)
        # numpy's global RandomState, named: what scipy uses today for random_state=None (and what
        # hpbandster relies on), which scipy says will change
        vectors[:, continuous] = sps.truncnorm.rvs(-m / scale, (1 - m) / scale, loc=m, scale=scale,
                                                   random_state=np.random.mtrand._rand)
    discrete = ~continuous
    if discrete.any():
        m = centres[:, discrete]
        keep = np.random.rand(*m.shape) < (1 - bw[discrete])
        other = np.random.randint(0, vartypes[discrete], size=m.shape)
        vectors[:, discrete] = np.where(keep, np.trunc(m), other)
    return vectors


def pick_best(good: np.ndarray, bad: np.ndarray) -> int | None:
    """The candidate hpbandster's loop keeps: the first whose ratio ``max(1e-32, g) / max(l, 1e-32)``
    is not finite while ``l`` is finite (its loop stops there), else the first with the smallest
    finite ratio; None when no ratio is finite. ``max`` is Python's: a NaN ``g`` counts as 1e-32, a
    NaN ``l`` stays NaN."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = np.where(bad > _TINY, bad, _TINY)
        l = np.where(_TINY > good, _TINY, good)
        ratio = g / l
    stop = np.flatnonzero(~np.isfinite(ratio) & np.isfinite(good))
    if stop.size:
        return int(stop[0])
    finite = np.isfinite(ratio)
    if not finite.any():
        return None
    return int(np.argmin(np.where(finite, ratio, np.inf)))


def impute_conditional(array: np.ndarray, vartypes: np.ndarray) -> np.ndarray:
    """hpbandster's ``impute_conditional_data``, all rows at once: a NaN (an inactive value) is filled
    from a donor row drawn uniformly among the rows where that column is set, the donor filling every
    column still NaN in the row; the row's first NaN column picks the donors, round after round, until
    no NaN is left. A column set in no row gets a uniform value (a uniform level when discrete).
    hpbandster's loop stops when the only NaN left is in column 0 (``np.any`` of the NaN indices
    [0] is false); so does this."""
    out = np.array(array, dtype=float, copy=True)
    if out.ndim != 2 or out.shape[0] == 0:
        return out
    finite = np.isfinite(out)
    for _ in range(out.shape[1] + 1):
        missing = np.isnan(out)
        pending = np.flatnonzero(missing[:, 1:].any(axis=1))
        if pending.size == 0:
            break
        first = missing[pending].argmax(axis=1)
        for column in np.unique(first):
            rows = pending[first == column]
            donors = np.flatnonzero(finite[:, column])
            if donors.size:
                picked = np.asarray(array, dtype=float)[np.random.choice(donors, size=rows.size)]
                block = out[rows]
                holes = np.isnan(block)
                block[holes] = picked[holes]
                out[rows] = block
            elif vartypes[column] == 0:
                out[rows, column] = np.random.rand(rows.size)
            else:
                out[rows, column] = np.random.randint(vartypes[column], size=rows.size)
    return out


class BudgetResults:
    """One budget's results as the model fit reads them: configuration vectors (rows) and losses,
    in numpy arrays that double their capacity when full (amortised O(1) append), so a refit slices
    them instead of converting a list of every result to an array."""

    def __init__(self, dimensions: int, capacity: int = 64) -> None:
        self._vectors = np.empty((capacity, dimensions))
        self._losses = np.empty(capacity)
        self.count = 0

    def append(self, vector: np.ndarray, loss: float) -> None:
        if self.count == len(self._losses):
            capacity = 2 * len(self._losses)
            vectors = np.empty((capacity, self._vectors.shape[1]))
            vectors[:self.count] = self._vectors
            losses = np.empty(capacity)
            losses[:self.count] = self._losses
            self._vectors, self._losses = vectors, losses
        self._vectors[self.count] = vector
        self._losses[self.count] = loss
        self.count += 1

    @property
    def vectors(self) -> np.ndarray:
        """The configurations' vectors, one row per result (a view)."""
        return self._vectors[:self.count]

    @property
    def losses(self) -> np.ndarray:
        """The losses, in the order of the results (a view)."""
        return self._losses[:self.count]


class VectorizedBOHB(HpBandSterBOHB):
    """hpbandster's BOHB config generator with :meth:`get_config` and the imputation of inactive
    values before each model fit vectorised (same distributions), and the results a fit reads kept
    in growing arrays (:meth:`new_result`; the same models)."""

    def new_result(self, job, update_model: bool = True) -> None:
        """hpbandster's ``new_result``: record the result and refit the budget's good and bad KDEs,
        with each budget's vectors and losses kept in a :class:`BudgetResults` (``self.configs[b]``
        and ``self.losses[b]`` are views of its arrays, not lists). The same split (argsort of the
        losses, best ``max(min_points_in_model, top_n_percent %)`` good, the next ``max(...,
        (100 - top_n_percent) %)`` bad), imputation, statsmodels ``normal_reference`` bandwidths
        clipped to ``min_bandwidth``, and the same random draws in the same order."""
        base_config_generator.new_result(self, job)
        if job.result is None:
            loss = np.inf  # a crashed job counts as a bad configuration, as in hpbandster
        else:
            loss = job.result["loss"] if np.isfinite(job.result["loss"]) else np.inf
        budget = job.kwargs["budget"]
        stores = self.__dict__.setdefault("_results", {})
        if budget not in stores:
            stores[budget] = BudgetResults(len(self.vartypes))
            self.configs[budget], self.losses[budget] = stores[budget].vectors, stores[budget].losses
        if max(list(self.kde_models) + [-np.inf]) > budget:
            return  # a larger budget has a model already
        store = stores[budget]
        store.append(ConfigSpace.Configuration(self.configspace, job.kwargs["config"]).get_array(), loss)
        self.configs[budget], self.losses[budget] = store.vectors, store.losses
        if store.count <= self.min_points_in_model - 1 or not update_model:
            return
        train_configs, train_losses = store.vectors, store.losses
        n_good = max(self.min_points_in_model, (self.top_n_percent * store.count) // 100)
        n_bad = max(self.min_points_in_model, ((100 - self.top_n_percent) * store.count) // 100)
        idx = np.argsort(train_losses)
        train_data_good = self.impute_conditional_data(train_configs[idx[:n_good]])
        train_data_bad = self.impute_conditional_data(train_configs[idx[n_good:n_good + n_bad]])
        if train_data_good.shape[0] <= train_data_good.shape[1]:
            return
        if train_data_bad.shape[0] <= train_data_bad.shape[1]:
            return
        bad_kde = sm.nonparametric.KDEMultivariate(data=train_data_bad, var_type=self.kde_vartypes,
                                                   bw="normal_reference")
        good_kde = sm.nonparametric.KDEMultivariate(data=train_data_good, var_type=self.kde_vartypes,
                                                    bw="normal_reference")
        bad_kde.bw = np.clip(bad_kde.bw, self.min_bandwidth, None)
        good_kde.bw = np.clip(good_kde.bw, self.min_bandwidth, None)
        self.kde_models[budget] = {"good": good_kde, "bad": bad_kde}
        self.logger.debug("done building a new model for budget %f based on %i/%i split; best loss %f",
                          budget, n_good, n_bad, train_losses.min())

    def impute_conditional_data(self, array):
        return impute_conditional(array, self.vartypes)

    def _categorical_mask(self) -> np.ndarray:
        cached = getattr(self, "_categorical_cache", None)
        if cached is None or cached[0] is not self.configspace:
            mask = np.array([isinstance(h, ConfigSpace.CategoricalHyperparameter)
                             for h in self.configspace.values()], dtype=bool)
            cached = self._categorical_cache = (self.configspace, mask)
        return cached[1]

    def _scorer(self, role: str, kde) -> KdeScorer:
        """The :class:`KdeScorer` of the current ``good`` or ``bad`` model, made once per model fit."""
        scorers = self.__dict__.setdefault("_scorers", {})
        scorer = scorers.get(role)
        if scorer is None or not scorer.fits(kde):
            scorer = scorers[role] = KdeScorer(kde, self.vartypes)
        return scorer

    def _random(self) -> tuple[dict, dict]:
        return self._active_only(self.configspace.sample_configuration()), {"model_based_pick": False}

    def _active_only(self, config) -> dict:
        return dict(ConfigSpace.util.deactivate_inactive_hyperparameters(
            configuration_space=self.configspace, configuration=dict(config)))

    def get_config(self, budget):
        """A new configuration and its info (``model_based_pick``), as hpbandster's ``get_config``."""
        if len(self.kde_models) == 0 or np.random.rand() < self.random_fraction:
            return self._random()
        try:
            models = self.kde_models[max(self.kde_models)]  # the model of the largest budget
            kde_good, kde_bad = models["good"], models["bad"]
            candidates = draw_candidates(kde_good, self.vartypes, self.num_samples, self.bw_factor,
                                         self.min_bandwidth)
            best = pick_best(self._scorer("good", kde_good).pdf(candidates),
                             self._scorer("bad", kde_bad).pdf(candidates))
            if best is None:
                self.logger.debug("Sampling based optimization with %i samples failed -> using random "
                                  "configuration", self.num_samples)
                return self._random()
            vector = candidates[best].copy()
            categorical = self._categorical_mask()
            vector[categorical] = np.rint(vector[categorical])
            config = ConfigSpace.Configuration(self.configspace, vector=vector)
            return self._active_only(config), {"model_based_pick": True}
        except Exception:
            self.logger.warning("Sampling based optimization with %i samples failed -> using random "
                                "configuration", self.num_samples, exc_info=True)
            return self._random()
