"""Grad-CAM heatmaps: where in the image the network found evidence for the finding.

Follows the Keras "Grad-CAM class activation visualization" example (Selvaraju et al., 2017), with three choices
that matter for a binary medical classifier:

* gradients are taken of the positive-class *logit*, not of the sigmoid probability: for a confident prediction the
  sigmoid saturates and its gradient vanishes (to exactly zero in float32), which would blank the map;
* the map always shows evidence *for* the finding (ReLU of the gradient-weighted feature maps), whatever the
  prediction, so a "normal" call shows what little speaks for the finding rather than something else;
* the gradient model and a `tf.function` with a fixed input signature are built once per model, so the app pays the
  tracing cost once and then gets probability + heatmap from a single forward/backward pass.

Read the maps as "this region", not "this pixel": they are upsampled from the last feature map (8x8 for a 128 px
SecondLook CNN, i.e. 16 px cells), and CNNs often see a smooth blob-like finding by its flanks, so the hottest
point can sit beside the centre of a lesion rather than on it.
"""
from __future__ import annotations

import math
import threading
import weakref

import cv2
import keras
import numpy as np
import tensorflow as tf

LOGIT_LAYER = "logit"
_POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
)


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last layer with a 4-D (batch, h, w, channels) output that is not a pooling layer.

    Grad-CAM uses the last convolutional feature map: deep enough to be about the finding, still spatial. Trailing
    max-pooling only halves its resolution, so it is skipped (an 8x8 map instead of 4x4 for the SecondLook CNN);
    a 1x1 map (e.g. the squeeze-and-excite Reshape) has no spatial information and is skipped too.
    """
    for layer in reversed(model.layers):
        if isinstance(layer, (keras.layers.InputLayer, *_POOLING)):
            continue
        shape = layer.output.shape
        if len(shape) == 4 and (shape[1] or 2) * (shape[2] or 2) > 1:
            return layer.name
    raise ValueError(f"model {model.name!r} has no 4-D feature map to explain")


def target_layer_names(model: keras.Model) -> list[str]:
    """Feature maps to explain: the last one, or for an ensemble (layers prefixed `m<k>_`) each member's last one."""
    from core.models.networks import member_chains

    chains = member_chains(model)
    if len(chains) == 1:
        return [last_conv_layer_name(model)]
    return [last_conv_layer_name(_LayerList(chain, model.name)) for chain in chains]


class _LayerList:
    """Just enough of a model for `last_conv_layer_name` to scan one ensemble member's layers."""

    def __init__(self, layers: list, name: str) -> None:
        self.layers, self.name = layers, name


