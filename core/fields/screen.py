"""Screen a whole smear field: find every red cell, score each one, count, and report parasitemia.

    screen_field(rgb, model, spec) -> FieldScreen        (threshold-free: probabilities per found cell)
    FieldScreen.result(threshold) -> dict                 (the JSON contract of `python -m core.fields`)
    case_result(screens, threshold) -> dict               (several fields of one case, counted together)

Every cell is cut by `core.fields.cuts.cut_cells` (the same cut the two-site model was trained on), prepared
by `core.inference.preprocess.prepare` and scored in one batch; the cells that batch calls more likely infected than
not are scored again in three more orientations (`score_crops`). Thin-film parasitemia is read over at least
`MIN_CELLS_FOR_CASE` red cells; a case with fewer says how many more fields to photograph.

A cell cut by the picture's edge is scored and shown for review (an infected cell there is still a parasite the
technician should see) but not counted: the count uses the cells wholly inside the field, numerator and denominator
alike, so a confirmed parasitemia is read in one frame.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from core.fields.cuts import cut_cells
from core.evaluation.metrics import wilson_ci
from core.fields.finder import NO_CELLS_MESSAGE, FieldCells, find_cells
from core.inference.calibrate import calibrated
from core.inference.decision import FIELD_MIN_SIDE
from core.inference.forward import SCORE_DECIMALS, predict_tensors
from core.inference.preprocess import prepare
from core.registry import ModelSpec

MIN_CELLS_FOR_CASE = 1000  # red cells counted before a thin-film parasitemia is reported as read
MAX_SIDE_RATIO = 1.5  # a box this much larger than the field's median cell is a clump or a white cell: not counted
FIELD_MIN_CELLS = 5  # a field shows at least this many red cells
SECOND_LOOK_FROM = 0.5  # raw probability from which a cell is scored again rotated by 90, 180 and 270 degrees
ROTATIONS = 4  # orientations averaged (logits) for those cells, the upright one included


@dataclass
class FieldScreen:
    """One field: found boxes (x, y, w, h, original pixels) and each cell's probability of being infected. The
    counted cells come first; `edge` marks the cells cut by the picture's edge (scored and reviewable, not counted)."""

    name: str
    width: int
    height: int
    boxes: np.ndarray
    probabilities: np.ndarray
    message: str = ""
    flags: tuple[str, ...] = ()
    crops: np.ndarray | None = field(default=None, repr=False)  # (N, 64, 64, 3) uint8, for the gallery
    edge: np.ndarray | None = field(default=None, repr=False)  # (N,) bool: cut by the edge, not counted

    @property
    def in_count(self) -> np.ndarray:
        """(N,) bool: the cells a thin-film count uses (every cell but those cut by the picture's edge)."""
        n = len(self.probabilities)
        return np.ones(n, bool) if self.edge is None else ~np.asarray(self.edge, bool).reshape(n)

    @property
    def n_counted(self) -> int:
        return int(self.in_count.sum())

    @property
    def counted(self) -> bool:
        """False when the finder gave no countable cells (blank, wrong kind of picture, too many candidates)."""
        return self.n_counted > 0

    def result(self, threshold: float, model_id: str = "", task: str = "malaria") -> dict:
        """The field's counts at `threshold` in the `python -m core.fields` JSON shape ("counted": false on a cell cut
        by the edge: scored, not in the count)."""
        infected = self.probabilities >= threshold
        inside = self.in_count
        n, k = self.n_counted, int((infected & inside).sum())
        p, lo, hi = parasitemia(k, n)
        out = {
            "file": self.name, "ok": self.counted, "width": self.width, "height": self.height,
            "n_cells": n, "n_infected": k if n else None,
            "parasitemia": p, "parasitemia_ci": [lo, hi] if n else None,
            "threshold": float(threshold), "model": model_id, "task": task,
            "cells": [{"x": int(b[0]), "y": int(b[1]), "w": int(b[2]), "h": int(b[3]),
                       "probability": round(float(q), 6), "infected": bool(i), "counted": bool(c)}
                      for b, q, i, c in zip(self.boxes, self.probabilities, infected, inside)],
        }
        if self.message:
            out["warning" if self.counted else "error"] = self.message
        if self.flags:
            out["flags"] = list(self.flags)
        return out


