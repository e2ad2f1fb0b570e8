"""Whole image lists as one prepared tensor, through the same decode and preprocessing as every other path."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.inference.preprocess import prepare
from core.io.images import read_image
from core.registry import InputSpec


def load_arrays(files: list[str], spec: InputSpec, workers: int = 4) -> np.ndarray:
    """Decode and prepare every file through the shared preprocessing path."""
    def one(f: str) -> np.ndarray:
        return prepare(read_image(f), spec)

    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(one, files))
    return np.stack(out) if out else np.zeros((0, spec.size, spec.size, spec.channels), np.float32)
