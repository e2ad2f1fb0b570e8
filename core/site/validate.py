"""Local validation, pure: labels + scores (+ optional patient ids) in, a site report out.

Everything the site page and `python -m core.site` show: every rate at the current operating point with a 95%
interval, AUC (DeLong), the ROC, calibration (curve, ECE, Brier) on these cases, a proposed site operating point
by the task's own rule (`core.evaluation.metrics.choose_threshold`) and a site recalibration (Platt scaling on
the logit). Intervals are patient-level (cluster bootstrap over patients, all images of a patient drawn
together) when patient ids are given, else image-level (Wilson for proportions, stratified bootstrap for F1);
the report names which. `intervals` below is deliberately small and local so it can be swapped for the shared
`core.evaluation.intervals` when that lands.

A set with fewer than MIN_PER_CLASS positives or negatives is too small to move the operating point on: the
report shows the intervals and proposes no threshold change.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, logit

from core.evaluation import metrics

MIN_PER_CLASS = 20
RATE_KEYS = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "f1", "balanced_accuracy")
EPS = 1e-7


# ---------------------------------------------------------------------------------------------- intervals

def _counts_by_cluster(y: np.ndarray, s: np.ndarray, threshold: float, groups: np.ndarray) -> np.ndarray:
    """(k clusters, 4) counts tp, fp, fn, tn per cluster at a threshold."""
    _, inv = np.unique(groups, return_inverse=True)
    pred = s >= threshold
    cols = [(pred & (y == 1)), (pred & (y == 0)), (~pred & (y == 1)), (~pred & (y == 0))]
    k = int(inv.max()) + 1 if inv.size else 0
    return np.stack([np.bincount(inv, weights=c.astype(np.float64), minlength=k) for c in cols], axis=1)


def cluster_bootstrap_rates(y, s, threshold: float, groups, n_boot: int = 1000, seed: int = 0,
                            alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile CIs of the rates, resampling whole clusters (patients) with replacement.

    A replicate draws k clusters out of k: its counts are a multinomial-weighted sum of per-cluster counts, so
    all replicates are one (n_boot, k) @ (k, 4) product, no loop over replicates.
    """
    y, s = metrics._check(y, s)
    per = _counts_by_cluster(y, s, threshold, np.asarray(groups).astype(str))
    k = per.shape[0]
    rng = np.random.default_rng(seed)
    w = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(np.float64)
    tp, fp, fn, tn = (w @ per).T
    r = metrics._rates_arrays(tp, fp, fn, tn)
    out = {}
    for name in RATE_KEYS:
        v = r[name][np.isfinite(r[name])]
        out[name] = (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) if v.size else (math.nan, math.nan)
    return out


def image_level_rates(c: dict[str, int], y, s, threshold: float, n_boot: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Wilson intervals for the proportions; stratified bootstrap for F1 and balanced accuracy (not proportions)."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    out = {
        "sensitivity": metrics.wilson_ci(tp, tp + fn),
        "specificity": metrics.wilson_ci(tn, tn + fp),
        "ppv": metrics.wilson_ci(tp, tp + fp),
        "npv": metrics.wilson_ci(tn, tn + fn),
        "accuracy": metrics.wilson_ci(tp + tn, tp + fp + fn + tn),
    }
    boot = metrics.bootstrap_rates_ci(y, s, threshold, n_boot=n_boot, seed=seed)
    out["f1"] = boot["f1"]
    out["balanced_accuracy"] = _balanced_ci(c, n_boot, seed)
    return out


def _balanced_ci(c: dict[str, int], n_boot: int, seed: int, alpha: float = 0.05) -> tuple[float, float]:
    n_pos, n_neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    if not n_pos or not n_neg:
        return math.nan, math.nan
    rng = np.random.default_rng(seed + 1)
    sens = rng.binomial(n_pos, c["tp"] / n_pos, n_boot) / n_pos
    spec = rng.binomial(n_neg, c["tn"] / n_neg, n_boot) / n_neg
    v = (sens + spec) / 2
    return float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))


def intervals(y, s, threshold: float, groups=None, n_boot: int = 1000, seed: int = 0, unit: str = "patient") -> tuple[dict, str]:
    """(rate -> (lo, hi), method label). Cluster-level (`unit`: patients, fields) when `groups` has fewer
    distinct ids than images."""
    c = metrics.OperatingCurve.from_scores(y, s).counts(threshold)
    if groups is not None and len(set(map(str, groups))) < len(groups):
        k = len(set(map(str, groups)))
        return cluster_bootstrap_rates(y, s, threshold, groups, n_boot, seed), f"{unit}-level cluster bootstrap ({k} {unit}s, {n_boot} replicates)"
    return image_level_rates(c, y, s, threshold, n_boot, seed), "image-level (Wilson; F1 and balanced accuracy by stratified bootstrap)"


# ---------------------------------------------------------------------------------------------- calibration

