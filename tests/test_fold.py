"""core.models.fold: BatchNorm folded into the preceding convolution computes the same function, and only where it may."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from core.models.fold import _PassThrough, fold_batchnorm
from core.models.networks import ensemble
from tests.modelgen import bn_model, tiny_model


def _out(model, x):
    return np.asarray(model(x, training=False), dtype=np.float64)


def _x(shape, seed=0, n=16):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def _randomise_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            w = [rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.3, n), rng.uniform(0.2, 3, n)]
            layer.set_weights(w[-len(layer.get_weights()):] if len(layer.get_weights()) < 4 else w)


def test_folded_model_computes_the_same_function():
    model = bn_model((32, 32, 3), seed=4)
    before = [w.copy() for w in model.get_weights()]
    folded = fold_batchnorm(model)
    x = _x((32, 32, 3))
    np.testing.assert_allclose(_out(folded, x), _out(model, x), rtol=0, atol=1e-6)
    assert not any(isinstance(layer, layers.BatchNormalization) for layer in folded.layers)
    assert sum(isinstance(layer, _PassThrough) for layer in folded.layers) == 2
    assert all(layer.use_bias for layer in folded.layers if isinstance(layer, layers.Conv2D))
    for a, b in zip(before, model.get_weights()):  # the original is untouched
        np.testing.assert_array_equal(a, b)
    assert [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]  # Grad-CAM names survive


def test_nothing_to_fold_returns_the_model_itself():
    model = tiny_model((16, 16, 1))
    assert fold_batchnorm(model) is model


def _custom(bias: bool, activation, shared: bool, seed: int = 0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 2))
    c = layers.Conv2D(5, 3, padding="same", use_bias=bias, activation=activation)(inp)
    x = layers.BatchNormalization(epsilon=1e-2)(c)
    if shared:  # the conv output also feeds another branch: folding would change that branch
        x = layers.Add()([x, c])
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(1)(x))
    _randomise_bn(model, seed)
    return model


@pytest.mark.parametrize("bias", [False, True])
def test_conv_with_bias_folds(bias):
    model = _custom(bias, None, False)
    folded = fold_batchnorm(model)
    assert folded is not model
    x = _x((16, 16, 2), 1)
    np.testing.assert_allclose(_out(folded, x), _out(model, x), atol=1e-5)


@pytest.mark.parametrize("activation, shared", [("relu", False), (None, True)])
def test_unfoldable_pairs_are_left_alone(activation, shared):
    model = _custom(True, activation, shared)
    assert fold_batchnorm(model) is model


def test_scale_and_center_off():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = layers.Conv2D(3, 3, use_bias=False)(inp)
    x = layers.BatchNormalization(scale=False, center=False)(x)
    model = keras.Model(inp, layers.Dense(1)(layers.Flatten()(x)))
    rng = np.random.default_rng(0)
    bn = model.layers[2]
    bn.set_weights([rng.normal(0, 1, 3), rng.uniform(0.5, 2, 3)])
    folded = fold_batchnorm(model)
    x = _x((8, 8, 1), 2)
    np.testing.assert_allclose(_out(folded, x), _out(model, x), atol=1e-5)


def test_flat_ensemble_folds_every_member():
    members = [bn_model((32, 32, 1), seed=s) for s in (1, 2)]
    model = ensemble(members, "ens")
    folded = fold_batchnorm(model)
    assert sum(isinstance(layer, _PassThrough) for layer in folded.layers) == 4
    x = _x((32, 32, 1), 3)
    np.testing.assert_allclose(_out(folded, x), _out(model, x), atol=1e-6)
