"""Operating-point updates: every metric at a new threshold, as when the user moves the slider.

Fast path (what the app does): an `OperatingCurve` built once from the scores; per move `curve.counts(t)` +
`rates(...)` (O(log n)), and `operating_table(curve, grid)` for a whole grid of thresholds at once.
Naive path for comparison: scikit-learn `confusion_matrix` + precision/recall/F1/accuracy/balanced accuracy
recomputed on the full arrays at every move (O(n) and several passes).
"""
from __future__ import annotations

import time

import numpy as np

from .common import stats_ms, time_calls

TARGET_MS = 5.0


def synthetic_scores(n: int, seed: int = 0, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and realistic, mostly-distinct probabilities (8 decimals, like the stored predictions)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int8)
    logit = rng.normal(np.where(y == 1, 1.5, -1.5), 1.3)
    s = np.round(1.0 / (1.0 + np.exp(-logit)), 8)
    return y, s


def _naive_metrics(y: np.ndarray, s: np.ndarray, t: float) -> dict:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
    )

    pred = (s >= t).astype(np.int8)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
        "sensitivity": recall_score(y, pred, zero_division=np.nan),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "ppv": precision_score(y, pred, zero_division=np.nan),
        "npv": tn / (tn + fn) if tn + fn else float("nan"),
        "accuracy": accuracy_score(y, pred),
        "f1": f1_score(y, pred, zero_division=np.nan),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
    }


def bench_threshold(
    n_scores: int = 100_000,
    n_moves: int = 2000,
    grid_size: int = 1001,
    n_tables: int = 200,
    naive_moves: int = 50,
    warmup: int = 20,
    seed: int = 0,
) -> dict:
    """Time slider moves on `n_scores` scores. Returns raw stats in ms plus the naive comparison and a check that
    both paths give the same counts. No timing assertion: the caller compares with `TARGET_MS`."""
    from core.evaluation.metrics import OperatingCurve, operating_table, rates

    y, s = synthetic_scores(n_scores, seed)
    t0 = time.perf_counter()
    curve = OperatingCurve.from_scores(y, s)
    build_ms = (time.perf_counter() - t0) * 1000.0

    rng = np.random.default_rng(seed + 1)
    thresholds = rng.random(max(n_moves, 1) + warmup)

    def move(t: float) -> dict:
        c = curve.counts(t)
        return {**c, **rates(c)}

    for t in thresholds[:warmup]:
        move(float(t))
    timed = thresholds[warmup : warmup + n_moves]
    move_ms = time_calls(lambda i: move(float(timed[i])), 0, len(timed))

    grid = np.linspace(0.0, 1.0, grid_size)
    table_ms = time_calls(lambda i: operating_table(curve, grid), min(warmup, 5), n_tables)

    naive_ms = []
    agree = True
    _naive_metrics(y, s, 0.5)  # import and first-call costs out of the timing
    for t in thresholds[warmup : warmup + naive_moves]:
        t1 = time.perf_counter()
        ref = _naive_metrics(y, s, float(t))
        naive_ms.append((time.perf_counter() - t1) * 1000.0)
        fast = move(float(t))
        if any(fast[k] != ref[k] for k in ("tp", "fp", "fn", "tn")):
            agree = False

    move_stats, naive_stats = stats_ms(move_ms), stats_ms(naive_ms)
    return {
        "n_scores": int(n_scores),
        "distinct_scores": int(curve.thresholds.size),
        "curve_build_ms": build_ms,
        "move": move_stats,  # counts + rates at one new threshold
        "table": {**stats_ms(table_ms), "grid_size": int(grid_size)},  # operating_table for a whole grid
        "naive_move": naive_stats,  # scikit-learn on the full arrays at one new threshold
        "naive_speedup_p50": (naive_stats["p50"] / move_stats["p50"]) if move_stats["p50"] > 0 else float("nan"),
        "counts_agree_with_sklearn": agree,
        "target_ms": TARGET_MS,
    }
