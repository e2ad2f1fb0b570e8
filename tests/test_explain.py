"""Grad-CAM: shapes and ranges for every architecture, faithfulness to the model, and, the point of it all,
that the heatmap lands on the evidence for a model trained on synthetic images with a known lesion."""
from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from core.inference.explain import (
    GradCam,
    gradcam,
    heatmap_peak,
    last_conv_layer_name,
    overlay,
)
from core.models.networks import build, secondlook_cnn
from core.registry import TASKS, InputSpec, ModelSpec, TrainConfig

ALL_SPECS = [m for t in TASKS.values() for m in t.models]


@pytest.fixture(scope="module")
def built_models() -> dict[str, keras.Model]:
    keras.utils.set_random_seed(0)
    return {f"{s.task}/{s.id}": build(s) for s in ALL_SPECS}


@pytest.mark.parametrize("key", [f"{s.task}/{s.id}" for s in ALL_SPECS])
def test_every_architecture_gives_heatmaps_at_input_size(built_models, key):
    model = built_models[key]
    h, w, c = model.inputs[0].shape[1:]
    layer = model.get_layer(last_conv_layer_name(model))
    assert len(layer.output.shape) == 4 and layer.output.shape[1] > 1
    assert not isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.InputLayer))

    x = np.random.default_rng(1).normal(size=(3, h, w, c)).astype(np.float32)
    probs, maps = GradCam(model)(x)
    assert probs.shape == (3,) and maps.shape == (3, h, w) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert all(m.max() in (0.0, 1.0) for m in maps)  # normalised by its own max, or all zero
    np.testing.assert_allclose(probs, np.asarray(model(x, training=False)).reshape(-1), atol=1e-6)


def test_last_conv_layer_is_the_pre_pooling_feature_map(built_models):
    # 128 px input, five blocks: the last conv activation is 8x8; the max-pool after it (4x4) is skipped.
    model = built_models["pneumonia/secondlook_cnn"]
    assert tuple(model.get_layer(last_conv_layer_name(model)).output.shape[1:]) == (8, 8, 128)
    # The squeeze-and-excite model: the rescaled feature map, not the 1x1 excitation reshape.
    se = built_models["malaria/seed_model3"]
    assert isinstance(se.get_layer(last_conv_layer_name(se)), keras.layers.Multiply)
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError):
        last_conv_layer_name(dense_only)


def test_probability_is_the_models_own_and_batch_equals_single(built_models):
    model = built_models["malaria/seed_model3"]  # BatchNorm + Dropout: must run in inference mode
    x = np.random.default_rng(2).uniform(size=(4, 64, 64, 3)).astype(np.float32)
    cam = GradCam(model)
    probs, maps = cam(x)
    np.testing.assert_allclose(probs, np.asarray(model(x, training=False)).reshape(-1), atol=1e-6)
    p1, m1 = cam(x[1])  # a single (H, W, C) image is a batch of one
    assert p1.shape == (1,) and m1.shape == (1, 64, 64)
    np.testing.assert_allclose(p1[0], probs[1], atol=1e-6)
    np.testing.assert_allclose(m1[0], maps[1], atol=1e-5)
    p, m = gradcam(model, x[1])
    assert isinstance(p, float) and abs(p - probs[1]) < 1e-6 and m.shape == (64, 64)
    with pytest.raises(ValueError):
        cam(np.zeros((1, 32, 32, 3), np.float32))
    empty_p, empty_m = cam(np.zeros((0, 64, 64, 3), np.float32))
    assert empty_p.shape == (0,) and empty_m.shape == (0, 64, 64)


def test_gradcam_reuses_one_explainer_per_model(built_models, monkeypatch):
    model = built_models["pneumonia/seed_baseline_adam"]
    x = np.zeros((64, 64, 1), np.float32)
    gradcam(model, x)
    built = []
    monkeypatch.setattr(GradCam, "__init__", lambda self, *a, **k: built.append(1))
    gradcam(model, x)  # a second call must not build (and trace) again
    assert built == []


def test_all_zero_feature_map_gives_zero_heatmap_not_nan(built_models):
    # Bias-free convs + fresh BatchNorm (mean 0, beta 0) + ReLU: a black image gives an all-zero feature map.
    model = built_models["malaria/secondlook_cnn"]
    _, maps = GradCam(model)(np.zeros((2, 64, 64, 3), np.float32))
    assert np.isfinite(maps).all() and (maps == 0).all()


