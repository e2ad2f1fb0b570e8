"""Scoring images with a loaded model: the same path for evaluation, the CLI and the app."""
from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.special import expit

from core.inference.preprocess import prepare
from core.io.images import ImageSource, read_image
from core.registry import InputSpec

SCORE_DECIMALS = 8  # scores are stored in CSVs with this many decimals; rounding here keeps files and cards identical


def _logit_head(model):
    """The sub-model up to the `logit` layer when the model's output is sigmoid(logit) (every bundled model), else None."""
    import keras

    try:
        logit, prob = model.get_layer("logit"), model.get_layer("probability")
    except ValueError:
        return None
    if model.layers[-1] is not prob or prob.get_config().get("activation") != "sigmoid":
        return None
    return keras.Model(model.inputs, logit.output)


class _Forward:
    """The model's inference function as one traced graph, with BatchNorm folded into the convolutions.

    An eager Keras call dispatches every layer from Python: ~15 ms for one image through the SecondLook CNN on
    2 cores, against ~3 ms for the same ops run as one graph. Folding (core.models.fold) saves another 13-25% on the
    BatchNorm CNNs and lets Grappler fuse each Conv + bias + ReLU into one oneDNN kernel. Both move outputs by float
    rounding only (< 1e-6).

    A score must not depend on how many images were scored with it (the app scores one upload, evaluation scores
    batches of 128), but float32 kernels are not batch-invariant: oneDNN takes another path for a batch of one, and
    Eigen's vectorised sigmoid differs from its scalar tail, and on some CPUs (AMD EPYC) a float32 matrix product's row
    depends on the number of rows. So the graph stops at the logit, its Dense layers run in float64
    (core.models.fold.inference_copy), a lone image is run as a batch of two, and the sigmoid is applied in float64
    outside the graph: every image gets the same score in any batch (tests/test_inference.py).
    """

    def __init__(self, model) -> None:
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        self.input_shape = shape
        self._ref = weakref.ref(model)  # the cache must not keep the model alive
        self._build(model)

    def _build(self, model) -> None:
        import tensorflow as tf

        from core.models.fold import inference_copy, weights_fingerprint

        net = inference_copy(model)
        # A folded copy is a snapshot of the weights (checked on every call); an unfolded model is used live.
        self._fingerprint_of = weights_fingerprint
        self._fingerprint = None if net is model else weights_fingerprint(model)
        head = _logit_head(net)
        self.returns_logit = head is not None
        if head is not None:
            fn = lambda x: head(x, training=False)  # noqa: E731 - head shares the layers, not the model object
        elif net is model:
            ref = self._ref
            fn = lambda x: ref()(x, training=False)  # noqa: E731
        else:
            fn = lambda x: net(x, training=False)  # noqa: E731
        spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
        self._fn = tf.function(fn, input_signature=[spec], autograph=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (n,) float64."""
        if self._fingerprint is not None:
            model = self._ref()
            if self._fingerprint_of(model) != self._fingerprint:
                self._build(model)
        n = len(x)
        if n == 1:
            x = np.concatenate([x, x])
        out = np.asarray(self._fn(x)).reshape(-1)[:n].astype(np.float64)
        return expit(out) if self.returns_logit else out


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FORWARD_LOCK = threading.Lock()


def _forward(model):
    """The cached graph forward pass of a Keras model on the TensorFlow backend, or None (then: eager call)."""
    with _FORWARD_LOCK:
        try:
            fwd = _FORWARD.get(model)
        except TypeError:  # not weak-referenceable
            return None
        if fwd is None:
            try:
                import keras

                if keras.backend.backend() != "tensorflow" or not getattr(model, "inputs", None):
                    return None
                fwd = _FORWARD[model] = _Forward(model)
            except Exception:  # anything unusual (subclassed model, odd inputs): the plain eager call is always right
                return None
        return fwd


def _call(model, x: np.ndarray) -> np.ndarray:
    fwd = _forward(model)
    if fwd is not None and x.shape[1:] == fwd.input_shape:
        return fwd(x)
    return np.asarray(model(x, training=False)).reshape(-1).astype(np.float64)


# Other engines plug in by module name: core.export builds the ONNX graph from this package, so importing it here
# statically would make the two packages import each other.
ENGINES = {"onnx": ("core.export.onnx_engine", "predict_tensors_onnx")}


def _engine(name: str):
    import importlib

    if name not in ENGINES:
        raise ValueError(f"SECONDLOOK_ENGINE={name!r} is not an engine; choose tf or {', '.join(ENGINES)}")
    module, fn = ENGINES[name]
    return getattr(importlib.import_module(module), fn)


def predict_tensors(model, x: np.ndarray, batch_size: int = 128, engine: str | None = None) -> np.ndarray:
    """Probabilities for a prepared batch, in inference mode (BatchNorm uses its moving statistics).

    `SECONDLOOK_ENGINE=onnx` (or `engine="onnx"`) runs the same logit graph under onnxruntime instead
    (core.export.onnx_engine): faster for one image, slower for batches on 2 CPUs, scores within 1e-6 of TensorFlow's
    (docs/scale.md).
    """
    engine = (engine or os.environ.get("SECONDLOOK_ENGINE", "tf")).lower()
    if engine != "tf":
        return _engine(engine)(model, x, batch_size)
    x = np.asarray(x, dtype=np.float32)
    out = []
    for i in range(0, len(x), batch_size):
        out.append(_call(model, x[i : i + batch_size]).reshape(-1))
    p = np.concatenate(out) if out else np.zeros(0)
    return np.round(p, SCORE_DECIMALS)


def score_sources(model, spec: InputSpec, sources: list[ImageSource], batch_size: int = 128, workers: int = 4) -> np.ndarray:
    """Decode, prepare and score many images; raises InputError on the first unreadable one.

    The next chunk is decoded by the worker threads while the model scores the current one (decoders and TensorFlow
    both release the GIL), so neither waits for the other.
    """
    def load(chunk):
        return [pool.submit(lambda s: prepare(read_image(s), spec), s) for s in chunk]

    chunks = [sources[i : i + batch_size] for i in range(0, len(sources), batch_size)]
    scores = []
    with ThreadPoolExecutor(workers) as pool:
        pending = load(chunks[0]) if chunks else []
        for k in range(len(chunks)):
            try:
                x = np.stack([f.result() for f in pending])
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pending = load(chunks[k + 1]) if k + 1 < len(chunks) else []
            scores.append(predict_tensors(model, x, batch_size))
    return np.concatenate(scores) if scores else np.zeros(0)
