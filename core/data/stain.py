"""Stain normalisation for whole smear fields: one field's Giemsa intensity and illumination mapped to a reference.

Why: the three IML capture sessions differ threefold in how dark the same stain reads (median over a session's
fields of `field_stain`'s green cell optical density: 1.49 in training session S2, 0.51 in validation session S3),
and a cell model fine-tuned on one session's cells calls the paler sessions' cells by a colour it never saw. Beer-Lambert makes the fix linear: in
optical density (OD = log(background / pixel)) a paler stain is the same picture times a smaller factor per
channel. So each field is rescaled, per channel, until the median OD of its cell pixels equals the reference's, and
re-lit with the reference's background (Reinhard-style normalisation in OD space, one pass over the field; the
statistics come from a quarter-size copy).

    normalize_field(rgb) -> rgb            (uint8 in, uint8 out, same shape)
    field_stain(rgb) -> FieldStain         (background level and median cell OD per channel)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND_PERCENTILE = 90.0  # empty slide is about half a field: its level is a high percentile of each channel
CELL_OD = 0.08  # green OD above which a pixel counts as stained (cell), after the background is known
MAX_GAIN = 4.0  # rescaling bounded both ways: a field this far from the reference is not a smear like ours
STATS_SCALE = 0.25


@dataclass(frozen=True)
class FieldStain:
    """Per channel (R, G, B): the empty-slide level and the median optical density of the stained (cell) pixels."""

    background: tuple[float, float, float]
    cell_od: tuple[float, float, float]


# Median over the 129 fields of IML training session S2 (the session the field cell model is fine-tuned on), re-derived
# by `core.fields.cuts.session_stain(("S2",))` (tests/test_stain.py checks it). Six numbers, no pixels.
REFERENCE = FieldStain(background=(204.0, 230.0, 212.0), cell_od=(0.3071, 1.4939, 0.5001))


def _od(channels: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(background, 1.0) / np.maximum(channels, 1.0))


def field_stain(rgb: np.ndarray) -> FieldStain:
    """Background level and median cell OD of each channel, from a quarter-size copy of the field."""
    h, w = rgb.shape[:2]
    small = cv2.resize(np.ascontiguousarray(rgb[:, :, :3]), (max(1, int(w * STATS_SCALE)), max(1, int(h * STATS_SCALE))),
                       interpolation=cv2.INTER_AREA).reshape(-1, 3).astype(np.float32)
    bg = np.percentile(small, BACKGROUND_PERCENTILE, axis=0)
    od = _od(small, bg)
    cells = od[:, 1] > CELL_OD
    med = np.median(od[cells], axis=0) if cells.sum() >= 16 else np.zeros(3)
    return FieldStain(tuple(float(v) for v in bg), tuple(float(v) for v in med))


def normalize_field(rgb: np.ndarray, reference: FieldStain = REFERENCE) -> np.ndarray:
    """The field with each channel's cell OD scaled to the reference's and its background set to the reference's.

    A field with no stained pixels (blank, or not a smear) comes back unchanged."""
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    own = field_stain(rgb)
    if min(own.cell_od) <= 1e-3 or min(reference.cell_od) <= 1e-3:
        return rgb
    gain = np.clip(np.asarray(reference.cell_od) / np.asarray(own.cell_od), 1 / MAX_GAIN, MAX_GAIN)
    # a lookup table per channel: 256 values, not 1.2 M exp() calls
    out = np.empty_like(rgb)
    levels = np.arange(256, dtype=np.float32)
    for c in range(3):
        lut_od = np.maximum(_od(levels, np.float32(own.background[c])), 0.0) * gain[c]
        lut = np.clip(reference.background[c] * np.exp(-lut_od), 0, 255).round().astype(np.uint8)
        out[:, :, c] = lut[rgb[:, :, c]]
    return out
