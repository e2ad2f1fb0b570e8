"""A learned cell finder: a small fully convolutional network marks each red cell's centre and size (a CenterNet-style
heat map), trained here on the training fields' boxes (core.fields.detector_train; no downloaded weights).

Why: the classical finder (core.fields.finder) merges touching cells into one clump box, and on the validation
fields most infected cells it misses sit inside such a box. The classical finder still runs first: its checks (blank,
X-ray, too thick, wrong scale) and its cell-size estimate bring every field to the scale the network was trained at,
and its segmentation still gives each cell's mask for cutting (core.fields.crops.crop_boxes). The network decides only
where the boxes are.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.config import MODELS_DIR

WORK_DIAMETER = 24.0  # red-cell diameter (px) in the network's input
STRIDE = 2  # heat-map pixels per input pixel: one heat-map pixel is 1/12 of a cell across
MULTIPLE = 16  # the input sides are padded to this (a stride-2 stem and three 2x poolings)
MAX_WORK_PIXELS = 1_000_000  # bounded time whatever the field's size
DETECTOR_DIR = MODELS_DIR / "fields" / "cell_detector"
MIN_PEAK_DISTANCE = 0.5  # x cell diameter: two centres closer than this are one cell


def work_scale(cell_diameter: float, shape: tuple[int, int]) -> float:
    """Original-image pixels -> network-input pixels: cells WORK_DIAMETER across, never upsampled past 2x, bounded."""
    s = WORK_DIAMETER / max(cell_diameter, 1.0)
    return float(min(s, 2.0, np.sqrt(MAX_WORK_PIXELS / (shape[0] * shape[1]))))


def to_work(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The field at the network's scale, padded (edge colour) to sides that are multiples of MULTIPLE."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ph, pw = (-img.shape[0]) % MULTIPLE, (-img.shape[1]) % MULTIPLE
    return cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REPLICATE) if ph or pw else img


def build_detector(seed: int = 0):
    """U-Net-like, ~0.5 M parameters: stem at 1/2, encoder to 1/16, decoder back to 1/2; heads: centre heat map
    (sigmoid) and log(box side / WORK_DIAMETER) for width and height, sides in input pixels."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    def block(x, ch):
        for _ in range(2):
            x = layers.Conv2D(ch, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        return x

    inp = keras.Input((None, None, 3), name="field")
    x = layers.Rescaling(1 / 255.0)(inp)
    s2 = block(layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x), 24)
    s4 = block(layers.MaxPooling2D()(s2), 48)
    s8 = block(layers.MaxPooling2D()(s4), 64)
    s16 = block(layers.MaxPooling2D()(s8), 96)
    u8 = block(layers.Concatenate()([layers.UpSampling2D()(s16), s8]), 64)
    u4 = block(layers.Concatenate()([layers.UpSampling2D()(u8), s4]), 48)
    u2 = block(layers.Concatenate()([layers.UpSampling2D()(u4), s2]), 32)
    heat = layers.Conv2D(1, 1, activation="sigmoid", name="heat",
                         bias_initializer=keras.initializers.Constant(-2.19))(u2)  # prior 0.1 (CenterNet)
    size = layers.Conv2D(2, 1, name="size")(u2)
    return keras.Model(inp, layers.Concatenate(name="out")([heat, size]), name="cell_detector")


def decode(out: np.ndarray, scale: float, cell_diameter: float, threshold: float,
           shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Network output (h, w, 3) -> (boxes (N, 4) int64 x, y, w, h in original pixels, peak scores (N,)).

    A centre is a local maximum of the heat map above `threshold`; peaks closer than MIN_PEAK_DISTANCE cell
    diameters are one cell (the higher kept).
    """
    heat = out[:, :, 0].astype(np.float32)
    local = cv2.dilate(heat, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((heat >= local) & (heat >= threshold))
    scores = heat[ys, xs]
    order = np.argsort(-scores, kind="stable")
    ys, xs, scores = ys[order], xs[order], scores[order]
    per = STRIDE / scale  # original pixels per heat-map pixel
    cx, cy = (xs + 0.5) * per, (ys + 0.5) * per
    keep = _thin(cx, cy, MIN_PEAK_DISTANCE * cell_diameter)
    cx, cy, scores, ys, xs = cx[keep], cy[keep], scores[keep], ys[keep], xs[keep]
    wh = np.exp(np.clip(out[ys, xs, 1:3].astype(np.float64), -1.5, 1.5)) * WORK_DIAMETER / scale  # side / 24 px
    H, W = shape
    x0 = np.clip(np.round(cx - wh[:, 0] / 2), 0, W - 1)
    y0 = np.clip(np.round(cy - wh[:, 1] / 2), 0, H - 1)
    x1 = np.clip(np.round(cx + wh[:, 0] / 2), x0 + 1, W)
    y1 = np.clip(np.round(cy + wh[:, 1] / 2), y0 + 1, H)
    inside = (cx < W) & (cy < H)  # peaks in the padding are not cells
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).astype(np.int64)[inside]
    return boxes.reshape(-1, 4), scores[inside].astype(np.float64)


def _thin(cx: np.ndarray, cy: np.ndarray, min_dist: float) -> np.ndarray:
    """Indices kept when walking peaks best-first and dropping any within `min_dist` of a kept one."""
    kept: list[int] = []
    pts = np.stack([cx, cy], axis=1)
    for i in range(len(pts)):
        if not kept or np.min(np.hypot(*(pts[kept] - pts[i]).T)) >= min_dist:
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def forward(model):
    """One traced graph for any field size, BatchNorm folded into the convolutions (core.models.fold): the eager
    call costs about twice as much per field."""
    import tensorflow as tf

    from core.models.fold import fold_batchnorm

    net = fold_batchnorm(model)
    fn = tf.function(lambda x: net(x, training=False), autograph=False,
                     input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)])
    return lambda x: np.asarray(fn(x))


@dataclass(frozen=True)
class Detector:
    """A trained detector and its operating point (the heat-map threshold chosen on validation fields)."""

    run: object  # (1, h, w, 3) float32 -> (1, h/2, w/2, 3) network output
    threshold: float
    sha256: str

    def boxes(self, rgb: np.ndarray, cell_diameter: float) -> tuple[np.ndarray, np.ndarray]:
        """Cell boxes (original pixels) and their peak scores for one RGB field whose cells are ~cell_diameter px."""
        scale = work_scale(cell_diameter, rgb.shape[:2])
        out = self.run(to_work(rgb, scale)[None].astype(np.float32))[0]
        return decode(out, scale, cell_diameter, self.threshold, rgb.shape[:2])


def detector_sha256(root: Path | None = None) -> str | None:
    """The bundled detector's sha256 as its card states it (None without one): which finder made a record, known
    without loading TensorFlow (load_detector checks the file against it when the detector is used)."""
    d = Path(root) if root else DETECTOR_DIR
    if not ((d / "card.json").is_file() and (d / "model.keras").is_file()):
        return None
    return json.loads((d / "card.json").read_text()).get("sha256")


def load_detector(root: Path | None = None) -> Detector | None:
    """The bundled detector (checked against its card's sha256), or None when there is none."""
    d = Path(root) if root else DETECTOR_DIR
    card_path, weights = d / "card.json", d / "model.keras"
    if not (card_path.is_file() and weights.is_file()):
        return None
    card = json.loads(card_path.read_text())
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    if sha != card.get("sha256"):
        raise ValueError(f"{weights}: sha256 {sha[:12]}... does not match its card; the detector file was changed")
    import keras

    return Detector(forward(keras.saving.load_model(weights, compile=False)), float(card["threshold"]), sha)
