"""Architectures: every registered network builds, ends in logit -> probability, and ensembles average logits."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from core.models.networks import build, ensemble
from core.models.registry import TASKS

ALL = [m for t in TASKS.values() for m in t.models]


@pytest.mark.parametrize("spec", ALL, ids=lambda s: f"{s.task}/{s.id}")
def test_builds_with_logit_head_under_size_limit(spec):
    model = build(spec)
    assert model.input_shape == (None, spec.input.size, spec.input.size, spec.input.channels)
    assert model.get_layer("probability").input is model.get_layer("logit").output
    assert model.count_params() * 4 * spec.members < 10 * 2**20  # float32 weights under 10 MB


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
