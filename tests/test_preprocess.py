"""One preprocessing path: file, bytes and array give the same tensor, with the model's shape."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.inference.preprocess import preprocess
from core.registry import InputSpec


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def grey():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (200, 180), dtype=np.uint8)


@pytest.mark.parametrize("spec", [InputSpec(64, 1), InputSpec(128, 1, "standardize"), InputSpec(64, 3)])
def test_shape_and_dtype(grey, spec):
    x = preprocess(grey, spec)
    assert x.shape == (spec.size, spec.size, spec.channels)
    assert x.dtype == np.float32


def test_unit_range(grey):
    x = preprocess(grey, InputSpec(64, 1))
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_standardize_is_zero_mean_unit_std(grey):
    x = preprocess(grey, InputSpec(128, 1, "standardize"))
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1) < 1e-3


def test_flat_image_does_not_divide_by_zero():
    x = preprocess(np.full((64, 64), 7, np.uint8), InputSpec(64, 1, "standardize"))
    assert np.isfinite(x).all()


def test_file_bytes_and_array_agree(grey, tmp_path):
    spec = InputSpec(96, 1, "standardize")
    data = _png(grey)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    a, b, c = preprocess(grey, spec), preprocess(data, spec), preprocess(str(path), spec)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_rgb_to_grey_and_grey_to_rgb():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 255
    g = preprocess(rgb, InputSpec(64, 1))
    assert g.shape == (64, 64, 1) and 0.25 < g.mean() < 0.35  # ITU-R 601 luma of pure red ≈ 0.299
    c = preprocess(np.full((64, 64), 128, np.uint8), InputSpec(64, 3))
    assert c.shape == (64, 64, 3) and np.allclose(c[..., 0], c[..., 2])
