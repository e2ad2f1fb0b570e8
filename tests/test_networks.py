"""Architectures: every registered network builds, ends in logit -> probability, and ensembles average logits."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from core.models.networks import build, ensemble, networks_in
from core.registry import TASKS

ALL = [m for t in TASKS.values() for m in t.models]


@pytest.mark.parametrize("spec", ALL, ids=lambda s: f"{s.task}/{s.id}")
def test_builds_with_logit_head_under_size_limit(spec):
    model = build(spec)
    assert model.input_shape == (None, spec.input.size, spec.input.size, spec.input.channels)
    assert model.get_layer("probability").input is model.get_layer("logit").output
    assert model.count_params() * 4 * networks_in(spec) < 10 * 2**20  # float32 weights under 10 MB


def test_ensemble_averages_member_logits():
    spec = TASKS["effusion"].model("secondlook_ensemble")
    keras.utils.set_random_seed(1)
    members = [build(spec), build(spec)]
    for m in members:  # make the members differ beyond initialisation
        m.get_layer("logit").set_weights([w + np.random.default_rng(len(m.name)).normal(0, 0.5, w.shape) for w in m.get_layer("logit").get_weights()])
    ens = ensemble(members, "ens")
    x = np.random.default_rng(0).normal(size=(4, 128, 128, 1)).astype(np.float32)
    logit = lambda m: np.asarray(keras.Model(m.inputs, m.get_layer("logit").output)(x, training=False))
    expected = (logit(members[0]) + logit(members[1])) / 2
    np.testing.assert_allclose(logit(ens), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ens(x, training=False)), 1 / (1 + np.exp(-expected)), rtol=1e-5, atol=1e-6)


def test_an_ensemble_of_ensembles_is_one_flat_average_over_every_network():
    """A fold ensemble of an ensemble recipe (3 folds x 2 members here) runs 6 chains, each weighted 1/6."""
    spec = TASKS["effusion"].model("secondlook_slim_ensemble")
    keras.utils.set_random_seed(2)
    nets = [build(spec) for _ in range(6)]
    folds = [ensemble(nets[2 * i:2 * i + 2], f"fold{i}") for i in range(3)]
    flat = ensemble(folds, "folds")
    x = np.random.default_rng(3).normal(size=(3, 128, 128, 1)).astype(np.float32)
    logit = lambda m: np.asarray(keras.Model(m.inputs, m.get_layer("logit").output)(x, training=False))
    np.testing.assert_allclose(logit(flat), np.mean([logit(n) for n in nets], axis=0), rtol=1e-5, atol=1e-5)
    assert sorted({layer.name.split("_")[0] for layer in flat.layers if layer.name.startswith("m")}) == [f"m{k}" for k in range(6)]
    with pytest.raises(ValueError, match="different sizes"):
        ensemble([folds[0], nets[0]], "uneven")
