"""Modality guard (measured on the real test splits) and the feature-space OOD signal (synthetic model/features)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.inference.guard import (
    OOD_FILE,
    FeatureOOD,
    extract_features,
    load_ood,
    chroma_p75,
    modality_check,
    modality_stats,
)
from core.training.guards import fit_and_save_ood, measure_modality_guard
from core.models.store import model_dir, model_path, read_card, write_card
from tests.conftest import require_dataset
from tests.imagegen import gradient
from tests.modelgen import install, tiny_model

# ------------------------------------------------------------------------------------------------ modality


def _cell(size: int = 64, rgb=(200, 120, 150), seed: int = 0) -> np.ndarray:
    """A pink disc on black, like a segmented red-cell crop, with a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    disc = (y - size / 2) ** 2 + (x - size / 2) ** 2 < (size * 0.4) ** 2
    img = np.zeros((size, size, 3), np.float64)
    img[disc] = rgb
    img += rng.normal(0, 6, img.shape) * disc[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _xray(size: int = 224) -> np.ndarray:
    g = gradient(size, size)
    return np.asarray(Image.fromarray(g).filter(__import__("PIL.ImageFilter").ImageFilter.GaussianBlur(2)))


def test_grey_xray_passes_xray_and_warns_for_cells():
    xr = _xray()
    assert modality_check(xr, "xray") is None
    msg = modality_check(xr, "smear")
    assert msg and "greyscale" in msg and "Pneumonia" in msg


def test_grey_saved_as_rgb_is_an_xray():
    xr = np.repeat(_xray()[:, :, None], 3, axis=2)
    s = modality_stats(xr)
    assert s.equal_channels and s.chroma_p75 == 0 and s.looks_like == "xray"
    assert modality_check(xr, "xray") is None
    assert modality_check(xr[:, :, :1], "xray") is None  # (H, W, 1) too


def test_colour_cell_warns_for_xray_only():
    for rgb in [(200, 120, 150), (205, 150, 130), (150, 140, 190)]:  # pink, peach and bluish stains all occur
        cell = _cell(rgb=rgb)
        assert modality_check(cell, "smear") is None
        msg = modality_check(cell, "xray")
        assert msg and "Malaria" in msg


def test_small_coloured_annotation_on_xray_is_still_xray():
    xr = np.repeat(_xray()[:, :, None], 3, axis=2).copy()
    xr[10:30, 10:120] = (255, 0, 0)
    assert modality_check(xr, "xray") is None


def test_black_image_and_unknown_modality():
    assert modality_check(np.zeros((64, 64, 3), np.uint8), "xray") is None
    with pytest.raises(ValueError):
        modality_check(_xray(), "ultrasound")


def test_fast_chroma_is_the_statistics_number():
    """The batch's histogram form equals modality_stats' percentile on cells, X-rays, odd shapes, RGBA, 16-bit, black."""
    rng = np.random.default_rng(3)
    images = [_cell(), _cell(130, (150, 60, 170), 1), _xray(), np.stack([_xray()] * 3, -1), np.zeros((40, 50, 3), np.uint8),
              rng.integers(0, 256, (961, 1283, 3), dtype=np.uint8), rng.integers(0, 256, (33, 700, 4), dtype=np.uint8),
              (rng.random((300, 200, 3)) * 65535).astype(np.uint16), rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)]
    for img in images:
        assert chroma_p75(img) == modality_stats(img).chroma_p75, img.shape


def test_guard_rates_on_real_test_splits():
    """Acceptance: fires on >= 99% of the other modality's test images and <= 1% of the task's own."""
    for task in ("pneumonia", "effusion", "malaria"):
        require_dataset(task)
    r = measure_modality_guard("test", variants=False)["rates"]
    assert r["xray images -> xray model"]["n"] == 624 + 177
    assert r["smear images -> smear model"]["n"] == 1865
    assert r["smear images -> xray model"]["rate"] >= 0.99
    assert r["xray images -> smear model"]["rate"] >= 0.99
    assert r["xray images -> xray model"]["rate"] <= 0.01
    assert r["smear images -> smear model"]["rate"] <= 0.01


# ------------------------------------------------------------------------------------------------ OOD, features


