"""Binary-classification metrics as pure functions: plain arrays in, plain numbers out.

Labels are 0/1 (1 = the finding), scores are probabilities of the finding. A case is called positive
when `score >= threshold`. Everything at a threshold is read from sorted cumulative counts
(`OperatingCurve`), so moving the operating point never loops over images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int8).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values, y_score {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 0/1")
    if not np.isfinite(s).all():
        raise ValueError("y_score contains non-finite values")
    return y, s


@dataclass(frozen=True)
class OperatingCurve:
    """Counts at every distinct score, sorted descending: `tp[i]`, `fp[i]` count cases with score >= thresholds[i]."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int

    @classmethod
    def from_scores(cls, y_true, y_score) -> "OperatingCurve":
        y, s = _check(y_true, y_score)
        order = np.argsort(-s, kind="mergesort")
        s, y = s[order], y[order]
        last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], int)
        tp = np.cumsum(y)[last]
        fp = (np.arange(1, s.size + 1) - np.cumsum(y))[last]
        return cls(s[last], tp.astype(np.int64), fp.astype(np.int64), int(y.sum()), int(y.size - y.sum()))

    def counts(self, threshold: float) -> dict[str, int]:
        """Confusion counts at `threshold` by binary search: O(log n)."""
        # number of distinct thresholds >= threshold
        k = int(np.searchsorted(-self.thresholds, -threshold, side="right"))
        tp = int(self.tp[k - 1]) if k else 0
        fp = int(self.fp[k - 1]) if k else 0
        return {"tp": tp, "fp": fp, "fn": self.n_pos - tp, "tn": self.n_neg - fp}

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fpr, tpr, thresholds) starting at (0, 0) with threshold +inf, like scikit-learn's roc_curve."""
        fpr = np.r_[0.0, self.fp / max(self.n_neg, 1)]
        tpr = np.r_[0.0, self.tp / max(self.n_pos, 1)]
        return fpr, tpr, np.r_[np.inf, self.thresholds]