def test_heatmap_uses_the_logit_so_saturated_predictions_still_explain():
    """Scaling the logit by a positive factor cannot change what the model looks at. With gradients of the sigmoid,
    a saturated probability (exactly 1.0 or ~0 in float32) would have a zero gradient and a blank map."""
    spec = next(s for s in ALL_SPECS if (s.task, s.id) == ("malaria", "secondlook_cnn"))
    keras.utils.set_random_seed(0)  # its own weights: the shared fixture's depend on how many models the registry has
    base = build(spec)
    x = np.random.default_rng(3).uniform(size=(3, 64, 64, 3)).astype(np.float32)
    _, ref = GradCam(base)(x)
    assert (ref.max(axis=(1, 2)) == 1.0).all()
    for bias in (1e4, -1e4):  # saturated "finding" and saturated "no finding"
        model = build(spec)
        model.set_weights(base.get_weights())
        kernel, _ = model.get_layer("logit").get_weights()
        model.get_layer("logit").set_weights([kernel * 1e3, np.array([bias], np.float32)])
        probs, maps = GradCam(model)(x)
        assert (probs == (1.0 if bias > 0 else 0.0)).all()
        # Same evidence FOR the finding whatever the prediction.
        np.testing.assert_allclose(maps, ref, atol=2e-3)


# --- the key test: does the map point at the lesion? -------------------------------------------------------------

SIZE = 64


def _synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy 64x64 'films' with an uneven exposure and a bright bar in every image (a distractor as bright as the
    lesion); positives also have a Gaussian blob ('lesion') of random size, contrast and place.
    Returns images (n, 64, 64, 1), labels, and the blob (row, col, sigma) of every image (used only if positive)."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    x = rng.normal(0.3, 0.08, (n, SIZE, SIZE)).astype(np.float32)
    y = rng.permutation(np.arange(n) % 2).astype(np.float32)
    blobs = np.zeros((n, 3), np.float32)
    for i in range(n):
        tilt = rng.normal(size=2) * 0.004
        x[i] += tilt[0] * (yy - SIZE / 2) + tilt[1] * (xx - SIZE / 2) + rng.uniform(-0.1, 0.1)
        r, c = rng.integers(4, SIZE - 16, 2)
        if rng.random() < 0.5:
            x[i, r : r + 2, c : c + 12] += 0.5
        else:
            x[i, r : r + 12, c : c + 2] += 0.5
        sigma = rng.uniform(4.0, 6.0)
        cy, cx = rng.uniform(2 * sigma, SIZE - 2 * sigma, 2)
        blobs[i] = cy, cx, sigma
        if y[i]:
            x[i] += rng.uniform(0.3, 0.6) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return x[..., None], y, blobs


