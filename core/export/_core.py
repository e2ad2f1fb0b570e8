"""The only place core.export touches the rest of core (model store, task registry, BatchNorm folding, decoding)."""
from __future__ import annotations

import numpy as np

from core.models.fold import fold_batchnorm
from core.io.images import read_image
from core.inference.forward import SCORE_DECIMALS, predict_tensors
from core.inference.preprocess import resize, to_channels
from core.models.store import load_model, read_card
from core.registry import InputSpec, get_task

__all__ = ["SCORE_DECIMALS", "InputSpec", "fold_batchnorm", "get_task", "load_model", "model_pixels", "predict_tensors",
           "read_card", "read_image"]


def model_pixels(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Decoded uint8 image -> uint8 (size, size, channels): what a serving client sends (core.preprocess minus the
    normalisation, which the exported graph does)."""
    return resize(to_channels(img, spec.channels), spec.size)
