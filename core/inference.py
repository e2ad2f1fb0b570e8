"""Scoring images with a loaded model: the same path for evaluation, the CLI and the app."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .imageio import ImageSource, read_image
from .preprocess import prepare
from .tasks import InputSpec

SCORE_DECIMALS = 8  # scores are stored in CSVs with this many decimals; rounding here keeps files and cards identical


def predict_tensors(model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Probabilities for a prepared batch, in inference mode (BatchNorm uses its moving statistics)."""
    out = []
    for i in range(0, len(x), batch_size):
        out.append(np.asarray(model(x[i : i + batch_size], training=False)).reshape(-1))
    p = np.concatenate(out) if out else np.zeros(0)
    return np.round(p.astype(np.float64), SCORE_DECIMALS)


def score_sources(model, spec: InputSpec, sources: list[ImageSource], batch_size: int = 128, workers: int = 4) -> np.ndarray:
    """Decode, prepare and score many images; raises InputError on the first unreadable one."""
    scores = []
    with ThreadPoolExecutor(workers) as pool:
        for i in range(0, len(sources), batch_size):
            chunk = list(pool.map(lambda s: prepare(read_image(s), spec), sources[i : i + batch_size]))
            scores.append(predict_tensors(model, np.stack(chunk), batch_size))
    return np.concatenate(scores) if scores else np.zeros(0)
