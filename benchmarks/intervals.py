"""Patient-level intervals: the full card summary (AUC, rates, ECE, Brier with cluster-bootstrap CIs) and the paired
AUC difference, 2,000 resamples of ~2,000 images from ~100 patients (malaria's test split is 1,865 cells).

    python -m benchmarks.intervals          # prints one JSON line

Target: each call well under 2 s on the 2-core machine (the loop-per-resample version takes minutes).
"""
from __future__ import annotations

import json

import numpy as np

from .common import stats_ms, time_calls

TARGET_MS = 2000.0


def synthetic_patients(n_images: int = 2000, n_patients: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_patients, n_images)
    infected = rng.random(n_patients) < 0.6
    y = (infected[groups] & (rng.random(n_images) < 0.6)).astype(np.int8)
    shift = rng.normal(0, 1, n_patients)[groups]
    s = np.round(1 / (1 + np.exp(-(1.5 * (2 * y - 1) + shift + rng.normal(0, 1, n_images)))), 8)
    return y, s, groups


def bench_intervals(n_boot: int = 2000, reps: int = 5) -> dict:
    from core.evaluation import intervals as iv

    y, s, g = synthetic_patients()
    s2 = np.clip(s + np.random.default_rng(1).normal(0, 0.05, s.size), 0, 1)
    summ = stats_ms(time_calls(lambda i: iv.patient_level_summary(y, s, g, 0.5, n_boot=n_boot, seed=i), 1, reps))
    paired = stats_ms(time_calls(lambda i: iv.paired_auc_difference(y, s, s2, g, n_boot=n_boot, seed=i), 1, reps))
    rates = stats_ms(time_calls(lambda i: iv.rate_cis(y, s, g, 0.3 + 0.01 * i, n_boot=n_boot), 2, 20))
    return {"n_images": int(y.size), "n_patients": int(np.unique(g).size), "n_boot": n_boot,
            "summary_ms": summ, "paired_auc_ms": paired, "rates_at_threshold_ms": rates, "target_ms": TARGET_MS,
            "met": bool(summ["p50"] < TARGET_MS and paired["p50"] < TARGET_MS)}


if __name__ == "__main__":
    print(json.dumps(bench_intervals()))