def parasitemia(n_infected: int, n_cells: int) -> tuple[float | None, float | None, float | None]:
    """Percent of red cells infected with its 95% Wilson interval (None without cells)."""
    if n_cells <= 0:
        return None, None, None
    lo, hi = wilson_ci(int(n_infected), int(n_cells))
    return round(100.0 * n_infected / n_cells, 4), round(100.0 * lo, 4), round(100.0 * hi, 4)


def _probabilities(model, x: np.ndarray) -> np.ndarray:
    """Raw cell-network probabilities, by onnxruntime when it is installed: on this project's 2-core machine it
    scored one field's 116 crops in 334 ms against TensorFlow's 435 (docs/evaluation.md, "Whole smear fields"); scores agree
    within 1e-6 (docs/scale.md). A model the ONNX path cannot take (no `logit` layer) is scored by TensorFlow."""
    try:
        from core.export.onnx_engine import predict_tensors_onnx

        return predict_tensors_onnx(model, x)
    except (ImportError, ValueError):
        return predict_tensors(model, x)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)  # scores carry 8 decimals: 0 and 1 occur
    return np.log(p) - np.log1p(-p)


def rotation_average(model, x: np.ndarray, p: np.ndarray, start: float = SECOND_LOOK_FROM) -> np.ndarray:
    """`p` with each cell at or above `start` replaced by the mean logit over ROTATIONS quarter turns of its crop.

    Why: on the validation fields (S3) at 0.5 false infected cells per field, averaging the four orientations of
    every cell raised infected-cell sensitivity from 0.777 to 0.827; doing it only for the ~6 cells a field scores
    >= 0.5 on the first look gave the same 0.827 at 6% of the cost (the field point sits near 0.96)."""
    p = np.asarray(p, np.float64).copy()
    again = np.flatnonzero(p >= start)
    if not len(again):
        return p
    logits = [_logit(p[again])]
    for k in range(1, ROTATIONS):
        logits.append(_logit(_probabilities(model, np.ascontiguousarray(np.rot90(x[again], k, axes=(1, 2))))))
    p[again] = expit(np.mean(logits, axis=0))
    return np.round(p, SCORE_DECIMALS)


def score_crops(model, spec: ModelSpec, crops: np.ndarray) -> np.ndarray:
    """Shown (calibrated) probability of each cut cell: one look, a second one for the suspicious cells."""
    if len(crops) == 0:
        return np.zeros(0, np.float64)
    x = np.stack([prepare(c, spec.input) for c in crops])
    p = rotation_average(model, x, _probabilities(model, x))
    return np.asarray(calibrated(spec.task, spec.id, p), np.float64)


def red_cell_sized(boxes: np.ndarray) -> np.ndarray:
    """Boxes of a red cell's size: not a clump or a white cell (a box this much larger than the field's median)."""
    b = np.asarray(boxes).reshape(-1, 4)
    if not len(b):
        return np.zeros(0, bool)
    side = np.maximum(b[:, 2], b[:, 3])
    return side <= MAX_SIDE_RATIO * np.median(side)