def _correlated(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.eye(d) + 0.9 * np.ones((d, d)) / d
    mix[0, 1] = mix[1, 0] = 0.0
    base = rng.normal(size=(n, d)) @ mix * np.linspace(0.5, 3, d) + 5.0
    base[:, 1] = base[:, 0] * 0.98 + rng.normal(0, 0.05, n)  # two strongly correlated units
    return base


def test_fit_threshold_is_the_99th_percentile_on_fresh_data():
    ood = FeatureOOD.fit(_correlated(3000, seed=1))
    fresh = _correlated(20000, seed=2)
    rate = float(ood.is_unusual(fresh).mean())
    assert 0.003 <= rate <= 0.02
    assert ood.quantile == 0.99 and ood.n_fit == 3000 and ood.dim == 16


def test_correlation_breaking_points_are_unusual():
    """Marginally ordinary values that break the units' correlation: only a full covariance sees them."""
    train = _correlated(3000, seed=1)
    ood = FeatureOOD.fit(train)
    mean, sd = train.mean(axis=0), train.std(axis=0)
    odd = np.repeat(mean[None], 500, axis=0)
    sign = np.where(np.arange(500) % 2, 1.0, -1.0)
    odd[:, 0] += 1.5 * sd[0] * sign  # each unit alone is 1.5 sd from its mean, a common value ...
    odd[:, 1] -= 1.5 * sd[1] * sign  # ... but the two always move together, never apart
    assert (np.abs(odd - mean) <= 1.5 * sd + 1e-9).all()
    assert ood.is_unusual(odd).all()
    far = _correlated(500, seed=4) + 10 * train.std(axis=0)
    assert ood.is_unusual(far).all()


def test_out_of_fold_threshold_is_honest_with_few_images():
    # 200 images, 64 dims: in-sample distances are far too small; the out-of-fold threshold is not.
    d = 64
    train = np.random.default_rng(5).normal(size=(200, d))
    ood = FeatureOOD.fit(train)
    fresh = np.random.default_rng(6).normal(size=(5000, d))
    assert ood.is_unusual(fresh).mean() <= 0.05
    in_sample = FeatureOOD.fit(train, folds=0)
    assert in_sample.threshold < ood.threshold


def test_fewer_images_than_dims_and_dead_units():
    f = np.random.default_rng(7).normal(size=(30, 64))
    f[:, :10] = 0.0  # dead ReLU units
    ood = FeatureOOD.fit(f)
    dist = ood.distance(np.random.default_rng(8).normal(size=(5, 64)))
    assert np.isfinite(dist).all() and np.isfinite(ood.threshold)


def test_single_vector_and_shape_errors():
    ood = FeatureOOD.fit(_correlated(200))
    v = _correlated(1, seed=9)[0]
    assert isinstance(ood.distance(v), float) and isinstance(ood.is_unusual(v), bool)
    with pytest.raises(ValueError, match="expected 16 features"):
        ood.distance(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="no model attached"):
        ood.distance(np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError):
        FeatureOOD.fit(np.full((10, 3), np.nan))


def test_save_and_load_roundtrip(tmp_path):
    ood = FeatureOOD.fit(_correlated(300))
    path = ood.save(tmp_path / "x" / OOD_FILE, task="t", note="n")
    back, info = FeatureOOD.load(path)
    x = _correlated(50, seed=11)
    np.testing.assert_allclose(back.distance(x), ood.distance(x))
    assert back.threshold == ood.threshold and info == {"task": "t", "note": "n"}


# ------------------------------------------------------------------------------------------------ OOD, model


def test_from_model_uses_the_input_of_the_logit_layer():
    model = tiny_model((32, 32, 1), width=6)
    x = np.random.default_rng(0).random((80, 32, 32, 1)).astype(np.float32)
    f = extract_features(model, x)
    assert f.shape == (80, 6)
    ood = FeatureOOD.from_model(model, x)
    np.testing.assert_allclose(ood.distance(x[:5]), ood.distance(f[:5]), rtol=1e-5)
    assert isinstance(ood.is_unusual(x[0]), bool)
    assert ood.is_unusual(np.full((4, 32, 32, 1), 50.0, np.float32)).all()  # wildly out-of-range input
    with pytest.raises(ValueError, match="units"):
        FeatureOOD.fit(np.random.default_rng(1).normal(size=(50, 3))).attach(model)


def _synthetic_effusion_dataset(root, n_per_class: int = 30) -> None:
    """A stand-in dataset made in code (blurred noise), laid out like the real one, in a temp dir."""
    rng = np.random.default_rng(0)
    rows = []
    for label in ("NORMAL", "EFFUSION"):
        (root / "effusion" / "images" / label).mkdir(parents=True)
        for i in range(n_per_class):
            img = (rng.random((64, 64)) * 120 + (60 if label == "EFFUSION" else 0)).astype(np.uint8)
            rel = f"images/{label}/{label.lower()}{i}.png"
            Image.fromarray(img).save(root / "effusion" / rel)
            rows.append({"path": rel, "label": label, "split": "train" if i < n_per_class - 5 else "test",
                         "split_group": f"g{label}{i}"})
    pd.DataFrame(rows).to_csv(root / "effusion" / "manifest.csv", index=False)


def test_fit_and_save_ood_end_to_end_in_temp_dirs(tmp_path, monkeypatch):
    data, models = tmp_path / "data", tmp_path / "models"
    _synthetic_effusion_dataset(data)
    monkeypatch.setenv("SECONDLOOK_DATA", str(data))
    task, mid = "effusion", "seed_lenet"  # registry entry with a 64x64x1 input; the file is a tiny stand-in
    install(models, task, mid, tiny_model((64, 64, 1), width=5))

    path = fit_and_save_ood(task, mid, root=models)
    assert path == model_dir(task, mid, models) / OOD_FILE and path.is_file()
    ood, info = FeatureOOD.load(path)
    assert info["model_sha256"] == read_card(task, mid, models)["sha256"]
    assert info["n_val"] == ood.n_fit >= 3 and info["dim"] == 5

    from core.models.store import load_model

    loaded = load_ood(task, mid, root=models, model=load_model(task, mid, root=models))
    assert loaded is not None
    assert isinstance(loaded.is_unusual(np.zeros((64, 64, 1), np.float32)), bool)

    card = read_card(task, mid, models)  # a retrained model file: the cached statistics no longer apply
    card["sha256"] = "0" * 64
    write_card(task, mid, card, models)
    assert load_ood(task, mid, root=models) is None
    assert load_ood(task, "seed_alexnet", root=models) is None  # never fitted


def test_fit_and_save_ood_refuses_a_tampered_model(tmp_path, monkeypatch):
    from core.models.store import ModelIntegrityError

    data, models = tmp_path / "data", tmp_path / "models"
    _synthetic_effusion_dataset(data, 10)
    monkeypatch.setenv("SECONDLOOK_DATA", str(data))
    install(models, "effusion", "seed_lenet", tiny_model((64, 64, 1)))
    p = model_path("effusion", "seed_lenet", models)
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError):
        fit_and_save_ood("effusion", "seed_lenet", root=models)
    assert not (model_dir("effusion", "seed_lenet", models) / OOD_FILE).exists()
