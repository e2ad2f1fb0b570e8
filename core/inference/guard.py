"""Input guards: is this the right kind of picture for the model, and does the model find it unusual?

* `modality_check(img, task_modality)`: chest X-ray models are trained on greyscale radiographs and the cell
  model on colour (Giemsa-stained) blood-smear crops. A colour image sent to an X-ray task, or a greyscale one
  sent to the cell task, gets a warning naming the task that fits. The statistic is simple and measured on the
  real test splits (`python -m core.guard measure`): the 75th percentile, over non-black pixels, of each
  pixel's chroma (max channel - min channel). Radiographs are grey (chroma 0, including grey images stored as
  RGB with R=G=B, and colour JPEGs of grey images); stained cells are coloured even when faintly stained.

* `FeatureOOD`: Mahalanobis distance of a model's penultimate features (the input of its `logit` layer) from
  the validation images' features, with a Ledoit-Wolf shrunk covariance; an image is unusual above the 99th
  percentile of validation distances (computed out-of-fold, so the threshold is not optimistic). The fitted
  statistics are cached in `models/<task>/<id>/ood.npz`, written only by `core.training.guards.fit_and_save_ood` /
  `python -m core.guard fit-ood`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- modality

DARK_LEVEL = 40  # pixels whose brightest channel is at or below this are background / film edge, not content
GREY_CHROMA_MAX = 3.0  # p75 chroma at or below this is a greyscale picture (JPEG noise on grey stays < 2)
TASK_SUGGESTION = {"xray": "Pneumonia or Pleural effusion (chest X-ray)", "smear": "Malaria (blood-smear cell)"}


@dataclass(frozen=True)
class ModalityStats:
    """Cheap statistics of an image that tell a radiograph from a stained smear."""

    height: int
    width: int
    channels: int
    chroma_p75: float  # 75th percentile of (max - min channel) over non-dark pixels
    coloured_fraction: float  # share of non-dark pixels with chroma >= 12
    equal_channels: bool  # stored as RGB but R == G == B everywhere
    dark_fraction: float  # share of pixels at or below DARK_LEVEL (black background of cell crops, film edge)
    pale_fraction: float  # share of pixels that are near-white/pale pink (smear background between cells)

    @property
    def looks_like(self) -> str:
        return looks_like(self.chroma_p75)


def looks_like(chroma_p75: float) -> str:
    """The modality an image's chroma says it is: a greyscale radiograph or a stained smear."""
    return "xray" if chroma_p75 <= GREY_CHROMA_MAX else "smear"


def _rgb_small(img: np.ndarray) -> np.ndarray:
    """At most ~256x256 pixels, uint8 RGB: the statistics are global, and big photos stay cheap."""
    rgb = img[:, :, :3]
    if rgb.dtype != np.uint8:  # statistics assume 0..255
        from core.io.images import _as_uint8

        rgb = _as_uint8(rgb)
    step = max(1, int(np.ceil(max(img.shape[:2]) / 256)))
    return rgb[::step, ::step]


