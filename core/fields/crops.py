"""Cut cells out of a field so they look like the NIH training crops.

The NIH cell images (`malaria/`) are single segmented red cells on a BLACK background, the cell
filling the picture, stretched to 64x64. The cell models were trained on exactly that, so a field
cell is cropped the same way: tight box around the cell's mask, everything outside the mask set
to black, resized to `size` x `size`. `crop_cells` uses the finder's masks; `crop_boxes` does the
same for given (e.g. annotated) boxes, taking the mask from the finder's segmentation of the same
field, so training crops from boxes and inference crops from the finder look alike.
"""
from __future__ import annotations

import cv2
import numpy as np

from core.fields.finder import FieldCells, find_cells


def _to_box_mask(small_mask: np.ndarray, w: int, h: int) -> np.ndarray:
    """Upsample a working-scale mask crop to box size with smooth (not blocky) edges."""
    if small_mask.size == 0 or w <= 0 or h <= 0:
        return np.zeros((max(h, 0), max(w, 0)), dtype=bool)
    m = cv2.resize(small_mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return m >= 0.5


def _work_window(fc: FieldCells, box: np.ndarray) -> tuple[slice, slice, int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    s = fc.scale
    H, W = fc.labels.shape
    x0, y0 = min(W - 1, max(0, int(np.floor(x * s)))), min(H - 1, max(0, int(np.floor(y * s))))
    x1 = min(W, max(x0 + 1, int(np.ceil((x + w) * s))))
    y1 = min(H, max(y0 + 1, int(np.ceil((y + h) * s))))
    return slice(y0, y1), slice(x0, x1), x, y, w, h


def _ellipse_mask(w: int, h: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    if w > 0 and h > 0:
        cv2.ellipse(m, (w // 2, h // 2), (max(1, w // 2), max(1, h // 2)), 0, 0, 360, 1, -1)
    return m.astype(bool)


def crop_masked(rgb: np.ndarray, box: np.ndarray, mask: np.ndarray, size: int = 64) -> np.ndarray:
    """NIH-style crop: tight around `mask` (box-sized, bool) inside `box`, black outside, size x size."""
    x, y, w, h = (int(v) for v in box)
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    if x1 <= x0 or y1 <= y0:
        return out
    m = mask[y0 - y:y1 - y, x0 - x:x1 - x]
    if not m.any():
        m = _ellipse_mask(x1 - x0, y1 - y0)
    ys, xs = np.nonzero(m)
    ty0, ty1, tx0, tx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    patch = rgb[y0 + ty0:y0 + ty1, x0 + tx0:x0 + tx1].copy()
    patch[~m[ty0:ty1, tx0:tx1]] = 0
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


def crop_cells(rgb: np.ndarray, field_cells: FieldCells, size: int = 64) -> np.ndarray:
    """(N, size, size, 3) uint8 crops of the finder's cells, masked to black outside each cell."""
    rgb = np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False)
    out = np.zeros((len(field_cells), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(field_cells.boxes):
        ys, xs, x, y, w, h = _work_window(field_cells, box)
        small = field_cells.labels[ys, xs] == (i + 1)
        out[i] = crop_masked(rgb, box, _to_box_mask(small, w, h), size)
    return out


def box_mask(field_cells: FieldCells, box: np.ndarray) -> np.ndarray:
    """Mask (h, w) of the one cell inside a given box, from the finder's segmentation.

    Takes the found cell region that covers most of the box's central half (neighbours poke into
    boxes); else the foreground in the box; else an inscribed ellipse (nothing was segmented).
    """
    ys, xs, x, y, w, h = _work_window(field_cells, box)
    lab = field_cells.labels[ys, xs]
    fg = field_cells.foreground[ys, xs] if field_cells.foreground.size else np.zeros_like(lab, bool)
    hh, ww = lab.shape
    core = lab[hh // 4: max(hh // 4 + 1, 3 * hh // 4), ww // 4: max(ww // 4 + 1, 3 * ww // 4)]
    ids, counts = np.unique(core[core > 0], return_counts=True)
    if ids.size and counts.max() >= 0.2 * core.size:
        small = lab == ids[np.argmax(counts)]
    elif fg.any():
        n, comp = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
        c = comp[hh // 4: max(hh // 4 + 1, 3 * hh // 4), ww // 4: max(ww // 4 + 1, 3 * ww // 4)]
        cid, cc = np.unique(c[c > 0], return_counts=True)
        small = comp == cid[np.argmax(cc)] if cid.size else fg
    else:
        return _ellipse_mask(w, h)
    m = _to_box_mask(small, w, h)
    return m if m.any() else _ellipse_mask(w, h)


def crop_boxes(
    rgb: np.ndarray, boxes: np.ndarray, size: int = 64, field_cells: FieldCells | None = None
) -> np.ndarray:
    """(N, size, size, 3) uint8 NIH-style crops for given (x, y, w, h) boxes, e.g. annotated ones.

    The mask comes from the finder's segmentation of the same field (`field_cells`, computed here
    if not given), so these crops look like `crop_cells` output.
    """
    rgb = np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    fc = field_cells if field_cells is not None else find_cells(rgb)
    out = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(boxes):
        if box[2] <= 0 or box[3] <= 0:
            continue
        mask = box_mask(fc, box) if fc.labels.size else _ellipse_mask(int(box[2]), int(box[3]))
        out[i] = crop_masked(rgb, box, mask, size)
    return out
