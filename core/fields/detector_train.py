"""Train the learned cell finder (core.fields.detector) on the training fields' boxes; choose it on other fields.

    python -m core.fields.detector_train [--train S2] [--val S3] [--epochs 24] [--out DIR]
    python -m core.fields.detector_train --predictions     # the bundled detector's boxes on S3 and S1, as CSV

Targets per field, at the network's scale (cells WORK_DIAMETER px across, from the classical finder's size
estimate, as at inference): a Gaussian at every annotated box centre (difficult boxes included: they are cells) and
the box's log side. Not every red cell is boxed (SOURCE.md): stained foreground that no box covers is left out of
the loss (weight 0), so unboxed clumped or edge-cut cells teach the network nothing, rather than "not a cell".

The epoch kept and the heat-map threshold are chosen on the validation session only (never the test session S1):
the threshold maximises F1 of found vs annotated boxes (IoU >= 0.5), where a found box on unboxed foreground counts
as neither right nor wrong. Writes model.keras and card.json (validation numbers, threshold, training time).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.fields.annotations import FieldAnnotation, load_fields
from core.fields.detector import (DETECTOR_DIR, STRIDE, WORK_DIAMETER, build_detector, decode, forward, to_work,
                                  work_scale)
from core.fields.finder import find_cells
from core.fields.finder_eval import read_rgb
from core.fields.matching import field_detection, pooled_recall
from core.models.store import save_for_inference

CROP = 192  # training crop side, network-input pixels (~8 cells across)
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


@dataclass
class Prepared:
    """One field at the network's scale: the image, its boxes there, and where the loss is switched off."""

    field: FieldAnnotation
    image: np.ndarray  # (h, w, 3) uint8, padded
    boxes: np.ndarray  # (N, 4) float, input pixels
    ignore: np.ndarray  # (h, w) bool: stained foreground under no box
    scale: float
    cell_diameter: float  # original pixels (classical estimate)
    shape: tuple[int, int]


def prepare_field(fa: FieldAnnotation) -> Prepared:
    rgb = read_rgb(fa.image_path)
    fc = find_cells(rgb)
    d = fc.cell_diameter or float(np.median(np.maximum(fa.boxes[:, 2], fa.boxes[:, 3]))) / 1.2
    scale = work_scale(d, rgb.shape[:2])
    img = to_work(rgb, scale)
    h, w = img.shape[:2]
    boxed = np.zeros((h, w), np.uint8)
    b = fa.boxes.astype(np.float64) * scale
    for x, y, bw, bh in b.astype(int):
        boxed[max(0, y):y + bh, max(0, x):x + bw] = 1
    fg = fc.foreground.astype(np.uint8) if fc.foreground.size else np.zeros((1, 1), np.uint8)
    fg = cv2.resize(fg, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_NEAREST)
    fg = cv2.copyMakeBorder(fg, 0, h - fg.shape[0], 0, w - fg.shape[1], cv2.BORDER_CONSTANT, value=0)
    return Prepared(fa, img, b, (fg > 0) & (boxed == 0), scale, d, rgb.shape[:2])


