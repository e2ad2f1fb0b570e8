"""Cells cut out of whole smear fields as 64x64 crops: a second site (IML, P. vivax, Olympus) for the cell models.

The NIH crops are single cells filling their picture; a field cell is cut the same way from its box (annotated
box for training and evaluation, found box at screening time) by one function, `cut_cells`, so a model sees the
same kind of crop in training and in use. Crops live in memory only (nothing derived from a dataset is written).
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pandas as pd

from core.config import task_data_dir
from core.data.stain import FieldStain, field_stain, normalize_field
from core.io.images import read_image

FIELDS = "malaria_fields"
# How a two-site cell model uses the fields (all from the `train` split; test session S1 is never touched):
TRAIN_SESSIONS = ("S2",)  # cells added to the training data
STOP_SESSIONS = ("S3",)  # cells added to the early-stopping set; also the validation fields for the field operating point
TRAIN_NEGATIVES = 4000  # uninfected cells drawn from the training session (it has ~15k)
POSITIVE_REPEAT = 4  # each infected training cell appears this many times per epoch (augmented differently)
PAD = 0.05  # margin around a box, as a share of its side: keeps the membrane edge the NIH crops show


def sessions_of(train) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(trained on, stopped on): a recipe's field sessions (`TrainConfig.site_sessions`, `site_stop_sessions`), the
    defaults above where it names none; stopped on none for a refit on every session."""
    stop = STOP_SESSIONS if train.site_stop_sessions is None else tuple(train.site_stop_sessions)
    return tuple(train.site_sessions) or TRAIN_SESSIONS, stop


def fields_available() -> bool:
    root = task_data_dir(FIELDS)
    return (root / "manifest.csv").is_file() and (root / "cells.csv").is_file()


def read_fields() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fields, cells): one row per field (absolute `file`, split, session) and one per annotated box."""
    root = task_data_dir(FIELDS)
    fields = pd.read_csv(root / "manifest.csv")
    fields["file"] = [str(root / p) for p in fields["path"]]
    cells = pd.read_csv(root / "cells.csv").merge(fields[["path", "session", "split"]], on="path")
    return fields, cells


CUTS = ("box", "ellipse")
STAINS = ("raw", "normalize")  # a field as photographed, or its stain mapped to the reference (core.data.stain)


def _ellipse_mask(size: int, pad: float) -> np.ndarray:
    """(size, size, 1) 0/1: the ellipse inscribed in the box, within its padded crop."""
    r = size / (2 * (1 + 2 * pad))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5 - size / 2
    return ((xx / r) ** 2 + (yy / r) ** 2 <= 1.0).astype(np.uint8)[..., None]


def cut_cells(rgb: np.ndarray, boxes: np.ndarray, size: int = 64, pad: float = PAD, cut: str = "box",
              stain: str = "raw") -> np.ndarray:
    """(N, size, size, 3) uint8 crops of boxes (x, y, w, h, original pixels); outside the image reads as black.

    cut="ellipse" also blacks out the corners outside the cell's ellipse, where a touching neighbour shows (a fifth
    of the two-site model's false alarms on the validation fields overlapped an infected neighbour's box).
    stain="normalize" first maps the whole field's stain to the reference (`core.data.stain.normalize_field`): the
    statistics are the field's, not the few cells asked for."""
    if cut not in CUTS:
        raise ValueError(f"unknown field cut {cut!r}; choose one of {CUTS}")
    if stain not in STAINS:
        raise ValueError(f"unknown field stain {stain!r}; choose one of {STAINS}")
    if stain == "normalize":
        rgb = normalize_field(rgb)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    h_img, w_img = rgb.shape[:2]
    for i, (x, y, w, h) in enumerate(boxes):
        x0, y0 = int(round(x - pad * w)), int(round(y - pad * h))
        x1, y1 = int(round(x + w + pad * w)), int(round(y + h + pad * h))
        if x1 <= x0 or y1 <= y0:
            continue
        patch = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w_img), min(y1, h_img)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out * _ellipse_mask(size, pad) if cut == "ellipse" else out


