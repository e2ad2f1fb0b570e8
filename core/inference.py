"""Scoring images with a loaded model: the same path for evaluation, the CLI and the app."""
from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .imageio import ImageSource, read_image
from .preprocess import prepare
from .tasks import InputSpec

SCORE_DECIMALS = 8  # scores are stored in CSVs with this many decimals; rounding here keeps files and cards identical


class _Forward:
    """`model(x, training=False)` as a traced graph, bit-for-bit the same as the eager call, without its overhead.

    An eager Keras call dispatches every layer from Python: ~15 ms for one image through the SecondLook CNN on
    2 cores, against ~3 ms for the same ops run as one graph. Grappler's default rewrites (e.g. fusing
    Conv2D + BiasAdd + ReLU into one oneDNN kernel) change the last float32 bit of some outputs, and scores are
    stored to 8 decimals, so the graph runs with Grappler switched off: the same kernels as the eager call, in
    the same order, hence the same numbers. TensorFlow takes that setting per call from the thread's
    function-call options (no public per-function switch), so each call sets them and puts the old ones back.
    """

    def __init__(self, model) -> None:
        import tensorflow as tf
        from tensorflow.python.eager import context

        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        ref = weakref.ref(model)  # the cache must not keep the model alive
        self.input_shape = shape
        self._fn = tf.function(
            lambda x: ref()(x, training=False), input_signature=[tf.TensorSpec((None, *shape), tf.float32)]
        )
        config = context.context().config  # a fresh ConfigProto with this process's settings (threads etc.)
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        self._options = context.FunctionCallOptions(config_proto=config)
        self._context = context

    def __call__(self, x: np.ndarray) -> np.ndarray:
        ctx = self._context.context()
        saved = ctx.function_call_options
        ctx.function_call_options = self._options
        try:
            return np.asarray(self._fn(x))
        finally:
            ctx.function_call_options = saved


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
    fwd = _forward(model) if isinstance(x, np.ndarray) and x.dtype == np.float32 else None
    if fwd is not None and x.shape[1:] == fwd.input_shape:
        return fwd(x)
    return np.asarray(model(x, training=False))


def predict_tensors(model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Probabilities for a prepared batch, in inference mode (BatchNorm uses its moving statistics)."""
    out = []
    for i in range(0, len(x), batch_size):
        out.append(_call(model, x[i : i + batch_size]).reshape(-1))
    p = np.concatenate(out) if out else np.zeros(0)
    return np.round(p.astype(np.float64), SCORE_DECIMALS)


def score_sources(model, spec: InputSpec, sources: list[ImageSource], batch_size: int = 128, workers: int = 4) -> np.ndarray:
    """Decode, prepare and score many images; raises InputError on the first unreadable one."""
    scores = []
    with ThreadPoolExecutor(workers) as pool:
        for i in range(0, len(sources), batch_size):
            chunk = list(pool.map(lambda s: prepare(read_image(s), spec), sources[i : i + batch_size]))
            scores.append(predict_tensors(model, np.stack(chunk), batch_size))
    return np.concatenate(scores) if scores else np.zeros(0)
