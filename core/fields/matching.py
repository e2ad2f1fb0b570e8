"""Box matching and detection metrics. Pure functions on (x, y, w, h) int/float arrays."""
from __future__ import annotations

import numpy as np

IOU_THRESHOLD = 0.5


def covering_centres(boxes: np.ndarray, targets: np.ndarray) -> list[np.ndarray]:
    """For each target box, the indices of `boxes` that contain its centre (edges included): a found box around a
    clump holds an annotated cell's centre without matching it."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = []
    for x, y, w, h in np.asarray(targets, dtype=np.float64).reshape(-1, 4):
        cx, cy = x + w / 2, y + h / 2
        out.append(np.flatnonzero((b[:, 0] <= cx) & (cx <= b[:, 0] + b[:, 2]) & (b[:, 1] <= cy) & (cy <= b[:, 1] + b[:, 3])))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N,4) with every box in `b` (M,4), boxes as (x, y, w, h)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = (a[:, 2:3] * a[:, 3:4]) + (b[:, 2] * b[:, 3]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def match_greedy(iou: np.ndarray, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """One-to-one matches (row, col) with IoU >= threshold, highest IoU first.

    Greedy by descending IoU: at IoU >= 0.5 a box can overlap two others that well only in rare
    cases, so greedy and Hungarian agree almost always and greedy needs no extra dependency.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    matches = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        matches.append((r, c))
    return matches


def field_detection(
    truth: np.ndarray,
    infected: np.ndarray,
    difficult: np.ndarray,
    found: np.ndarray,
    threshold: float = IOU_THRESHOLD,
    types: tuple[str, ...] | None = None,
) -> dict:
    """Counts for one field: annotated (non-difficult) boxes found, infected boxes found; with `types`
    (one per box) also `by_type`: {type: [boxes, found]}, to see which cells the finder misses.

    Difficult boxes take part in matching (so a found cell on one is not "unmatched"), but are
    counted in neither numerator nor denominator.
    """
    truth = np.asarray(truth).reshape(-1, 4)
    infected = np.asarray(infected, dtype=bool).reshape(-1)
    difficult = np.asarray(difficult, dtype=bool).reshape(-1)
    found = np.asarray(found).reshape(-1, 4)
    matches = match_greedy(iou_matrix(truth, found), threshold)
    hit = np.zeros(len(truth), dtype=bool)
    for r, _ in matches:
        hit[r] = True
    keep = ~difficult
    out = {} if types is None else {"by_type": {
        t: [int(sum(1 for x in types if x == t)), int(sum(1 for x, h in zip(types, hit) if x == t and h))]
        for t in sorted(set(types))}}
    return out | {
        "n_annotated": int(keep.sum()),
        "n_annotated_found": int((hit & keep).sum()),
        "n_infected": int((infected & keep).sum()),
        "n_infected_found": int((hit & infected & keep).sum()),
        "n_found": int(len(found)),
        "n_found_unmatched": int(len(found) - len(matches)),
    }


def pooled_recall(rows: list[dict]) -> dict:
    """Pooled recall over fields: found / annotated, summed across fields (NaN when no boxes)."""
    def ratio(num: str, den: str) -> float:
        d = sum(r[den] for r in rows)
        return float(sum(r[num] for r in rows) / d) if d else float("nan")

    return {
        "annotated_recall": ratio("n_annotated_found", "n_annotated"),
        "infected_recall": ratio("n_infected_found", "n_infected"),
    }


def bootstrap_ci(rows: list[dict], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile CI for pooled recalls, resampling whole fields (cells in a field are not independent)."""
    n = len(rows)
    out: dict = {}
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    num_a = np.array([r["n_annotated_found"] for r in rows], dtype=float)
    den_a = np.array([r["n_annotated"] for r in rows], dtype=float)
    num_i = np.array([r["n_infected_found"] for r in rows], dtype=float)
    den_i = np.array([r["n_infected"] for r in rows], dtype=float)
    idx = rng.integers(0, n, size=(n_boot, n))
    lo_q, hi_q = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    for name, num, den in (("annotated_recall", num_a, den_a), ("infected_recall", num_i, den_i)):
        d = den[idx].sum(axis=1)
        ok = d > 0
        vals = num[idx].sum(axis=1)[ok] / d[ok]
        if vals.size:
            out[name] = (float(np.percentile(vals, lo_q)), float(np.percentile(vals, hi_q)))
    return out
