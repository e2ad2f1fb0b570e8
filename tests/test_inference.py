"""core.inference's graph fast path must give exactly the eager Keras call's numbers (scores are stored to 8 decimals)."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from core import inference
from tests.modelgen import tiny_model


def _eager(model, x, batch_size=128):
    out = [np.asarray(model(x[i : i + batch_size], training=False)).reshape(-1) for i in range(0, len(x), batch_size)]
    return np.round(np.concatenate(out).astype(np.float64), inference.SCORE_DECIMALS)


@pytest.mark.parametrize("n", [1, 5, 130])
def test_fast_path_identical_to_eager(n):
    model = tiny_model((32, 32, 3), width=8, seed=3)
    x = np.random.default_rng(n).normal(size=(n, 32, 32, 3)).astype(np.float32)
    got = inference.predict_tensors(model, x)
    assert inference._forward(model) is not None  # the graph path was taken
    np.testing.assert_array_equal(got, _eager(model, x))
    head = x[:128]
    raw = np.asarray(model(head, training=False)).reshape(-1)
    # bit-for-bit before rounding (with Grappler's default fusions, ~half of these float32 values differ in the last bit)
    np.testing.assert_array_equal(inference._call(model, head).reshape(-1), raw)


def test_other_dtypes_and_shapes_fall_back_to_eager():
    model = tiny_model((32, 32, 3))
    x64 = np.random.default_rng(0).random((3, 32, 32, 3))
    np.testing.assert_array_equal(inference.predict_tensors(model, x64), _eager(model, x64))
    assert inference.predict_tensors(model, np.zeros((0, 32, 32, 3), np.float32)).shape == (0,)


def test_cache_does_not_keep_the_model_alive():
    model = tiny_model((32, 32, 1))
    inference.predict_tensors(model, np.zeros((2, 32, 32, 1), np.float32))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