def cut_by_edge(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    b = np.asarray(boxes).reshape(-1, 4)
    return ~((b[:, 0] > 1) & (b[:, 1] > 1) & (b[:, 0] + b[:, 2] < width - 1) & (b[:, 1] + b[:, 3] < height - 1))


def countable(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Cells a thin-film count uses: not cut by the picture's edge, not a clump or white cell (oversized box).

    Measured on validation fields (S3): the found boxes the cell model wrongly calls infected are mostly oversized
    (median 1.28x the field's median cell, against 1.14x for infected cells, which P. vivax enlarges) or cut by
    the edge (26% of them, against 3% of infected cells)."""
    return red_cell_sized(boxes) & ~cut_by_edge(boxes, width, height)


FINDERS = ("learned", "classical")
_NOT_A_FIELD = {"no_cells", "too_many", "bad_scale"}  # the classical checks' verdicts the detector never overrides


@functools.lru_cache(maxsize=1)
def bundled_detector():
    """The learned cell finder, loaded once (None when models/fields/cell_detector is absent)."""
    from core.fields.detector import load_detector

    return load_detector()


def locate_cells(rgb: np.ndarray, finder: str = "learned") -> tuple[np.ndarray, FieldCells]:
    """(boxes, the classical result). The classical finder always runs: its checks say whether this is a field at
    all and its size estimate sets the detector's scale; the boxes come from the learned detector when it is
    bundled and `finder` is "learned" (chosen on the validation fields: it splits clumps the classical one merges)."""
    if finder not in FINDERS:
        raise ValueError(f"unknown finder {finder!r}; choose one of {FINDERS}")
    found = find_cells(rgb)
    det = bundled_detector() if finder == "learned" else None
    if det is None or not len(found) or _NOT_A_FIELD & set(found.flags):
        return np.asarray(found.boxes, np.int64).reshape(-1, 4), found
    boxes, _ = det.boxes(rgb, found.cell_diameter)
    return boxes, found


def screening_boxes(rgb: np.ndarray, finder: str = "learned") -> tuple[np.ndarray, FieldCells]:
    """The boxes screening counts: found, then only the countable ones (also the cells hard negatives are cut from)."""
    boxes, found = locate_cells(rgb, finder)
    return boxes[countable(boxes, rgb.shape[1], rgb.shape[0])], found


def screen_field(rgb: np.ndarray, model, spec: ModelSpec, name: str = "field", keep_crops: bool = False,
                 finder: str = "learned") -> FieldScreen:
    """Find, cut and score every red cell of one field (RGB uint8): the countable ones first, then those cut by the
    picture's edge (`FieldScreen.edge`; reviewable, not counted). A field with no countable cell scores none."""
    found_boxes, found = locate_cells(rgb, finder)
    w, h = int(rgb.shape[1]), int(rgb.shape[0])
    sized = found_boxes.reshape(-1, 4)[red_cell_sized(found_boxes)]
    cut = cut_by_edge(sized, w, h)
    order = np.argsort(cut, kind="stable") if (~cut).any() else np.zeros(0, np.int64)  # counted first, finder order kept
    boxes, edge = sized[order], cut[order]
    crops = cut_cells(rgb, boxes, spec.input.size, cut=spec.input.field_cut, stain=spec.input.field_stain) if len(boxes) else np.zeros((0, spec.input.size, spec.input.size, 3), np.uint8)
    probs = score_crops(model, spec, crops)
    message = found.message or ("" if len(boxes) else NO_CELLS_MESSAGE)
    return FieldScreen(name, w, h, boxes, probs, message, tuple(found.flags), crops if keep_crops else None, edge)


def looks_like_field(pixels: np.ndarray) -> bool:
    """A colour picture big enough to hold many cells (the finder decides whether it does)."""
    return pixels.ndim == 3 and min(pixels.shape[:2]) >= FIELD_MIN_SIDE


def case_result(screens: list[FieldScreen], threshold: float, model_id: str = "") -> dict:
    """All fields of one case counted together (only fields whose cells could be counted)."""
    counted = [s for s in screens if s.counted]
    n = int(sum(s.n_counted for s in counted))
    k = int(sum(int(((s.probabilities >= threshold) & s.in_count).sum()) for s in counted))
    p, lo, hi = parasitemia(k, n)
    per_field = n / len(counted) if counted else 0.0
    more = max(0, math.ceil((MIN_CELLS_FOR_CASE - n) / per_field)) if n < MIN_CELLS_FOR_CASE and per_field else None
    advice = ("" if n >= MIN_CELLS_FOR_CASE else
              f"{n} red cells counted; thin-film parasitemia is read over at least {MIN_CELLS_FOR_CASE}: "
              + (f"photograph about {more} more field{'s' if more != 1 else ''}." if more else "add fields with red cells."))
    return {"n_fields": len(screens), "n_fields_counted": len(counted), "n_cells": n, "n_infected": k if n else None,
            "parasitemia": p, "parasitemia_ci": [lo, hi] if n else None, "threshold": float(threshold),
            "model": model_id, "enough_cells": n >= MIN_CELLS_FOR_CASE, "advice": advice}
