"""Binary-classification metrics as pure functions: plain arrays in, plain numbers out.

Labels are 0/1 (1 = the finding), scores are probabilities of the finding. A case is called positive
when `score >= threshold`. Everything at a threshold is read from sorted cumulative counts
(`OperatingCurve`), so moving the operating point never loops over images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _labels(y_true, name: str = "y_true") -> np.ndarray:
    """0/1 labels as int8. Checked before casting, so 0.5 or 256 cannot silently become 0."""
    raw = np.asarray(y_true).ravel()
    if raw.dtype != bool and not np.isin(raw, (0, 1)).all():
        raise ValueError(f"{name} must be 0/1")
    return raw.astype(np.int8)


def _check(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(y_true)
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values, y_score {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("y_score contains non-finite values")
    return y, s


def _check_probabilities(s: np.ndarray) -> None:
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ValueError("y_score must be probabilities in [0, 1]")


def _div(a, b) -> np.ndarray:
    """Elementwise a / b with NaN where b == 0 (an undefined rate, not 0 and not a warning)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b != 0)


def _rates_arrays(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Vectorised `rates`: same keys and the same NaN rule, for arrays of counts."""
    sens, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    return {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "accuracy": _div(tp + tn, tp + tn + fp + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (sens + spec) / 2,
    }


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
        if np.isnan(threshold):
            raise ValueError("threshold is NaN")
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

    Ties go to the higher threshold (fewer false alarms at equal J). J is compared through its exact integer
    numerator tp·n₀ − fp·n₁, because tpr − fpr in floats breaks equal-J ties by round-off.
    """
    curve = OperatingCurve.from_scores(y_true, y_score)
    n1, n0 = max(curve.n_pos, 1), max(curve.n_neg, 1)
    tpr = curve.tp / n1
    j = (curve.tp * n0 - curve.fp * n1).astype(np.float64)  # J · n₁n₀, exact for any realistic n
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
    """Lowest threshold whose specificity still reaches `target` (so sensitivity is as high as it can be).

    If even the highest score is a negative that breaks the target, only a threshold above every score
    reaches it: the next float above the top score (nothing called positive, specificity 1).
    """
    curve = OperatingCurve.from_scores(y_true, y_score)
    spec = 1 - curve.fp / max(curve.n_neg, 1)
    ok = np.flatnonzero(spec >= target - 1e-12)
    return float(curve.thresholds[ok[-1]]) if ok.size else float(np.nextafter(curve.thresholds[0], np.inf))


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
    n1 = int(y.sum())
    if n1 == 0 or n1 == y.size:
        return float("nan"), float("nan"), float("nan")
    auc, v10, v01 = _delong_components(y, s)
    if v10.size < 2 or v01.size < 2:  # a variance from one case per class is undefined, not zero
        return auc, float("nan"), float("nan")
    var = np.var(v10, ddof=1) / v10.size + np.var(v01, ddof=1) / v01.size
    z = norm.ppf(1 - alpha / 2)
    half = z * np.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def delong_test(y_true, score_a, score_b) -> dict[str, float]:
    """Paired DeLong test for two models scored on the same cases: AUCs, difference and two-sided p."""
    from scipy.stats import norm

    y, a = _check(y_true, score_a)
    _, b = _check(y_true, score_b)
    n1 = int(y.sum())
    if min(n1, y.size - n1) < 2:
        auc_a, auc_b = roc_auc(y, a), roc_auc(y, b)
        return {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_a - auc_b, "p_value": float("nan")}
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


# --- curves, calibration, paired tests and operating tables -------------------------------------------------


def pr_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) read off `OperatingCurve` counts, in scikit-learn's layout.

    As `sklearn.metrics.precision_recall_curve` (drop_intermediate=False): thresholds are the distinct scores
    ascending; precision[i], recall[i] hold at `score >= thresholds[i]`; a final (precision 1, recall 0) point
    with no threshold closes the curve. One deliberate difference: with no positive cases recall is NaN
    (undefined), where scikit-learn warns and sets it to 1.
    """
    curve = OperatingCurve.from_scores(y_true, y_score)
    precision = _div(curve.tp, curve.tp + curve.fp)  # never NaN: every distinct score calls at least one case
    recall = curve.tp / curve.n_pos if curve.n_pos else np.full(curve.tp.shape, np.nan)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], curve.thresholds[::-1].copy()


def average_precision(y_true, y_score) -> float:
    """Step-function area under the PR curve, sum of (R_k − R_{k−1})·P_k; equals sklearn's average_precision_score.

    No interpolation (that would be optimistic). NaN without positive cases (scikit-learn returns 0 there).
    """
    curve = OperatingCurve.from_scores(y_true, y_score)
    if curve.n_pos == 0:
        return float("nan")
    gained = np.diff(curve.tp, prepend=0)  # positives newly recalled at each distinct score
    return float(np.sum(gained * (curve.tp / (curve.tp + curve.fp))) / curve.n_pos)


def calibration_curve(y_true, y_score, n_bins: int = 10, strategy: str = "uniform") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_predicted, fraction_positive, counts) over the non-empty bins, lowest bin first.

    Binning is scikit-learn's (`sklearn.calibration.calibration_curve`): "uniform" cuts [0, 1] into equal
    widths, "quantile" into equal counts; a score on an inner edge falls in the lower bin. scikit-learn returns
    (fraction_positive, mean_predicted) in the other order and no counts; the counts are what ECE and the
    app's "n per bin" need.
    """
    y, s = _check(y_true, y_score)
    _check_probabilities(s)
    if int(n_bins) < 1:
        raise ValueError("n_bins must be >= 1")
    n_bins = int(n_bins)
    if s.size == 0:
        empty = np.array([], dtype=np.float64)
        return empty, empty.copy(), np.array([], dtype=np.int64)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(s, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', not {strategy!r}")
    bin_id = np.searchsorted(edges[1:-1], s)
    counts = np.bincount(bin_id, minlength=n_bins)
    sums = np.bincount(bin_id, weights=s, minlength=n_bins)
    positives = np.bincount(bin_id, weights=y, minlength=n_bins)
    keep = counts > 0
    return sums[keep] / counts[keep], positives[keep] / counts[keep], counts[keep].astype(np.int64)


def expected_calibration_error(y_true, y_score, n_bins: int = 10, *, strategy: str = "uniform") -> float:
    """Σ_bins (n_bin / n) · |fraction positive − mean predicted|: the average gap a user would meet."""
    mean_pred, frac_pos, counts = calibration_curve(y_true, y_score, n_bins, strategy)
    if counts.sum() == 0:
        return float("nan")
    return float(np.sum(counts * np.abs(frac_pos - mean_pred)) / counts.sum())


def brier_score(y_true, y_score) -> float:
    """Mean squared error of the probability against the 0/1 outcome (lower is better; 0.25 = always saying 0.5)."""
    y, s = _check(y_true, y_score)
    _check_probabilities(s)
    return float(np.mean((s - y) ** 2)) if s.size else float("nan")


def log_loss(y_true, y_score, eps: float = 1e-8) -> float:
    """Mean negative log-likelihood of the outcomes; scores are clipped to [eps, 1 - eps] (stored scores have 8
    decimals, so an exact 0 or 1 is a rounding, not certainty)."""
    y, s = _check(y_true, y_score)
    _check_probabilities(s)
    s = np.clip(s, eps, 1 - eps)
    return float(-np.mean(y * np.log(s) + (1 - y) * np.log1p(-s))) if s.size else float("nan")


MCNEMAR_EXACT_BELOW = 25


def mcnemar_test(y_true, pred_a, pred_b) -> dict[str, float | int | str]:
    """McNemar's test on paired 0/1 decisions of two readers/models on the same cases.

    b = cases A gets right and B gets wrong, c = the reverse; concordant cases carry no information.
    With b + c < 25 the two-sided exact binomial test (statistic = min(b, c)); otherwise chi-square with
    Edwards' continuity correction, (max(|b − c| − 1, 0))² / (b + c) on 1 df (the max keeps b == c at p = 1).
    """
    from scipy.stats import binom, chi2

    y = _labels(y_true)
    a, b_ = _labels(pred_a, "pred_a"), _labels(pred_b, "pred_b")
    if not (y.shape == a.shape == b_.shape):
        raise ValueError(f"y_true, pred_a, pred_b have {y.size}, {a.size}, {b_.size} values")
    a_right, b_right = a == y, b_ == y
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    n = b + c
    if n < MCNEMAR_EXACT_BELOW:
        statistic = float(min(b, c))
        p = 1.0 if n == 0 else float(min(1.0, 2 * binom.cdf(min(b, c), n, 0.5)))
        method = "exact binomial"
    else:
        statistic = float(max(abs(b - c) - 1, 0) ** 2 / n)
        p = float(chi2.sf(statistic, 1))
        method = "chi-square with continuity correction"
    return {"b": b, "c": c, "statistic": statistic, "p_value": p, "method": method}


BOOTSTRAP_RATES = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "f1")