class GradCam:
    """Probabilities and Grad-CAM heatmaps for a batch, from one forward and one backward pass.

    Build once per model and reuse: construction creates the sub-model and traces and warms up the `tf.function`
    (about a second); every call after that is one graph execution (a few ms for the small models here).
    """

    def __init__(self, model: keras.Model, layer_name: str | None = None) -> None:
        self.layer_names = [layer_name] if layer_name else target_layer_names(model)
        self.layer_name = self.layer_names[0]
        self.input_shape: tuple[int, int, int] = tuple(int(d) for d in model.inputs[0].shape[1:])
        # One sub-model with the tensors we need, sharing the model's weights. An ensemble contributes one
        # feature map per member; their gradient-weighted maps are summed in image space.
        self._grad_model = keras.Model(
            model.inputs[0],
            [[model.get_layer(n).output for n in self.layer_names], model.get_layer(LOGIT_LAYER).output, model.outputs[0]],
        )
        self._size = self.input_shape[:2]
        # Fixed signature (any batch size): traced once, then every call is a single graph execution.
        self._compute = tf.function(self._heatmaps, input_signature=[tf.TensorSpec((None, *self.input_shape), tf.float32)])
        self._compute(tf.zeros((1, *self.input_shape)))  # trace and optimise now, so the first image is fast too

    def _heatmaps(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            # Watching the input records every op, so this also works for a frozen (non-trainable) model.
            tape.watch(x)
            fmaps, logit, prob = self._grad_model(x, training=False)
            # Samples are independent in inference mode, so d(sum of logits)/d fmap is each sample's own gradient.
            target = tf.reduce_sum(logit[:, 0])
        grads = tape.gradient(target, fmaps)
        cam = 0.0
        for fmap, grad in zip(fmaps, grads):
            weights = tf.reduce_mean(grad, axis=(1, 2), keepdims=True)  # one importance per channel per image
            member = tf.reduce_sum(fmap * weights, axis=-1, keepdims=True)
            cam = cam + tf.image.resize(member, self._size, method="bilinear")[..., 0]  # same as cv2 INTER_LINEAR
        cam = tf.nn.relu(cam)
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.clip_by_value(tf.math.divide_no_nan(cam, peak), 0.0, 1.0)  # all-zero map stays zero
        return tf.reshape(prob, [-1]), cam

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prepared batch (n, H, W, C) or one image (H, W, C) -> (probabilities (n,), heatmaps (n, H, W) in [0, 1])."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"expected images of shape {self.input_shape}, got {x.shape[1:]}")
        if len(x) == 0:  # TensorFlow's BatchNorm kernels reject empty batches
            return np.zeros(0, np.float32), np.zeros((0, *self._size), np.float32)
        prob, cam = self._compute(tf.constant(x))
        return prob.numpy(), cam.numpy()


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _cached(model: keras.Model) -> GradCam:
    """One GradCam per live model (Streamlit reruns and threads reuse it; it dies with the model)."""
    with _CACHE_LOCK:
        cam = _CACHE.get(model)
        if cam is None:
            cam = _CACHE[model] = GradCam(model)
        return cam


def gradcam(model: keras.Model, x: np.ndarray) -> tuple[float, np.ndarray]:
    """One prepared image (H, W, C) -> (probability, heatmap (H, W) float32 in [0, 1])."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected one image of shape (H, W, C), got {x.shape}")
    prob, cam = _cached(model)(x)
    return float(prob[0]), cam[0]


def display_size(h: int, w: int, max_side: int = 768, min_side: int = 256) -> tuple[int, int]:
    """(height, width) to show an image at: shrink big ones to `max_side`, enlarge tiny ones to `min_side`."""
    longest = max(h, w)
    scale = max_side / longest if longest > max_side else min_side / longest if longest < min_side else 1.0
    return max(1, round(h * scale)), max(1, round(w * scale))


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.4,
    colormap: int = cv2.COLORMAP_JET,
    max_side: int = 768,
    min_side: int = 256,
) -> np.ndarray:
    """Blend a colour-mapped heatmap over the original image, at display resolution, as uint8 RGB.

    Drawn on the original (not the model's downsized, normalised input) so the reader sees the real picture.
    alpha=0 gives the plain image, alpha=1 the pure colour map.
    """
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be grey (H, W) or RGB (H, W, 3), got shape {image.shape}")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heatmap.shape}")

    h, w = display_size(*image.shape[:2], max_side=max_side, min_side=min_side)
    if (h, w) != image.shape[:2]:
        # INTER_AREA avoids aliasing when shrinking; INTER_CUBIC keeps tiny cell crops crisp when enlarging.
        interp = cv2.INTER_AREA if h < image.shape[0] else cv2.INTER_CUBIC
        image = cv2.resize(image, (w, h), interpolation=interp)
    heat = cv2.resize(np.nan_to_num(heatmap), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = np.round(np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, colormap), cv2.COLOR_BGR2RGB)  # OpenCV colour maps are BGR
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def heatmap_peak(heatmap: np.ndarray) -> tuple[int, int]:
    """(row, col) of the hottest pixel: where the model looked hardest."""
    row, col = np.unravel_index(int(np.argmax(heatmap)), np.shape(heatmap))
    return int(row), int(col)