def targets(boxes: np.ndarray, ignore: np.ndarray, side: int) -> np.ndarray:
    """(side/STRIDE, side/STRIDE, 5): heat, log w, log h, size mask, loss weight; `boxes` in crop input pixels."""
    g = side // STRIDE
    heat = np.zeros((g, g), np.float32)
    size = np.zeros((g, g, 2), np.float32)
    smask = np.zeros((g, g), np.float32)
    yy, xx = np.mgrid[0:g, 0:g]
    for x, y, w, h in boxes:
        cx, cy = (x + w / 2) / STRIDE - 0.5, (y + h / 2) / STRIDE - 0.5
        if not (0 <= cx < g and 0 <= cy < g):
            continue
        sigma = max(0.8, np.sqrt(w * h) / STRIDE / 8)
        x0, x1 = int(max(0, cx - 3 * sigma)), int(min(g, cx + 3 * sigma + 1))
        y0, y1 = int(max(0, cy - 3 * sigma)), int(min(g, cy + 3 * sigma + 1))
        gauss = np.exp(-((xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2) / (2 * sigma**2))
        heat[y0:y1, x0:x1] = np.maximum(heat[y0:y1, x0:x1], gauss)
        px, py = int(round(cx)), int(round(cy))
        px, py = min(max(px, 0), g - 1), min(max(py, 0), g - 1)
        heat[py, px] = 1.0
        sy, sx = slice(max(0, py - 1), py + 2), slice(max(0, px - 1), px + 2)
        size[sy, sx] = np.log(np.array([w, h]) / WORK_DIAMETER)
        smask[sy, sx] = 1.0
    weight = 1.0 - cv2.resize(ignore.astype(np.uint8), (g, g), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    weight = np.maximum(weight, (heat > 0.3).astype(np.float32))  # near a boxed centre the loss always counts
    return np.concatenate([heat[..., None], size, smask[..., None], weight[..., None]], axis=-1)


def sample(p: Prepared, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One augmented training crop and its targets: scale jitter (the size estimate errs), flips and quarter turns,
    stain/brightness gain and occasional blur (other microscopes and focus)."""
    f = float(rng.uniform(0.85, 1.18))
    src = int(round(CROP / f))
    h, w = p.image.shape[:2]
    pad_img = p.image if (h >= src and w >= src) else cv2.copyMakeBorder(
        p.image, 0, max(0, src - h), 0, max(0, src - w), cv2.BORDER_REPLICATE)
    pad_ign = np.pad(p.ignore, ((0, max(0, src - h)), (0, max(0, src - w))))
    y0 = int(rng.integers(0, pad_img.shape[0] - src + 1))
    x0 = int(rng.integers(0, pad_img.shape[1] - src + 1))
    img = cv2.resize(pad_img[y0:y0 + src, x0:x0 + src], (CROP, CROP), interpolation=cv2.INTER_LINEAR)
    ign = cv2.resize(pad_ign[y0:y0 + src, x0:x0 + src].astype(np.uint8), (CROP, CROP), interpolation=cv2.INTER_NEAREST) > 0
    b = p.boxes.copy()
    b[:, 0] -= x0
    b[:, 1] -= y0
    b *= CROP / src
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    if flip:
        img, ign = img[:, ::-1], ign[:, ::-1]
        b[:, 0] = CROP - b[:, 0] - b[:, 2]
    for _ in range(k):  # a quarter turn counter-clockwise (np.rot90): (x, y, w, h) -> (y, CROP - x - w, h, w)
        img, ign = np.rot90(img), np.rot90(ign)
        b = np.stack([b[:, 1], CROP - b[:, 0] - b[:, 2], b[:, 3], b[:, 2]], axis=1)
    x = img.astype(np.float32) * rng.uniform(0.9, 1.1, size=3) * rng.uniform(0.85, 1.15)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.5, 1.2)))
    return np.clip(x, 0, 255), targets(b, np.ascontiguousarray(ign), CROP)


def loss(y_true, y_pred):
    """CenterNet's penalty-reduced focal loss on the heat map (per boxed centre) + L1 on log sides at centres."""
    from keras import ops

    gt, size_t, smask, weight = y_true[..., 0], y_true[..., 1:3], y_true[..., 3], y_true[..., 4]
    p = ops.clip(y_pred[..., 0], 1e-4, 1 - 1e-4)
    pos = ops.cast(gt >= 0.999, "float32")
    pos_l = -ops.log(p) * (1 - p) ** 2 * pos
    neg_l = -ops.log(1 - p) * p**2 * (1 - gt) ** 4 * (1 - pos) * weight
    n = ops.maximum(ops.sum(pos), 1.0)
    size_l = ops.sum(ops.abs(y_pred[..., 1:3] - size_t) * smask[..., None]) / ops.maximum(ops.sum(smask) * 2, 1.0)
    return (ops.sum(pos_l) + ops.sum(neg_l)) / n + size_l


def evaluate(model, fields: list[Prepared], thresholds=THRESHOLDS) -> dict:
    """Per threshold on whole fields: pooled annotated/infected recall, found per field, F1 with unboxed foreground
    neutral."""
    run = forward(model)  # the inference path (folded, traced), so the card's numbers are the product's
    outs = [run(p.image[None].astype(np.float32))[0] for p in fields]
    res = {}
    for t in thresholds:
        rows, neutral = [], 0
        for p, out in zip(fields, outs):
            boxes, _ = decode(out, p.scale, p.cell_diameter, t, p.shape)
            r = field_detection(p.field.boxes, p.field.infected, p.field.difficult, boxes)
            rows.append(r)
            neutral += _on_unboxed(p, boxes)
        pooled = pooled_recall(rows)
        found = sum(r["n_found"] for r in rows)
        matched = found - sum(r["n_found_unmatched"] for r in rows)
        precision = matched / max(1, found - neutral)
        recall = pooled["annotated_recall"]
        res[str(t)] = {"annotated_recall": recall, "infected_recall": pooled["infected_recall"],
                       "found_per_field": found / len(fields), "unmatched_on_unboxed_per_field": neutral / len(fields),
                       "precision_boxed": precision, "f1": 2 * precision * recall / max(1e-9, precision + recall)}
    return res


def _on_unboxed(p: Prepared, boxes: np.ndarray) -> int:
    """Found boxes whose centre lies on stained foreground that no annotated box covers."""
    c = ((boxes[:, :2] + boxes[:, 2:] / 2) * p.scale).astype(int)
    c[:, 0] = np.clip(c[:, 0], 0, p.ignore.shape[1] - 1)
    c[:, 1] = np.clip(c[:, 1], 0, p.ignore.shape[0] - 1)
    return int(p.ignore[c[:, 1], c[:, 0]].sum())


def best_threshold(ev: dict) -> str:
    return max(ev, key=lambda t: (round(ev[t]["f1"], 4), ev[t]["infected_recall"]))


def train(train_sessions: str, val_sessions: str, epochs: int, out_dir: Path, seed: int = 0,
          crops_per_field: int = 6, batch: int = 8, lr: float = 2e-3) -> dict:
    import keras

    t_start = time.time()
    log = lambda m: print(f"[{time.time() - t_start:7.1f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    tr = [prepare_field(f) for f in load_fields(train_sessions)]
    va = [prepare_field(f) for f in load_fields(val_sessions)]
    log(f"prepared {len(tr)} training and {len(va)} validation fields")
    model = build_detector(seed)
    steps = epochs * (len(tr) * crops_per_field // batch)
    sched = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(sched), loss=loss)
    rng = np.random.default_rng(seed)
    best, history = None, []
    for ep in range(epochs):
        pairs = [sample(tr[i], rng) for i in rng.permutation(np.repeat(np.arange(len(tr)), crops_per_field))]
        x = np.stack([a for a, _ in pairs])
        y = np.stack([b for _, b in pairs])
        h = model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        train_loss = float(h.history["loss"][-1])
        entry = {"epoch": ep + 1, "train_loss": round(train_loss, 4)}
        if ep + 1 >= epochs // 3 and ((ep + 1) % 2 == 0 or ep + 1 == epochs):
            ev = evaluate(model, va)
            t = best_threshold(ev)
            entry.update(threshold=float(t), **{k: round(v, 4) for k, v in ev[t].items()})
            if best is None or (ev[t]["f1"], ev[t]["infected_recall"]) > (best["f1"], best["infected_recall"]):
                best = {**ev[t], "epoch": ep + 1, "threshold": float(t), "by_threshold": ev}
                out_dir.mkdir(parents=True, exist_ok=True)
                save_for_inference(model, out_dir / "model.keras")
        history.append(entry)
        log(json.dumps(entry))
    weights = out_dir / "model.keras"
    card = {
        "what": "learned red-cell finder for whole smear fields (core.fields.detector)",
        "architecture": "U-Net-like fully convolutional net, centre heat map + log box sides at 1/2 of its input",
        "parameters": int(model.count_params()),
        "input": f"the field resized so red cells are {WORK_DIAMETER:.0f} px across (classical finder's estimate)",
        "trained_on": {"sessions": train_sessions, "fields": len(tr), "boxes": int(sum(len(p.boxes) for p in tr))},
        "chosen_on": {"sessions": val_sessions, "fields": len(va),
                      "rule": "epoch and heat-map threshold with the best F1 of found vs annotated boxes (IoU >= 0.5), "
                              "found boxes on unboxed foreground neutral"},
        "threshold": best["threshold"],
        "best_epoch": best["epoch"],
        "validation": {k: v for k, v in best.items() if k not in ("epoch", "threshold")},
        "training": {"epochs": epochs, "crops_per_field": crops_per_field, "crop": CROP, "batch": batch, "lr": lr,
                     "seed": seed, "wall_time_seconds": round(time.time() - t_start, 1), "history": history},
        "test_looks": [],
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    log(f"best epoch {best['epoch']} threshold {best['threshold']}: {json.dumps(card['validation'])[:300]}")
    return card


def write_predictions(sessions: str, path: Path) -> int:
    """One row per box the bundled detector finds (path, x, y, w, h, score) with the annotated box it matches at
    IoU >= 0.5 (its type, or empty): the detector's counterpart of a cell model's *_predictions.csv."""
    import csv

    from core.fields.matching import iou_matrix, match_greedy
    from core.fields.screen import bundled_detector, locate_cells

    det = bundled_detector()
    if det is None:
        raise SystemExit(f"no detector in {DETECTOR_DIR}")
    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "x", "y", "w", "h", "score", "matched_type", "iou"])
        for fa in load_fields(sessions):
            rgb = read_rgb(fa.image_path)
            _, found = locate_cells(rgb, "classical")
            boxes, scores = det.boxes(rgb, found.cell_diameter) if len(found) else (np.zeros((0, 4), int), np.zeros(0))
            iou = iou_matrix(boxes, fa.boxes)
            match = dict(match_greedy(iou))
            for i, (b, sc) in enumerate(zip(boxes, scores)):
                j = match.get(i)
                w.writerow([fa.path, *map(int, b), round(float(sc), 6), fa.types[j] if j is not None else "",
                            round(float(iou[i, j]), 4) if j is not None else ""])
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default="S2", help="sessions to train on (never S1, the test session)")
    ap.add_argument("--val", default="S3", help="sessions to choose the epoch and threshold on")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DETECTOR_DIR)
    ap.add_argument("--predictions", action="store_true",
                    help="no training: write the bundled detector's val_predictions.csv (S3) and test_predictions.csv (S1)")
    a = ap.parse_args(argv)
    if a.predictions:
        for sessions, name in (("S3", "val_predictions.csv"), ("S1", "test_predictions.csv")):
            print(name, write_predictions(sessions, DETECTOR_DIR / name), "boxes")
        return 0
    if "S1" in (a.train + a.val):
        ap.error("S1 is the test session: it is for the final evaluation only")
    train(a.train, a.val, a.epochs, a.out, a.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