def _recalibrate_batchnorm(model: keras.Model, x: np.ndarray) -> None:
    """A few hundred steps leave BatchNorm's moving averages behind the weights; set them to the exact statistics
    of the training set so inference mode (what Grad-CAM uses) sees the network as it was trained."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)


@pytest.fixture(scope="module")
def trained_blob_model():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train, _ = _synthetic(400, rng)
    x_test, y_test, blobs = _synthetic(60, rng)
    spec = ModelSpec("synthetic", "synthetic", "synthetic blobs", False, InputSpec(SIZE, 1), TrainConfig(epochs=14), "")
    # The SecondLook architecture with two blocks: the last feature map is 32x32 (2 px cells).
    model = secondlook_cnn(spec, (8, 16), dropout=0.1)
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit(x_train, y_train, batch_size=16, epochs=14, verbose=0)
    _recalibrate_batchnorm(model, x_train)
    return model, x_test, y_test, blobs


def test_heatmap_peak_falls_on_the_lesion(trained_blob_model):
    model, x, y, blobs = trained_blob_model
    probs, maps = GradCam(model)(x)
    assert np.mean((probs > 0.5) == (y == 1)) >= 0.9, "the model must first learn the task"

    pos = np.flatnonzero(y == 1)
    assert len(pos) >= 20 and np.mean(probs[pos] > 0.5) >= 0.9
    peaks = np.array([heatmap_peak(maps[i]) for i in pos], np.float32)
    centre, sigma = blobs[pos, :2], blobs[pos, 2]
    # "On the lesion" = within 2 sigma of its centre, where the blob has faded to 13.5% of its height. A CNN sees a
    # smooth blob mostly by its flanks, so the peak is typically about 1 sigma from the centre, not at it.
    hit = np.hypot(*(peaks - centre).T) <= 2 * sigma
    assert hit.mean() >= 0.8, f"peak on the lesion for only {hit.mean():.0%} of positives"

    # The criterion can fail: the same peaks judged against another image's lesion, or maps flipped, mostly miss.
    wrong = np.roll(centre, 1, axis=0)
    assert (np.hypot(*(peaks - wrong).T) <= 2 * sigma).mean() <= 0.3
    flipped = np.array([heatmap_peak(maps[i][::-1, ::-1]) for i in pos], np.float32)
    assert (np.hypot(*(flipped - centre).T) <= 2 * sigma).mean() <= 0.3


# --- overlay ----------------------------------------------------------------------------------------------------


def _picture(h: int, w: int, rgb: bool) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    grey = ((yy * 3 + xx * 5) % 256).astype(np.uint8)
    return np.stack([grey, 255 - grey, grey // 2], axis=2) if rgb else grey


@pytest.mark.parametrize("rgb", [False, True])
def test_overlay_shape_dtype_and_alpha_extremes(rgb):
    img = _picture(300, 500, rgb)
    heat = np.zeros((64, 64), np.float32)
    heat[10:20, 30:40] = 1.0
    out = overlay(img, heat)
    assert out.shape == (300, 500, 3) and out.dtype == np.uint8
    expected = img if rgb else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    np.testing.assert_array_equal(overlay(img, heat, alpha=0.0), expected)
    pure = overlay(img, heat, alpha=1.0)
    # Pure colour map, in RGB: JET is deep blue at 0 and dark red at 1.
    assert pure[0, 0, 2] > 100 and pure[0, 0, 0] < 50
    hot = heatmap_peak(cv2.resize(heat, (500, 300), interpolation=cv2.INTER_LINEAR))
    assert pure[hot][0] > 100 and pure[hot][2] < 50
    assert (pure != overlay(img, heat, alpha=0.4)).any()


def test_overlay_resizes_to_display_size():
    heat = np.random.default_rng(4).uniform(size=(8, 8)).astype(np.float32)
    big = overlay(_picture(2000, 1000, False), heat, max_side=768)
    assert big.shape == (768, 384, 3)
    np.testing.assert_array_equal(
        overlay(_picture(2000, 1000, False), heat, alpha=0.0),
        cv2.cvtColor(cv2.resize(_picture(2000, 1000, False), (384, 768), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB),
    )
    cell = overlay(_picture(64, 64, True), heat)  # a malaria cell crop: enlarged so it can be seen
    assert cell.shape == (256, 256, 3)
    assert overlay(_picture(600, 400, True), heat).shape == (600, 400, 3)  # mid-size: left alone


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5x"])
def test_overlay_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError):
        overlay(_picture(32, 32, False), np.zeros((8, 8), np.float32), alpha=alpha)


def test_overlay_rejects_bad_inputs():
    with pytest.raises(ValueError):
        overlay(_picture(32, 32, False).astype(np.float32), np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError):
        overlay(_picture(32, 32, False), np.zeros((1, 8, 8), np.float32))


def test_heatmap_peak():
    heat = np.zeros((10, 20), np.float32)
    heat[7, 3] = 1.0
    assert heatmap_peak(heat) == (7, 3)


def test_ensemble_explains_every_member():
    """An ensemble's map sums its members' gradient-weighted maps (gradients of the averaged logit)."""
    from core.inference.explain import GradCam, target_layer_names
    from core.models.networks import build, ensemble
    from core.registry import TASKS

    spec = TASKS["effusion"].model("secondlook_ensemble")
    keras.utils.set_random_seed(3)
    members = [build(spec), build(spec)]
    ens = ensemble(members, "ens")
    names = target_layer_names(ens)
    assert len(names) == 2 and names[0].startswith("m0_") and names[1].startswith("m1_")
    x = np.random.default_rng(0).normal(size=(2, 128, 128, 1)).astype(np.float32)
    prob, cam = GradCam(ens)(x)
    np.testing.assert_allclose(prob, np.asarray(ens(x, training=False)).ravel(), atol=1e-6)
    assert cam.shape == (2, 128, 128) and cam.min() >= 0 and cam.max() <= 1
    # One member alone gives a different map: both members contribute.
    _, cam0 = GradCam(ens, layer_name=names[0])(x)
    assert not np.allclose(cam, cam0)