def fit_platt(y, s, l2: float = 1e-3, iters: int = 50) -> dict[str, float]:
    """Platt scaling on the logit: p' = sigmoid(a * logit(p) + b), fitted by Newton's method (log loss + tiny L2).

    Monotone for a > 0, so it changes what a probability means here, not the ranking.
    """
    y, s = metrics._check(y, s)
    z = logit(np.clip(s, EPS, 1 - EPS))
    X = np.stack([z, np.ones_like(z)], axis=1)
    prior = np.array([1.0, 0.0])  # the identity; the tiny L2 pulls towards it, not towards 0

    def loss(w: np.ndarray) -> float:
        m = X @ w
        return float(np.sum(np.logaddexp(0, m) - y * m) + 0.5 * l2 * np.sum((w - prior) ** 2))

    w = prior.copy()
    f = loss(w)
    for _ in range(iters):
        p = expit(X @ w)
        g = X.T @ (p - y) + l2 * (w - prior)
        H = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(2)
        step = np.linalg.solve(H, g)
        t = 1.0
        while t > 1e-8 and loss(w - t * step) > f:  # backtracking: plain Newton can overshoot on confident scores
            t /= 2
        w, f_new = w - t * step, loss(w - t * step)
        if abs(f - f_new) < 1e-12 * max(1.0, abs(f)) or np.abs(t * step).max() < 1e-10:
            break
        f = f_new
    return {"method": "platt_logit", "a": float(w[0]), "b": float(w[1])}


def apply_calibration(p, calibration: dict | None):
    """Site-calibrated probability (array or float); the identity without a calibration."""
    if not calibration:
        return p
    z = logit(np.clip(np.asarray(p, np.float64), EPS, 1 - EPS))
    out = expit(calibration["a"] * z + calibration["b"])
    return float(out) if np.ndim(out) == 0 else out


def calibration_report(y, s, n_bins: int = 10) -> dict:
    mean_pred, frac_pos, counts = metrics.calibration_curve(y, s, n_bins, "quantile")
    return {"ece": metrics.expected_calibration_error(y, s, n_bins, strategy="quantile"), "brier": metrics.brier_score(y, s),
            "curve": {"mean_predicted": mean_pred.tolist(), "fraction_positive": frac_pos.tolist(), "n": counts.tolist()}}


# ---------------------------------------------------------------------------------------------- report

def roc_points(y, s, max_points: int = 200) -> dict[str, list[float]]:
    """ROC (fpr, tpr, threshold), thinned to at most `max_points` for display and storage."""
    fpr, tpr, thr = metrics.OperatingCurve.from_scores(y, s).roc()
    if fpr.size > max_points:
        keep = np.unique(np.r_[np.linspace(0, fpr.size - 1, max_points).astype(int), fpr.size - 1])
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": [None if not np.isfinite(t) else float(t) for t in thr]}


def point(y, s, threshold: float, groups=None, n_boot: int = 1000, seed: int = 0, unit: str = "patient") -> dict:
    """Counts, rates and their intervals at one threshold."""
    c = metrics.OperatingCurve.from_scores(y, s).counts(threshold)
    ci, method = intervals(y, s, threshold, groups, n_boot, seed, unit)
    return {"threshold": float(threshold), **c, **metrics.rates(c), "ci": {k: list(v) for k, v in ci.items()}, "ci_method": method}


def too_small(n_pos: int, n_neg: int) -> str | None:
    """The plain reason a set cannot support a threshold change, or None."""
    if n_pos >= MIN_PER_CLASS and n_neg >= MIN_PER_CLASS:
        return None
    return (f"Too few cases to recommend a change: {n_pos} positive and {n_neg} negative "
            f"(at least {MIN_PER_CLASS} of each are needed). The intervals show how uncertain the current numbers are; "
            "the operating point stays as shipped.")


def evaluate_site(y, s, threshold: float, rule: str, groups=None, n_boot: int = 1000, seed: int = 0,
                  unit: str = "patient") -> dict:
    """The whole local-validation report for scores `s` of labelled cases `y` (0/1) at the current `threshold`."""
    y, s = metrics._check(y, s)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"all {y.size} cases have the same label; local validation needs both classes")
    auc, lo, hi = metrics.delong_auc_ci(y, s)
    small = too_small(n_pos, n_neg)
    proposed = metrics.choose_threshold(rule, y, s)
    out = {
        "n": int(y.size), "n_positive": n_pos, "n_negative": n_neg,
        "n_clusters": len(set(map(str, groups))) if groups is not None else None, "cluster_unit": unit,
        "auc": auc, "auc_ci": [lo, hi],
        "current": point(y, s, threshold, groups, n_boot, seed, unit),
        "rule": rule,
        "proposed_threshold": None if small else float(proposed),
        "proposed": None if small else point(y, s, proposed, groups, n_boot, seed, unit),
        "rule_threshold_on_these_cases": float(proposed),  # shown even when too small, never applied
        "too_small": small,
        "roc": roc_points(y, s),
        "calibration": calibration_report(y, s),
    }
    cal = None if small else fit_platt(y, s)
    out["recalibration"] = cal
    if cal is not None:
        out["calibration_after"] = {k: v for k, v in calibration_report(y, apply_calibration(s, cal)).items() if k != "curve"}
    return out
