"""Inference copy of a trained model with every BatchNorm that follows a convolution folded into that convolution.

In inference mode BatchNorm is a fixed per-channel affine map, y = s * (conv(x) + b) + t, so it can be written into the
convolution's kernel and bias: one op instead of two passes over every feature map. On this 2-core CPU that makes the
SecondLook CNNs 13-25% faster (the effusion ensemble 231 -> 285 images/s, model only). The arithmetic is done in
float64 and rounded once, so outputs move by rounding only (< 1e-6 in a probability on every bundled model). The stored model is never
changed: training needs the BatchNorm layers, and Grad-CAM keeps using the original.

`inference_copy(model, float64_dense=True)` also runs every Dense layer in float64 (core.inference.forward): float32
matrix products are not batch-invariant on every CPU (on an AMD EPYC here, a row's result depends on how many rows the
product has, by ~1e-7), so one image scored alone and in a batch would get different scores; in float64 the
difference is ~1e-16, below the float32 the layer hands on. Dense layers here are heads (at most 8192 x 128): cheap.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers


class _PassThrough(layers.Layer):
    """Stands where a folded BatchNorm was; accepts the same call arguments and returns its input."""

    def call(self, inputs, mask=None, training=None):  # noqa: ARG002 - BatchNormalization's call signature
        return inputs


class _Float64Dense(layers.Dense):
    """A Dense layer computed in float64 (same weights, float32 in and out)."""

    def call(self, inputs, training=None):  # noqa: ARG002 - Dense's call signature
        from keras import ops

        x = ops.matmul(ops.cast(inputs, "float64"), ops.cast(self.kernel, "float64"))
        if self.use_bias:
            x = x + ops.cast(self.bias, "float64")
        if self.activation is not None:
            x = self.activation(x)
        return ops.cast(x, self.compute_dtype)


def _producer(layer: layers.Layer):
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]._keras_history.operation


def _foldable_pairs(model: keras.Model) -> dict[str, layers.BatchNormalization]:
    """conv layer name -> the BatchNorm that is the only consumer of its output (and may be folded into it)."""
    pairs = {}
    for bn in model.layers:
        if not isinstance(bn, layers.BatchNormalization) or bn.axis not in (-1, [-1], [3], 3):
            continue
        conv = _producer(bn)
        if (
            type(conv) is layers.Conv2D  # not a subclass (separable, depthwise...): their kernels fold differently
            and conv.get_config().get("activation") in (None, "linear")
            and conv.data_format == "channels_last"
            and conv.groups == 1
            and len(conv._outbound_nodes) == 1
            and len(conv._inbound_nodes) == 1
        ):
            pairs[conv.name] = bn
    return pairs


def _folded_weights(conv: layers.Conv2D, bn: layers.BatchNormalization) -> list[np.ndarray]:
    weights = conv.get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if conv.use_bias else np.zeros(kernel.shape[-1])
    n = kernel.shape[-1]
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones(n)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros(n)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    s = gamma / np.sqrt(var + bn.epsilon)
    return [(kernel * s).astype(np.float32), (beta + (bias - mean) * s).astype(np.float32)]


def weights_fingerprint(model: keras.Model) -> tuple[float, ...]:
    """A cheap summary of the first and last weights that any training step changes (for snapshot staleness checks)."""
    ws = model.weights
    picks = [w for w in (ws[0], ws[-1]) if w is not None] if ws else []
    return tuple(float(np.sum(np.asarray(w.numpy(), np.float64))) for w in picks)


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A new functional model computing the same function with conv -> BatchNorm pairs merged; `model` is untouched.

    Returns `model` itself when there is nothing to fold.
    """
    return inference_copy(model, float64_dense=False)


def inference_copy(model: keras.Model, float64_dense: bool = True) -> keras.Model:
    """`fold_batchnorm`, and with `float64_dense` every plain Dense layer computed in float64 (batch-invariant).

    Returns `model` itself when there is nothing to change.
    """
    pairs = _foldable_pairs(model)
    dense = {layer.name for layer in model.layers if type(layer) is layers.Dense} if float64_dense else set()
    if not pairs and not dense:
        return model
    folded_bns = {bn.name for bn in pairs.values()}

    def clone(layer: layers.Layer) -> layers.Layer:
        cfg = layer.get_config()
        if layer.name in folded_bns:
            return _PassThrough(name=layer.name)
        if layer.name in pairs:
            cfg["use_bias"] = True
        if layer.name in dense:
            return _Float64Dense.from_config(cfg)
        return layer.__class__.from_config(cfg)

    folded = keras.models.clone_model(model, clone_function=clone)
    originals = {layer.name: layer for layer in model.layers}
    for layer in folded.layers:
        if layer.name in pairs:
            layer.set_weights(_folded_weights(originals[layer.name], pairs[layer.name]))
        elif layer.weights:
            layer.set_weights(originals[layer.name].get_weights())
    return folded