def session_crops(sessions: tuple[str, ...], max_negatives: int | None = None, seed: int = 0,
                  size: int = 64, cut: str = "box", stain: str = "raw") -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Annotated cells of the given capture sessions: crops, 0/1 labels, and their boxes (path, x, y, w, h).

    `difficult` boxes (infected unknown) are left out. With `max_negatives`, uninfected cells are drawn at random
    (seeded) down to that many; every infected cell is kept.
    """
    _, cells = read_fields()
    cells = cells[cells["session"].isin(sessions) & cells["infected"].notna()].reset_index(drop=True)
    if max_negatives is not None:
        neg = cells[cells["infected"] == 0]
        if len(neg) > max_negatives:
            keep = neg.sample(max_negatives, random_state=seed).index
            cells = cells[(cells["infected"] == 1) | cells.index.isin(keep)].reset_index(drop=True)
    root = task_data_dir(FIELDS)
    groups = list(cells.groupby("path", sort=True))

    def one(item):
        path, g = item
        return g.index.to_numpy(), cut_cells(read_image(root / path), g[["x", "y", "w", "h"]].to_numpy(), size, cut=cut, stain=stain)

    crops = np.zeros((len(cells), size, size, 3), np.uint8)
    with ThreadPoolExecutor(4) as pool:
        for idx, c in pool.map(one, groups):
            crops[idx] = c
    return crops, cells["infected"].to_numpy(np.float32), cells[["path", "x", "y", "w", "h", "session"]]


def unannotated(found: np.ndarray, annotated: np.ndarray, infected: np.ndarray, max_iou: float = 0.1) -> np.ndarray:
    """Per found box (x, y, w, h): True when it overlaps no annotated box (IoU < `max_iou` with each, difficult ones
    included) and holds no infected box's centre (a clump around a parasitised cell is not a negative)."""
    from core.fields.matching import covering_centres, iou_matrix

    found = np.asarray(found, np.float64).reshape(-1, 4)
    annotated = np.asarray(annotated, np.float64).reshape(-1, 4)
    keep = np.ones(len(found), bool)
    if not len(found) or not len(annotated):
        return keep
    keep &= iou_matrix(annotated, found).max(axis=0) < max_iou
    for c in covering_centres(found, annotated[np.asarray(infected, bool)]):
        keep[c] = False
    return keep


def hard_negative_crops(sessions: tuple[str, ...], size: int = 64, limit: int | None = None,
                        locate: Callable[[np.ndarray], np.ndarray] | None = None,
                        cut: str = "box", stain: str = "raw") -> tuple[np.ndarray, pd.DataFrame]:
    """Cells the finder cuts from the fields of `sessions` that are no annotated cell: white cells, platelets,
    debris, clumps and unannotated red cells, cut as screening cuts them, all uninfected (infected cells are boxed
    thoroughly, SOURCE.md). On the validation fields these make half of the field model's false alarms
    (`python -m core.fields.records --false-alarm-sources`); as training negatives they teach the cell model them.
    `locate` (rgb -> boxes) is the finder screening uses (`core.fields.screen.screening_boxes`, passed in by the
    caller: this layer sits below core.fields); without it, the classical finder's boxes."""
    if locate is None:
        from core.fields.finder import find_cells

        def locate(rgb: np.ndarray) -> np.ndarray:
            return find_cells(rgb).boxes

    fields, cells = read_fields()
    fields = fields[fields["session"].isin(sessions)].sort_values("path").head(limit)
    root = task_data_dir(FIELDS)

    def one(path: str):
        rgb = read_image(root / path)
        g = cells[cells["path"] == path]
        found = np.asarray(locate(rgb), np.int64).reshape(-1, 4)
        boxes = found[unannotated(found, g[["x", "y", "w", "h"]].to_numpy(), (g["infected"] == 1).to_numpy())]
        return path, boxes, cut_cells(rgb, boxes, size, cut=cut, stain=stain)

    crops, rows = [], []
    with ThreadPoolExecutor(2) as pool:
        for path, boxes, c in pool.map(one, fields["path"]):
            crops.append(c)
            rows += [(path, *map(int, b)) for b in boxes]
    frame = pd.DataFrame(rows, columns=["path", "x", "y", "w", "h"])
    return (np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8)), frame


def session_stain(sessions: tuple[str, ...]) -> FieldStain:
    """The median over the fields of `sessions` of each field's stain statistics (`core.data.stain.REFERENCE`)."""
    fields, _ = read_fields()
    rows = []
    for f in fields[fields["session"].isin(sessions)].sort_values("path")["file"]:
        st = field_stain(read_image(f))
        rows.append((*st.background, *st.cell_od))
    med = np.median(np.asarray(rows), axis=0)
    return FieldStain(tuple(float(v) for v in med[:3]), tuple(float(v) for v in med[3:]))