def rates(c: dict[str, int]) -> dict[str, float]:
    """Clinical rates from confusion counts; NaN where a denominator is zero."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    sens, spec = div(tp, tp + fn), div(tn, tn + fp)
    ppv, npv = div(tp, tp + fp), div(tn, tn + fn)
    return {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": npv,
        "accuracy": div(tp + tn, tp + tn + fp + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (sens + spec) / 2,
    }


def confusion_at(y_true, y_score, threshold: float) -> dict[str, int]:
    y, s = _check(y_true, y_score)
    pred = s >= threshold
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
        "tn": int(np.sum(~pred & (y == 0))),
    }


def metrics_at(y_true, y_score, threshold: float) -> dict[str, float]:
    c = OperatingCurve.from_scores(y_true, y_score).counts(threshold)
    return {**c, **rates(c), "threshold": float(threshold)}


def roc_auc(y_true, y_score) -> float:
    """Mann–Whitney AUC with ties counted half."""
    y, s = _check(y_true, y_score)
    n1, n0 = int(y.sum()), int(y.size - y.sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def youden_threshold(y_true, y_score, min_sensitivity: float | None = None) -> float:
    """Threshold maximising sensitivity + specificity − 1, optionally among those keeping sensitivity >= a floor.

    Ties go to the higher threshold (fewer false alarms at equal J).
    """
    curve = OperatingCurve.from_scores(y_true, y_score)
    tpr = curve.tp / max(curve.n_pos, 1)
    fpr = curve.fp / max(curve.n_neg, 1)
    j = tpr - fpr
    if min_sensitivity is not None:
        j = np.where(tpr >= min_sensitivity - 1e-12, j, -np.inf)
    i = int(np.argmax(j))  # first max = highest threshold, since thresholds descend
    return float(curve.thresholds[i])


def threshold_for_sensitivity(y_true, y_score, target: float) -> float:
    """Highest threshold whose sensitivity reaches `target` (so specificity is as high as it can be)."""
    curve = OperatingCurve.from_scores(y_true, y_score)
    tpr = curve.tp / max(curve.n_pos, 1)
    ok = np.flatnonzero(tpr >= target - 1e-12)
    return float(curve.thresholds[ok[0]]) if ok.size else float(curve.thresholds[-1])


def threshold_for_specificity(y_true, y_score, target: float) -> float:
    """Lowest threshold whose specificity still reaches `target` (so sensitivity is as high as it can be)."""
    curve = OperatingCurve.from_scores(y_true, y_score)
    spec = 1 - curve.fp / max(curve.n_neg, 1)
    ok = np.flatnonzero(spec >= target - 1e-12)
    return float(curve.thresholds[ok[-1]]) if ok.size else float(curve.thresholds[0])


def choose_threshold(rule: str, y_true, y_score) -> float:
    """Operating-point rules named in the task registry, applied to validation predictions only."""
    if rule == "youden":
        return youden_threshold(y_true, y_score)
    if rule.startswith("youden_min_sensitivity_"):
        return youden_threshold(y_true, y_score, float(rule.rsplit("_", 1)[1]))
    if rule.startswith("sensitivity_"):
        return threshold_for_sensitivity(y_true, y_score, float(rule.rsplit("_", 1)[1]))
    if rule.startswith("specificity_"):
        return threshold_for_specificity(y_true, y_score, float(rule.rsplit("_", 1)[1]))
    raise ValueError(f"unknown threshold rule {rule!r}")


def _delong_components(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    from scipy.stats import rankdata

    pos, neg = s[y == 1], s[y == 0]
    m, n = pos.size, neg.size
    r_all = rankdata(np.r_[pos, neg])
    r_pos, r_neg = rankdata(pos), rankdata(neg)
    auc = (r_all[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (r_all[:m] - r_pos) / n  # per-positive structural components
    v01 = 1 - (r_all[m:] - r_neg) / m  # per-negative
    return float(auc), v10, v01


def delong_auc_ci(y_true, y_score, alpha: float = 0.05) -> tuple[float, float, float]:
    """AUC with DeLong's (1988) variance and a normal-approximation CI, clipped to [0, 1]."""
    from scipy.stats import norm

    y, s = _check(y_true, y_score)
    auc, v10, v01 = _delong_components(y, s)
    var = np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size
    z = norm.ppf(1 - alpha / 2)
    half = z * np.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def delong_test(y_true, score_a, score_b) -> dict[str, float]:
    """Paired DeLong test for two models scored on the same cases: AUCs, difference and two-sided p."""
    from scipy.stats import norm

    y, a = _check(y_true, score_a)
    _, b = _check(y_true, score_b)
    auc_a, v10a, v01a = _delong_components(y, a)
    auc_b, v10b, v01b = _delong_components(y, b)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / v10a.size + s01 / v01a.size
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = auc_a - auc_b
    if var <= 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(2 * norm.sf(abs(diff) / np.sqrt(var)))
    return {"auc_a": auc_a, "auc_b": auc_b, "difference": diff, "p_value": p}


def stratified_bootstrap_ci(y_true, y_score, stat, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of `stat(y, s)` resampling positives and negatives separately (keeps prevalence fixed)."""
    y, s = _check(y_true, y_score)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        vals[b] = stat(y[idx], s[idx])
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return float("nan"), float("nan")
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def wilson_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n."""
    from scipy.stats import norm

    if n == 0:
        return float("nan"), float("nan")
    z = norm.ppf(1 - alpha / 2)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(max(0.0, c - h)), float(min(1.0, c + h))


def summary(y_true, y_score, threshold: float) -> dict[str, float]:
    """Headline metrics for a card: AUC with DeLong CI, rates at the threshold with Wilson CIs."""
    y, s = _check(y_true, y_score)
    auc, lo, hi = delong_auc_ci(y, s)
    m = metrics_at(y, s, threshold)
    out = {"n": int(y.size), "n_positive": int(y.sum()), "auc": auc, "auc_ci": [lo, hi], **m}
    out["sensitivity_ci"] = list(wilson_ci(m["tp"], m["tp"] + m["fn"]))
    out["specificity_ci"] = list(wilson_ci(m["tn"], m["tn"] + m["fp"]))
    out["accuracy_ci"] = list(wilson_ci(m["tp"] + m["tn"], int(y.size)))
    return out
