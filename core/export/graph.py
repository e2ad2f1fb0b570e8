"""The serving function: model-size pixels in, calibrated probability out, normalisation inside the graph.

Putting the normalisation and calibration in the graph means a serving client cannot get them wrong: it sends the
pixels it decoded and resized, and reads `probability`.
"""
from __future__ import annotations

import math

from core.export._core import InputSpec, fold_batchnorm

STD_FLOOR = 1e-3  # core.inference.preprocess.normalize: per-image std is floored here


def calibration_of(card: dict) -> tuple[float, float] | None:
    """(a, b) of a Platt calibration in the card (`{"method": "platt", "a": .., "b": ..}`), or None when it has none.

    Anything else under `calibration` is refused: silently exporting uncalibrated scores would be worse than failing.
    """
    cal = card.get("calibration")
    if cal is None or (isinstance(cal, dict) and cal.get("method") == "none" and (cal.get("a"), cal.get("b")) == (1.0, 0.0)):
        return None  # no map, or the identity chosen by cross-fitting: the raw score is shown
    if not isinstance(cal, dict) or cal.get("method") != "platt":
        raise ValueError(f"unsupported calibration entry in the model card: {cal!r} (only {{'method': 'platt', 'a', 'b'}})")
    try:
        a, b = float(cal["a"]), float(cal["b"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"a Platt calibration needs numeric 'a' and 'b'; the card has {cal!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"the card's Platt calibration is not finite: a={a}, b={b}")
    return a, b


def normalisation_text(spec: InputSpec) -> str:
    if spec.normalize == "unit":
        return "x = pixels / 255"
    if spec.normalize == "standardize":
        return f"x = pixels / 255, then per image x = (x - mean(x)) / max(std(x), {STD_FLOOR:g}) over all its pixels"
    raise ValueError(f"unknown normalization {spec.normalize!r}")


def logit_and_probability(model):
    """(f(x) -> logit or None, f(x) -> probability) for a Keras model, BatchNorm folded for speed."""
    import keras

    net = fold_batchnorm(model)
    try:
        logit_layer = net.get_layer("logit")
        head = keras.Model(net.inputs, logit_layer.output)
    except ValueError:
        head = None
    return head, net


def normalise(pixels, spec: InputSpec):
    """TensorFlow version of core.inference.preprocess.normalize for a batch."""
    import tensorflow as tf

    x = tf.cast(pixels, tf.float32) / 255.0
    if spec.normalize == "unit":
        return x
    if spec.normalize == "standardize":
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        std = tf.sqrt(tf.reduce_mean(tf.square(x - mean), axis=[1, 2, 3], keepdims=True))
        return (x - mean) / tf.maximum(std, STD_FLOOR)
    raise ValueError(f"unknown normalization {spec.normalize!r}")


def serving_function(model, spec: InputSpec, calibration: tuple[float, float] | None, dtype: str = "float32",
                     nets=None):
    """A tf.function(pixels) -> {"probability", "logit"}: see `describe` for the contract.

    `nets`: (head, net) from `logit_and_probability`, to share one folded copy between several signatures (a
    SavedModel must track the models whose variables its functions use).
    """
    import tensorflow as tf

    head, net = nets if nets is not None else logit_and_probability(model)
    a, b = calibration if calibration is not None else (1.0, 0.0)

    def serve(pixels):
        x = normalise(pixels, spec)
        if head is not None:
            logit = tf.reshape(head(x, training=False), [-1])
        else:  # a model without a `logit` layer: recover it from the probability
            p = tf.clip_by_value(tf.reshape(net(x, training=False), [-1]), 1e-7, 1 - 1e-7)
            logit = tf.math.log(p) - tf.math.log1p(-p)
        return {"probability": tf.sigmoid(a * logit + b), "logit": logit}

    sig = tf.TensorSpec((None, spec.size, spec.size, spec.channels), getattr(tf, dtype), name="pixels")
    return tf.function(serve, input_signature=[sig], autograph=False), sig


def logit_function(model, spec: InputSpec):
    """tf.function(x) -> logit on prepared (normalised) tensors: the graph core.inference runs, for other runtimes."""
    import tensorflow as tf

    head, net = logit_and_probability(model)
    if head is None:
        raise ValueError("the model has no `logit` layer")
    sig = tf.TensorSpec((None, spec.size, spec.size, spec.channels), tf.float32, name="x")
    return tf.function(lambda x: {"logit": tf.reshape(head(x, training=False), [-1])}, input_signature=[sig],
                       autograph=False), sig


def describe(task: str, model_id: str, spec: InputSpec, card: dict, calibration: tuple[float, float] | None,
             fmt: str) -> dict:
    """The serving contract, written next to the export (secondlook_signature.json) and into its docstrings."""
    from core.export._core import get_task

    t = get_task(task)
    grey = "grey (from RGB: OpenCV COLOR_RGB2GRAY)" if spec.channels == 1 else "RGB (grey repeated into 3 channels)"
    inputs = {"pixels": {"dtype": "float32", "shape": [None, spec.size, spec.size, spec.channels],
                         "values": f"0..255, {grey}, resized to {spec.size}x{spec.size} (OpenCV INTER_AREA when "
                                   "shrinking, INTER_LINEAR when enlarging), no other change"}}
    signatures = {"serving_default": inputs}
    if fmt == "savedmodel":
        signatures["serving_uint8"] = {"pixels": {**inputs["pixels"], "dtype": "uint8"}}
    return {
        "task": task, "model": model_id, "model_sha256": card.get("sha256"), "format": fmt,
        "signatures": signatures,
        "normalisation_inside": normalisation_text(spec),
        "outputs": {
            "probability": "float32 [batch]: " + (
                f"sigmoid({calibration[0]!r} * logit + {calibration[1]!r}) (Platt calibration from the model card)"
                if calibration else "sigmoid(logit) (the card has no calibration: identity)"),
            "logit": "float32 [batch]: the model's uncalibrated logit",
        },
        "threshold": card.get("threshold"),
        "decision": f"probability >= threshold -> {t.positive!r}, else {t.negative!r}",
        "labels": {"negative": t.negative, "positive": t.positive},
    }


def doc_text(contract: dict) -> str:
    s = contract["signatures"]["serving_default"]["pixels"]
    return (f"SecondLook {contract['task']}/{contract['model']}: input 'pixels' {s['dtype']} {s['shape']} with values "
            f"{s['values']}. Inside: {contract['normalisation_inside']}. Output 'probability' "
            f"{contract['outputs']['probability']}; decision {contract['decision']} at threshold {contract['threshold']}.")

