"""The numpy/Pyro4 break: numpy values from ConfigSpace and hpbandster cross Pyro4 as plain values."""

from __future__ import annotations

import ConfigSpace as CS
import numpy as np
from Pyro4.util import SerpentSerializer

import hpo.pyro
from hpo.values import to_json_safe


def roundtrip(value):
    serializer = SerpentSerializer()
    return serializer.loads(serializer.dumps(value))


def test_configspace_values_cross_pyro4_as_plain_values():
    hpo.pyro.install()
    cs = CS.ConfigurationSpace(seed=0)
    cs.add(CS.Categorical("optimizer", ["sgd", "adamw"]), CS.Float("lr", (1e-5, 1e-1), log=True))
    config = dict(cs.sample_configuration())
    assert type(config["optimizer"]) is np.str_  # the values ConfigSpace 1.x hands out
    sent = roundtrip({"config": config, "budget": np.float64(3.3333), "n": np.int64(7), "ok": np.bool_(True),
                      "curve": np.array([0.5, 0.25])})
    assert type(sent["config"]["optimizer"]) is str and sent["config"]["optimizer"] == config["optimizer"]
    assert type(sent["budget"]) is float and sent["budget"] == 3.3333
    assert type(sent["n"]) is int and sent["n"] == 7
    assert sent["ok"] is True
    assert sent["curve"] == [0.5, 0.25]


def test_json_safe_turns_non_finite_into_null():
    assert to_json_safe({"loss": float("inf"), "x": [np.float64("nan"), np.int64(2)]}) == {"loss": None, "x": [None, 2]}