def _hi_lo(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel max and min channel; channel by channel, since numpy's reduction over a length-3 last axis costs
    ~30x more (185 vs 6 us on a 64 px cell), which a batch pays on every file."""
    r, g, b = small[:, :, 0], small[:, :, 1], small[:, :, 2]
    return np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)


def _p75(values: np.ndarray) -> float:
    """np.percentile(values, 75) (linear interpolation), by one partition: the check runs on every batch file."""
    n = values.size
    pos = 0.75 * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    part = np.partition(values, (lo, hi))
    return float(part[lo] + (pos - lo) * (part[hi] - part[lo]))


def chroma_p75(img: np.ndarray) -> float:
    """`ModalityStats.chroma_p75` alone: all the modality check needs (0 for single-channel images).

    The same number as `modality_stats` (tested), in uint8 (hi >= lo, so no overflow) and by one partition: every
    batch file pays it (42 vs 51 us for OpenCV's channel split + masked histogram on a 64 px cell, one thread).
    """
    img = np.asarray(img)
    if img.ndim == 2 or img.shape[2] == 1:
        return 0.0
    hi, lo = _hi_lo(_rgb_small(img))
    c = (hi - lo)[hi > DARK_LEVEL]
    return _p75(c) if c.size else 0.0


def modality_stats(img: np.ndarray) -> ModalityStats:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    h, w = img.shape[:2]
    if img.ndim == 2:
        dark = img <= DARK_LEVEL
        pale = img >= 215
        return ModalityStats(h, w, 1, 0.0, 0.0, True, float(dark.mean()), float(pale.mean()))
    rgb = img[:, :, :3]
    if rgb.dtype != np.uint8:
        from core.io.images import _as_uint8

        rgb = _as_uint8(rgb)  # once: the equal-channels check reads every pixel, the rest the small copy
    small = _rgb_small(rgb).astype(np.int16)
    hi, lo = _hi_lo(small)
    chroma = hi - lo
    content = hi > DARK_LEVEL
    equal = bool((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all())
    c = chroma[content]
    p75 = _p75(c) if c.size else 0.0
    coloured = float((c >= 12).mean()) if c.size else 0.0
    pale = (lo >= 180) & (chroma <= 60) & (small[:, :, 0] >= small[:, :, 1])
    return ModalityStats(h, w, 3, p75, coloured, equal, float((~content).mean()), float(pale.mean()))


def modality_check(img: np.ndarray, task_modality: str) -> str | None:
    """A warning for the user when the picture does not look like what the task's models were trained on."""
    if task_modality not in TASK_SUGGESTION:
        raise ValueError(f"unknown modality {task_modality!r}; expected one of {sorted(TASK_SUGGESTION)}")
    p75 = chroma_p75(img)
    if looks_like(p75) == task_modality:
        return None
    if task_modality == "xray":
        return (
            "This is a colour image, which looks like a stained blood-smear/cell picture rather than a greyscale "
            f"chest radiograph (colour level {p75:.0f}; radiographs are 0). The X-ray model was not trained "
            f"on such images, so its score is not meaningful. If this is a blood-smear cell image, use the "
            f"{TASK_SUGGESTION['smear']} task; if it is a photo of an X-ray, upload the original export instead."
        )
    return (
        "This is a greyscale image, which looks like a radiograph rather than a stained blood-smear cell "
        f"(colour level {p75:.0f}; stained cells are coloured). The cell model was not trained on such "
        f"images, so its score is not meaningful. If this is a chest X-ray, use the {TASK_SUGGESTION['xray']} task."
    )


# ---------------------------------------------------------------------------------------------- OOD

OOD_FILE = "ood.npz"


def feature_model(model):
    """Keras model image -> penultimate representation (the input of the `logit` Dense layer).

    For an ensemble (`logit` averages the members' `m<k>_logit` layers) it is the members' penultimate
    features side by side.
    """
    import keras

    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    logit = model.get_layer("logit")
    if isinstance(logit, keras.layers.Dense):
        return keras.Model(inputs, logit.input, name=f"{model.name}_features")
    members = [layer.input for layer in model.layers if layer.name.startswith("m") and layer.name.endswith("_logit")]
    return keras.Model(inputs, keras.layers.Concatenate()(members), name=f"{model.name}_features")


class FeatureOOD:
    """Mahalanobis distance of penultimate features from the validation images' features.

    Features are z-scored per unit, then a Ledoit-Wolf shrunk covariance is inverted (stable with fewer images
    than dimensions and with dead ReLU units). `threshold` is the `quantile` of validation distances; with at
    least 50 images they are out-of-fold distances (k-fold refits), since in-sample distances are biased low.
    `distance(x)` / `is_unusual(x)` take features (n, d) or (d,), or images (n, H, W, C) or (H, W, C) when a
    Keras model is attached (`attach` / `from_model`).
    """

    def __init__(self, mean, scale, precision, threshold: float, quantile: float = 0.99, n_fit: int = 0, shrinkage: float = 0.0):
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.precision = np.asarray(precision, np.float64)
        self.threshold = float(threshold)
        self.quantile = float(quantile)
        self.n_fit = int(n_fit)
        self.shrinkage = float(shrinkage)
        self._extractor = None

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    # -- fitting
    @staticmethod
    def _moments(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        from sklearn.covariance import LedoitWolf

        mean = f.mean(axis=0)
        std = f.std(axis=0)
        scale = std + 1e-3 * (float(std.mean()) or 1.0) + 1e-12
        z = (f - mean) / scale
        lw = LedoitWolf(assume_centered=True).fit(z)
        return mean, scale, lw.precision_, float(lw.shrinkage_)

    @staticmethod
    def _dist(f: np.ndarray, mean, scale, precision) -> np.ndarray:
        z = (f - mean) / scale
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, precision, z), 0.0))

    @classmethod
    def fit(cls, features: np.ndarray, quantile: float = 0.99, folds: int = 5, seed: int = 0) -> "FeatureOOD":
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or len(f) < 3:
            raise ValueError(f"need a (n >= 3, d) feature matrix, got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("features contain non-finite values")
        mean, scale, precision, shrink = cls._moments(f)
        if len(f) >= 50 and folds >= 2:
            order = np.random.default_rng(seed).permutation(len(f))
            dist = np.empty(len(f))
            for part in np.array_split(order, folds):
                rest = np.setdiff1d(order, part)
                m, s, p, _ = cls._moments(f[rest])
                dist[part] = cls._dist(f[part], m, s, p)
        else:
            dist = cls._dist(f, mean, scale, precision)
        return cls(mean, scale, precision, float(np.quantile(dist, quantile)), quantile, len(f), shrink)

    @classmethod
    def from_model(cls, model, images: np.ndarray, batch_size: int = 64, **kw) -> "FeatureOOD":
        """Fit on the model's penultimate features of prepared images (e.g. the validation set)."""
        ood = cls.fit(extract_features(model, images, batch_size), **kw)
        return ood.attach(model)

    def attach(self, model) -> "FeatureOOD":
        self._extractor = feature_model(model)
        if int(self._extractor.output.shape[-1]) != self.dim:
            raise ValueError(f"model's penultimate layer has {self._extractor.output.shape[-1]} units, the statistics {self.dim}")
        return self

    # -- scoring
    def _features(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim in (1, 2):
            f = x.reshape(1, -1) if x.ndim == 1 else x
            if f.shape[1] != self.dim:
                raise ValueError(f"expected {self.dim} features, got {f.shape[1]}")
            return f.astype(np.float64)
        if x.ndim in (3, 4):
            if self._extractor is None:
                raise ValueError("images given but no model attached; call attach(model) or pass features")
            batch = x[None] if x.ndim == 3 else x
            return _run(self._extractor, batch.astype(np.float32)).astype(np.float64)
        raise ValueError(f"cannot score an array of shape {x.shape}")

    def distance(self, x) -> np.ndarray | float:
        single = np.asarray(x).ndim in (1, 3)
        d = self._dist(self._features(x), self.mean, self.scale, self.precision)
        return float(d[0]) if single else d

    def is_unusual(self, x) -> np.ndarray | bool:
        d = self.distance(x)
        return bool(d > self.threshold) if np.isscalar(d) else d > self.threshold

    # -- persistence
    def save(self, path: str | Path, **info) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # a file handle keeps numpy from appending '.npz' to other names
            np.savez(fh, mean=self.mean, scale=self.scale, precision=self.precision, threshold=self.threshold,
                     quantile=self.quantile, n_fit=self.n_fit, shrinkage=self.shrinkage,
                     info=json.dumps(info, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple["FeatureOOD", dict]:
        with np.load(path, allow_pickle=False) as z:
            ood = cls(z["mean"], z["scale"], z["precision"], float(z["threshold"]), float(z["quantile"]),
                      int(z["n_fit"]), float(z["shrinkage"]))
            info = json.loads(str(z["info"]))
        return ood, info


def _run(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    out = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).reshape(len(x), -1) if out else np.zeros((0, int(model.output.shape[-1])))


def extract_features(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Prepared images (n, H, W, C) -> penultimate features (n, d), inference mode."""
    return _run(feature_model(model), np.asarray(images, np.float32), batch_size)


def load_ood(task: str, model_id: str, root: str | Path | None = None, model=None) -> FeatureOOD | None:
    """Cached statistics for a model, or None when absent or fitted for a different model file."""
    from core.models.store import model_dir, read_card

    path = model_dir(task, model_id, root) / OOD_FILE
    if not path.is_file():
        return None
    ood, info = FeatureOOD.load(path)
    if info.get("model_sha256") != read_card(task, model_id, root).get("sha256"):
        log.warning("%s/%s: %s was fitted for another model file; ignoring it (re-run fit-ood)", task, model_id, OOD_FILE)
        return None
    return ood.attach(model) if model is not None else ood