def bootstrap_rates_ci(y_true, y_score, threshold: float, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Stratified percentile-bootstrap CIs of the rates at a fixed threshold, with no loop at all.

    Resampling the n₁ positives with replacement and counting how many are called positive is exactly a
    Binomial(n₁, tp/n₁) draw (likewise false positives among the n₀ negatives), so all replicates' counts are
    drawn at once: O(n + n_boot) instead of O(n · n_boot), same distribution as resampling images. Replicates
    where a rate is undefined (e.g. nothing called positive for PPV) are dropped, as in `stratified_bootstrap_ci`.
    """
    y, s = _check(y_true, y_score)
    if np.isnan(threshold):
        raise ValueError("threshold is NaN")
    pred = s >= threshold
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    tp, fp = int(np.sum(pred & (y == 1))), int(np.sum(pred & (y == 0)))
    rng = np.random.default_rng(seed)
    tp_b = rng.binomial(n_pos, tp / n_pos if n_pos else 0.0, size=n_boot)
    fp_b = rng.binomial(n_neg, fp / n_neg if n_neg else 0.0, size=n_boot)
    r = _rates_arrays(tp_b, fp_b, n_pos - tp_b, n_neg - fp_b)
    out: dict[str, tuple[float, float]] = {}
    for name in BOOTSTRAP_RATES:
        v = r[name][np.isfinite(r[name])]
        out[name] = (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) if v.size else (float("nan"), float("nan"))
    return out


def predictive_values_at_prevalence(sensitivity, specificity, prevalence):
    """(PPV, NPV) by Bayes at a prevalence other than the test set's: what a positive/negative call means there.

    Accepts scalars (returns floats) or broadcastable arrays (returns arrays); NaN where undefined
    (e.g. PPV when nothing can be called positive).
    """
    se, sp, pr = (np.asarray(v, dtype=np.float64) for v in (sensitivity, specificity, prevalence))
    for name, v in (("sensitivity", se), ("specificity", sp), ("prevalence", pr)):
        if np.any((v < 0) | (v > 1)) or np.any(np.isnan(v)):
            raise ValueError(f"{name} must be in [0, 1]")
    true_pos, false_pos = se * pr, (1 - sp) * (1 - pr)
    true_neg, false_neg = sp * (1 - pr), (1 - se) * pr
    ppv, npv = _div(true_pos, true_pos + false_pos), _div(true_neg, true_neg + false_neg)
    if ppv.ndim == 0:
        return float(ppv), float(npv)
    return ppv, npv


def operating_table(curve: OperatingCurve, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Counts and rates at many thresholds at once (one searchsorted), for the app's threshold slider.

    Keys: threshold, tp, fp, fn, tn and the `rates` keys; arrays shaped like `thresholds`. Agrees with
    `curve.counts(t)` and `rates` at every t; O((n + k) log n) with no Python loop.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError("thresholds contain NaN")
    if curve.thresholds.size:
        k = np.searchsorted(-curve.thresholds, -t, side="right")  # distinct scores >= t
        called = k > 0
        last = np.maximum(k - 1, 0)
        tp = np.where(called, curve.tp[last], 0)
        fp = np.where(called, curve.fp[last], 0)
    else:
        tp = fp = np.zeros(t.shape, dtype=np.int64)
    fn, tn = curve.n_pos - tp, curve.n_neg - fp
    return {"threshold": t, "tp": tp, "fp": fp, "fn": fn, "tn": tn, **_rates_arrays(tp, fp, fn, tn)}
