"""Stain normalisation of whole fields: fields drawn in code by Beer-Lambert at different stain strengths and lights
come out alike; blank pictures pass unchanged; the gain is bounded; the reference is what the training session gives."""
from __future__ import annotations

import numpy as np
import pytest

from core.data import stain
from core.fields.cuts import cut_cells, fields_available
from tests.conftest import IN_CI
from tests.test_fields_finder import _grid_centres

CELL_OD = np.array([0.30, 1.50, 0.50])  # per channel at strength 1: a red cell absorbs green most


def _beer_lambert_field(strength: float, light=(204.0, 230.0, 212.0), seed: int = 0) -> np.ndarray:
    """A 480x640 field of 24 cells whose optical density is `strength` x CELL_OD, a dark dot in one cell."""
    yy, xx = np.mgrid[0:480, 0:640]
    od = np.zeros((480, 640, 3))
    for i, (cx, cy) in enumerate(_grid_centres()):
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 36 ** 2
        od[disc] = CELL_OD * strength * (0.9 + 0.2 * (i % 3) / 2)
        if i == 5:
            od[(xx - cx) ** 2 + (yy - cy) ** 2 <= 6 ** 2] = 3 * CELL_OD * strength  # a parasite-like dot
    noise = np.random.default_rng(seed).normal(0, 1.0, od.shape)
    return np.clip(np.asarray(light) * np.exp(-od) + noise, 0, 255).astype(np.uint8)


def test_fields_of_different_stain_and_light_come_out_alike():
    dark, pale = _beer_lambert_field(1.0), _beer_lambert_field(0.35, light=(170.0, 190.0, 180.0), seed=1)
    assert np.abs(dark.astype(int) - pale.astype(int)).mean() > 20  # they start far apart
    a, b = stain.normalize_field(dark), stain.normalize_field(pale)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3
    for out in (a, b):
        st = stain.field_stain(out)
        np.testing.assert_allclose(st.cell_od, stain.REFERENCE.cell_od, rtol=0.08)
        np.testing.assert_allclose(st.background, stain.REFERENCE.background, atol=3)


def test_the_parasite_dot_keeps_its_contrast():
    out = stain.normalize_field(_beer_lambert_field(0.35))
    cx, cy = _grid_centres()[5]
    dot, rim = out[cy, cx, 1], out[cy, cx + 25, 1]
    assert int(rim) - int(dot) > 15


def test_a_field_without_stain_passes_unchanged():
    blank = np.full((480, 640, 3), 200, np.uint8)
    assert np.array_equal(stain.normalize_field(blank), blank)
    assert stain.field_stain(blank).cell_od == (0.0, 0.0, 0.0)


def test_the_gain_is_bounded():
    faint = _beer_lambert_field(0.02)
    st = stain.field_stain(stain.normalize_field(faint))
    assert st.cell_od[1] < 0.5 * stain.REFERENCE.cell_od[1]  # scaled by MAX_GAIN at most, not to the reference


def test_cut_cells_normalises_the_whole_field_first():
    rgb, boxes = _beer_lambert_field(0.4), np.array([[280, 200, 80, 80], [10, 10, 80, 80]])
    assert np.array_equal(cut_cells(rgb, boxes, stain="normalize"), cut_cells(stain.normalize_field(rgb), boxes))
    assert not np.array_equal(cut_cells(rgb, boxes, stain="normalize"), cut_cells(rgb, boxes))
    with pytest.raises(ValueError, match="unknown field stain"):
        cut_cells(rgb, boxes, stain="reinhard")


@pytest.mark.skipif(not fields_available() and not IN_CI, reason="malaria_fields not in SECONDLOOK_DATA")
def test_reference_is_the_training_sessions_median():
    from core.fields.cuts import TRAIN_SESSIONS, session_stain

    got = session_stain(TRAIN_SESSIONS)
    np.testing.assert_allclose(got.background, stain.REFERENCE.background, atol=0.5)
    np.testing.assert_allclose(got.cell_od, stain.REFERENCE.cell_od, atol=5e-4)
