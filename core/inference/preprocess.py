"""The one path from pixels to model tensor. Training, evaluation, prediction and the app all call it."""
from __future__ import annotations

import cv2
import numpy as np

from core.io.images import ImageSource, read_image
from core.registry import InputSpec


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB so a model always gets the channel count it was trained on."""
    if channels == 1:
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return img[:, :, None]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize; INTER_AREA when shrinking avoids aliasing, which matters for thin structures."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if min(h, w) >= size else cv2.INTER_LINEAR
    out = cv2.resize(img, (size, size), interpolation=interp)
    return out if out.ndim == img.ndim else out[:, :, None]


def normalize(x: np.ndarray, how: str) -> np.ndarray:
    x = x.astype(np.float32) / 255.0
    if how == "unit":
        return x
    if how == "standardize":
        # Per-image z-score: removes exposure differences between sources and scanners.
        return (x - x.mean()) / max(float(x.std()), 1e-3)
    raise ValueError(f"unknown normalization {how!r}")


def prepare(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Decoded uint8 image -> float32 (size, size, channels) tensor."""
    return normalize(resize(to_channels(img, spec.channels), spec.size), spec.normalize)


def preprocess(source: ImageSource, spec: InputSpec) -> np.ndarray:
    """File path, bytes or array -> model tensor (no batch axis)."""
    return prepare(read_image(source), spec)


def prepare_batch(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    return np.stack([prepare(im, spec) for im in images]) if images else np.zeros((0, spec.size, spec.size, spec.channels), np.float32)
