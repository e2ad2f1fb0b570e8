"""onnxruntime as an alternative scoring engine for prepared tensors, measured against core.inference's TF graph.

`predict_tensors_onnx(model, x)` has the contract of core.inference.forward.predict_tensors: the graph stops at the logit,
a lone image runs as a batch of two, the sigmoid is float64 outside the graph, scores are rounded to 8 decimals. The
ONNX graph is converted once per model (tf2onnx, a few seconds) and cached. Opt-in with SECONDLOOK_ENGINE=onnx:
measured on 2 CPUs it is 1.4-2.7x faster for one image for most bundled models and 0.5-0.9x for batches of 128
(docs/scale.md); a model without a `logit` layer cannot use it.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np
from scipy.special import expit

from core.export._core import SCORE_DECIMALS
from core.export.graph import logit_function
from core.export.writers import onnx_proto


class OnnxForward:
    """A Keras model's logit head as an onnxruntime session (BatchNorm folded before conversion)."""

    def __init__(self, model, threads: int | None = None) -> None:
        import onnxruntime as ort

        from core.export._core import InputSpec

        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        fn, sig = logit_function(model, InputSpec(shape[0], shape[2]))
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # spinning threads starve a shared CPU
        if threads:
            opts.intra_op_num_threads = threads
        self.input_shape = shape
        self.session = ort.InferenceSession(onnx_proto(fn, sig).SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n == 1:
            x = np.concatenate([x, x])
        logit = self.session.run(["logit"], {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]
        return expit(logit.reshape(-1)[:n].astype(np.float64))


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def onnx_forward(model) -> OnnxForward:
    with _LOCK:
        fwd = _CACHE.get(model)
        if fwd is None:
            fwd = _CACHE[model] = OnnxForward(model)
        return fwd


def predict_tensors_onnx(model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """core.inference.forward.predict_tensors, run by onnxruntime (selected there by SECONDLOOK_ENGINE=onnx)."""
    fwd = onnx_forward(model)
    x = np.asarray(x, dtype=np.float32)
    out = [fwd(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.round(np.concatenate(out) if out else np.zeros(0), SCORE_DECIMALS)
