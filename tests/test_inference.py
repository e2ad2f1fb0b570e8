"""core.inference's graph fast path: the same function as the eager Keras call up to float rounding, and one path."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from core.inference import forward as inference
from tests.modelgen import bn_model, tiny_model


def _eager(model, x, batch_size=128):
    out = [np.asarray(model(x[i : i + batch_size], training=False)).reshape(-1) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64)


@pytest.mark.parametrize("n", [1, 5, 130])
@pytest.mark.parametrize("make", [tiny_model, bn_model])
def test_fast_path_matches_eager(n, make):
    model = make((32, 32, 3), seed=3)
    x = np.random.default_rng(n).normal(size=(n, 32, 32, 3)).astype(np.float32)
    got = inference.predict_tensors(model, x)
    assert inference._forward(model) is not None  # the graph path was taken
    np.testing.assert_allclose(got, _eager(model, x), rtol=0, atol=2e-6)
    assert got.dtype == np.float64 and np.array_equal(got, np.round(got, inference.SCORE_DECIMALS))


@pytest.mark.parametrize("make", [tiny_model, bn_model, "ensemble"])
def test_a_score_does_not_depend_on_the_batch_it_was_scored_in(make):
    """The app scores one upload, evaluation scores batches of 128: the same image must get the same number."""
    if make == "ensemble":
        from core.models.networks import ensemble

        model = ensemble([bn_model((32, 32, 3), seed=s) for s in (1, 2, 3)], "ens")
    else:
        model = make((32, 32, 3), seed=5)
    x = np.random.default_rng(7).normal(size=(45, 32, 32, 3)).astype(np.float32)
    whole = inference.predict_tensors(model, x)
    one_by_one = np.concatenate([inference.predict_tensors(model, x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(one_by_one, whole)
    for bs in (2, 7, 16, 44):
        np.testing.assert_array_equal(inference.predict_tensors(model, x, batch_size=bs), whole)


def test_float64_input_takes_the_same_path_as_float32():
    model = bn_model((32, 32, 3), seed=1)
    x = np.random.default_rng(0).random((3, 32, 32, 3))
    np.testing.assert_array_equal(inference.predict_tensors(model, x), inference.predict_tensors(model, x.astype(np.float32)))
    assert inference.predict_tensors(model, np.zeros((0, 32, 32, 3), np.float32)).shape == (0,)


def test_weights_changed_after_first_call_are_picked_up():
    """The folded copy is a snapshot; training the model further must not leave stale scores behind."""
    model = bn_model((32, 32, 1), seed=2)
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 1)).astype(np.float32)
    before = inference.predict_tensors(model, x)
    model.set_weights([w * 1.5 + 0.1 for w in model.get_weights()])
    after = inference.predict_tensors(model, x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _eager(model, x), atol=2e-6)


@pytest.mark.parametrize("make", [tiny_model, bn_model])
def test_cache_does_not_keep_the_model_alive(make):
    model = make((32, 32, 1))
    inference.predict_tensors(model, np.zeros((2, 32, 32, 1), np.float32))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_warm_up_traces_both_graphs_before_the_first_upload():
    from core.inference import explain, scoring

    model = bn_model((32, 32, 1), seed=9)
    assert model not in inference._FORWARD and model not in explain._CACHE
    scoring.warm_up(model)
    assert model in inference._FORWARD and model in explain._CACHE
