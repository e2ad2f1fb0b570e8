"""core.export: SavedModel and ONNX exports give our scores (normalisation and calibration inside the graph)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from core.export import ExportError, export_onnx, export_savedmodel
from core.export._core import model_pixels
from core.export.graph import calibration_of
from core.inference.preprocess import normalize
from core.registry import InputSpec
from tests.conftest import require_dataset
from tests.modelgen import bn_model

PARITY = 1e-5


def _savedmodel_probs(version_dir, pixels: np.ndarray, signature: str = "serving_default") -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures[signature]
    out = [fn(pixels=tf.constant(pixels[i : i + 256]))["probability"].numpy() for i in range(0, len(pixels), 256)]
    return np.concatenate(out).astype(np.float64)


def _onnx_probs(path, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = [s.run(["probability"], {"pixels": pixels[i : i + 256].astype(np.float32)})[0] for i in range(0, len(pixels), 256)]
    return np.concatenate(out).reshape(-1).astype(np.float64)


def test_both_exports_reproduce_our_scores_on_the_malaria_test_split(tmp_path):
    require_dataset("malaria")
    from benchmarks.common import test_split
    from core.io.images import read_image
    from core.inference.calibrate import calibrated
    from core.inference.forward import score_sources
    from core.models.store import load_model, read_card

    task, mid = "malaria", "secondlook_cnn"
    spec = InputSpec(64, 3, "unit")
    files = test_split(task)["file"].tolist()
    assert len(files) >= 1000
    model = load_model(task, mid)
    ours = calibrated(task, mid, score_sources(model, spec, files))  # the probability every surface shows
    pixels = np.stack([model_pixels(read_image(f), spec) for f in files])
    card = read_card(task, mid)
    sm = export_savedmodel(model, spec, card, task, mid, tmp_path / "sm")
    onnx = export_onnx(model, spec, card, task, mid, tmp_path / "onnx")
    d_sm = np.abs(_savedmodel_probs(sm, pixels.astype(np.float32)) - ours).max()
    d_u8 = np.abs(_savedmodel_probs(sm, pixels[:300], "serving_uint8") - ours[:300]).max()
    d_onnx = np.abs(_onnx_probs(onnx, pixels) - ours).max()
    assert d_sm <= PARITY and d_u8 <= PARITY and d_onnx <= PARITY, (d_sm, d_u8, d_onnx)


def _synthetic(norm: str):
    spec = InputSpec(32, 1, norm)
    model = bn_model((32, 32, 1), seed=4)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(20, 32, 32, 1)).astype(np.uint8)
    pixels[0] = 7  # a flat image: the std floor path of 'standardize'
    x = np.stack([normalize(p, spec.normalize) for p in pixels])
    import keras

    logit = np.asarray(keras.Model(model.inputs, model.get_layer("logit").output)(x, training=False)).reshape(-1)
    return spec, model, pixels, logit.astype(np.float64)


@pytest.mark.parametrize("fmt", ["savedmodel", "onnx"])
@pytest.mark.parametrize("norm", ["unit", "standardize"])
@pytest.mark.parametrize("calibrated", [False, True])
def test_synthetic_exports_apply_normalisation_and_calibration(tmp_path, fmt, norm, calibrated):
    spec, model, pixels, logit = _synthetic(norm)
    a, b = 0.6, -0.4
    card = {"threshold": 0.5, "sha256": "0" * 64}
    if calibrated:
        card["calibration"] = {"method": "platt", "a": a, "b": b}
    want = expit(a * logit + b) if calibrated else expit(logit)
    if fmt == "savedmodel":
        got = _savedmodel_probs(export_savedmodel(model, spec, card, "pneumonia", "secondlook_cnn", tmp_path), pixels.astype(np.float32))
    else:
        got = _onnx_probs(export_onnx(model, spec, card, "pneumonia", "secondlook_cnn", tmp_path), pixels)
    np.testing.assert_allclose(got, want, rtol=0, atol=PARITY)
    contract = json.loads((tmp_path / "secondlook_signature.json").read_text())
    assert ("Platt" in contract["outputs"]["probability"]) == calibrated
    assert ("std" in contract["normalisation_inside"]) == (norm == "standardize")


def test_calibration_entries_are_validated():
    assert calibration_of({}) is None
    assert calibration_of({"calibration": {"method": "platt", "a": 2, "b": "0.5"}}) == (2.0, 0.5)
    for bad in ({"method": "isotonic"}, {"method": "platt", "a": 1}, {"method": "platt", "a": "x", "b": 0},
                {"method": "platt", "a": float("nan"), "b": 0}, [1, 2]):
        with pytest.raises(ValueError):
            calibration_of({"calibration": bad})


def test_export_refuses_a_non_empty_target(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"x")
    spec, model, _, _ = _synthetic("unit")
    with pytest.raises(ExportError, match="not empty"):
        export_savedmodel(model, spec, {}, "pneumonia", "secondlook_cnn", tmp_path)


def test_onnx_engine_setting_gives_our_scores_in_any_batch(monkeypatch):
    """SECONDLOOK_ENGINE=onnx: predict_tensors runs on onnxruntime, same contract (batch-invariant, 8 decimals)."""
    from core.inference import forward as inference

    model = bn_model((32, 32, 3), seed=6)
    x = np.random.default_rng(2).normal(size=(20, 32, 32, 3)).astype(np.float32)
    tf_scores = inference.predict_tensors(model, x)
    monkeypatch.setenv("SECONDLOOK_ENGINE", "onnx")
    whole = inference.predict_tensors(model, x)
    one_by_one = np.concatenate([inference.predict_tensors(model, x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(whole, tf_scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(one_by_one, whole)
    assert np.array_equal(whole, np.round(whole, 8))
