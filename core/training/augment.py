"""Training-time augmentation: what a new site's images may differ by (pose, exposure, stain), applied on the fly.

Never used at inference; `core.inference.preprocess` is the one path from pixels to tensor there.
"""
from __future__ import annotations


def augmenter(kind: str, normalize: str):
    """Geometric/photometric augmentation layers for a recipe's `augment` kind (None for "none")."""
    import keras
    from keras import layers

    if kind == "none":
        return None
    fill = "constant" if normalize == "standardize" else "reflect"
    if kind == "xray_strong":
        fill = "reflect"  # applied to [0, 1] images before standardization
        return keras.Sequential(
            [
                layers.RandomRotation(0.03, fill_mode=fill),  # ±11°
                layers.RandomZoom((-0.15, 0.15), fill_mode=fill),
                layers.RandomTranslation(0.08, 0.08, fill_mode=fill),
            ]
        )
    if kind in ("xray", "xray_flip"):
        ops = [
            layers.RandomRotation(0.02, fill_mode=fill),  # ±7°
            layers.RandomZoom((-0.1, 0.1), fill_mode=fill),
            layers.RandomTranslation(0.06, 0.06, fill_mode=fill),
        ]
        if kind == "xray_flip":
            ops.insert(0, layers.RandomFlip("horizontal"))
        return keras.Sequential(ops)
    if kind in ("cell", "cell_stain"):  # cell_stain adds stain_jitter after these (in the input pipeline)
        return keras.Sequential(
            [
                layers.RandomFlip("horizontal_and_vertical"),
                layers.RandomRotation(0.5, fill_mode=fill),
                layers.RandomZoom((-0.08, 0.08), fill_mode=fill),
                layers.RandomBrightness(0.08, value_range=(0.0, 1.0)),
                layers.RandomContrast(0.1),
            ]
        )
    raise ValueError(f"unknown augmentation {kind!r}")


def contrast_jitter(x):
    """Random gain and offset for standardized X-rays (exposure varies between machines)."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    gain = tf.random.uniform([b, 1, 1, 1], 0.85, 1.15)
    offset = tf.random.uniform([b, 1, 1, 1], -0.15, 0.15)
    return x * gain + offset


def intensity_then_standardize(x):
    """Exposure, gamma, blur-free noise on [0, 1] X-rays, then the same per-image z-score as core.inference.preprocess.

    Hospitals and machines differ in exposure and processing; a model that has seen gamma and contrast
    variation is less surprised by a new site's normal films.
    """
    import tensorflow as tf

    b = tf.shape(x)[0]
    gamma = tf.exp(tf.random.uniform([b, 1, 1, 1], -0.35, 0.35))
    x = tf.clip_by_value(x, 0.0, 1.0) ** gamma
    x = x * tf.random.uniform([b, 1, 1, 1], 0.85, 1.15) + tf.random.uniform([b, 1, 1, 1], -0.08, 0.08)
    x = x + tf.random.normal(tf.shape(x), stddev=tf.random.uniform([b, 1, 1, 1], 0.0, 0.03))
    mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
    std = tf.maximum(tf.math.reduce_std(x, axis=(1, 2, 3), keepdims=True), 1e-3)
    return (x - mean) / std


def stain_jitter(x):
    """Per-image colour balance and gamma on [0, 1] RGB cells: labs differ in Giemsa batch, staining time and
    camera white balance, so a cell model should not key on the exact hue of one lab's smears."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    gain = tf.random.uniform([b, 1, 1, 3], 0.88, 1.12)
    gamma = tf.exp(tf.random.uniform([b, 1, 1, 1], -0.22, 0.22))
    return tf.clip_by_value(tf.clip_by_value(x * gain, 0.0, 1.0) ** gamma, 0.0, 1.0)
