"""The one place a model's raw score becomes the probability SecondLook shows: the card's calibration map.

Every surface goes through `apply_calibration` (app scoring, `core.predict`, evaluation records and the stored
val/test predictions), so they all show the same number. The map is Platt scaling on the logit,
p = sigmoid(a * logit(raw) + b) with a > 0 (temperature scaling is the case b = 0; "none" the identity, chosen where
no fitted map lowers held-out log loss), fitted in `core.evaluation.calibration`. It is strictly increasing, so ranking, AUC and every decision at the
correspondingly moved threshold are unchanged. A card without `calibration` shows the raw score.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from scipy.special import expit

from core.inference.forward import SCORE_DECIMALS
from core.models.store import model_dir, read_card

# Raw scores are stored rounded to 8 decimals, so 0 and 1 occur; clipping half a rounding unit inside keeps their
# logits finite and keeps every distinct stored raw score distinct.
_EDGE = 0.5 * 10.0 ** -SCORE_DECIMALS


def logit(raw) -> np.ndarray:
    p = np.clip(np.asarray(raw, dtype=np.float64), _EDGE, 1 - _EDGE)
    return np.log(p) - np.log1p(-p)


def check_calibration(calibration: dict) -> None:
    """A usable map: known method and a positive finite slope (a non-increasing map would reverse decisions)."""
    if calibration.get("method") not in ("platt", "temperature", "none"):
        raise ValueError(f"unknown calibration method {calibration.get('method')!r}")
    a, b = calibration.get("a"), calibration.get("b")
    if calibration["method"] == "none" and (a, b) != (1.0, 0.0):
        raise ValueError(f"calibration 'none' is the identity (a = 1, b = 0), got a={a!r}, b={b!r}")
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and np.isfinite(a) and np.isfinite(b) and a > 0):
        raise ValueError(f"calibration needs finite a > 0 and finite b, got a={a!r}, b={b!r}")


def apply_calibration(raw, calibration: dict | None):
    """Raw model scores -> shown probabilities (rounded like every stored score); identity without a calibration.

    A scalar comes back as a float, an array as a float64 array.
    """
    if calibration:
        check_calibration(calibration)
    if not calibration or calibration["method"] == "none":
        return float(raw) if np.ndim(raw) == 0 else np.asarray(raw, dtype=np.float64)
    out = np.round(expit(float(calibration["a"]) * logit(raw) + float(calibration["b"])), SCORE_DECIMALS)
    return float(out) if np.ndim(raw) == 0 else out


@lru_cache(maxsize=64)
def _card_calibration(task: str, model_id: str, root: str | None, mtime: float) -> dict | None:
    cal = read_card(task, model_id, root).get("calibration")
    return dict(cal) if cal else None


def card_calibration(task: str, model_id: str, root: str | None = None) -> dict | None:
    """The bundled model's calibration from its card (re-read when the card changes), or None."""
    path = model_dir(task, model_id, root) / "card.json"
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    return _card_calibration(task, model_id, None if root is None else str(root), mtime)


def calibrated(task: str, model_id: str, raw):
    """A bundled model's raw score(s) mapped by its card's calibration."""
    return apply_calibration(raw, card_calibration(task, model_id))
