"""hpbandster's optimizers as the service adapts them."""

from __future__ import annotations

import numpy as np
import pytest
from hpbandster.core.dispatcher import Job
from hpbandster.optimizers.config_generators.bohb import BOHB as BOHBGenerator

from hpo.optimizers import _model_ordinals, _OrdinalsAsCategoricals, budget_ladder, kde_variable_types
from hpo.space import load_space
from tests.conftest import SPACES


@pytest.mark.parametrize("low, high, eta", [(1, 9, 3), (3.33, 30, 3), (1, 27, 3), (2, 50, 2.5), (5, 5, 3)])
def test_budget_ladder_matches_hpbandster(low, high, eta):
    ladder = budget_ladder(low, high, eta)
    stages = -int(np.log(low / high) / np.log(eta)) + 1
    expected = high * np.power(eta, -np.linspace(stages - 1, 0, stages))
    assert ladder == pytest.approx(list(expected))


def test_bohb_models_ordinals_and_picks_from_its_model():
    cs = load_space(SPACES / "synthetic.yaml").configspace
    with pytest.raises(RuntimeError, match="ordinal"):
        BOHBGenerator(configspace=cs)  # what hpbandster 0.7.4 does on its own
    generator = BOHBGenerator(configspace=_OrdinalsAsCategoricals(cs))
    _model_ordinals(generator, cs)
    kinds, levels = kde_variable_types(cs)
    assert generator.kde_vartypes == kinds and "o" in kinds
    assert levels[list(cs.keys()).index("augmentation")] == 3
    np.random.seed(0)
    for i in range(40):
        config, _ = generator.get_config(9)
        job = Job((0, 0, i), config=dict(config), budget=9.0, working_directory=".")
        good = config["augmentation"] == "flip_jitter" and config["optimizer"] == "sgd"
        job.result = {"loss": abs(np.log10(config["lr"]) + 2) + (0 if good else 1)}
        generator.new_result(job)
    picks = [generator.get_config(9) for _ in range(30)]
    model_based = [config for config, info in picks if info.get("model_based_pick")]
    assert len(model_based) >= 10  # the model is used (about 2/3 of picks), not a silent fallback
    assert sum(c["augmentation"] == "flip_jitter" for c in model_based) > len(model_based) / 2
    for config, _ in picks:
        assert config["augmentation"] in ("none", "flip_jitter", "all")
