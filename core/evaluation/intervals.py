"""Confidence intervals that resample patients, not images: a stratified cluster bootstrap.

Cells (or X-rays) of one patient are alike, so intervals that treat every image as independent are too narrow when
patients repeat (malaria: 1,865 test cells from 14 patients). Here each bootstrap replicate draws *patients* with
replacement, separately among patients with the finding (any positive image) and patients without it, and every
image of a drawn patient comes along. With one image per patient this is exactly the ordinary stratified bootstrap.

Vectorised: a replicate is a vector of per-patient draw counts (multinomial per stratum), so rates are one matrix
product over per-patient confusion counts, ECE/Brier one product over per-patient bin sums, and AUC a weighted
Mann-Whitney sum over score blocks (ties count half), all replicates at once in chunks. Pure functions: arrays in,
numbers out, seeded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
SEED = 0
ALPHA = 0.05
ECE_BINS = 10
_CHUNK = 256  # replicates per AUC block: keeps the (chunk x images) weight matrix at a few MB

RATES = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "f1")
METRICS = ("auc", *RATES, "ece", "brier")


@dataclass(frozen=True)
class Clusters:
    """Images grouped into patients: `index[i]` is image i's patient (0..n_groups-1); `has_finding[g]` its stratum."""

    index: np.ndarray
    has_finding: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.has_finding.size)


def _inputs(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 0/1")
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values, y_score {s.size}")
    if not np.isfinite(s).all():
        raise ValueError("y_score contains non-finite values")
    return y.astype(np.int8), s


def clusters(groups, y_true) -> Clusters:
    """Patient index per image from any group labels (ids, strings); `groups=None` makes every image its own patient."""
    y = np.asarray(y_true).astype(np.int8).ravel()
    if groups is None:
        return Clusters(np.arange(y.size), y.astype(bool))
    g = np.asarray(groups).ravel()
    if g.size != y.size:
        raise ValueError(f"groups has {g.size} values, y_true {y.size}")
    if g.dtype == object and any(v is None or v != v for v in g):  # None / NaN: a patient we cannot place
        raise ValueError("groups contains missing values")
    _, index = np.unique(g.astype(str), return_inverse=True)
    has = np.zeros(index.max() + 1 if index.size else 0, dtype=bool)
    np.logical_or.at(has, index, y == 1)
    return Clusters(index.astype(np.int64), has)


def draw_weights(cl: Clusters, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """(n_boot, n_groups) draw counts: each stratum's patients resampled with replacement, its size kept."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, cl.n_groups), dtype=np.float64)
    for stratum in (True, False):
        members = np.flatnonzero(cl.has_finding == stratum)
        m = members.size
        if m:
            picks = rng.integers(0, m, size=(n_boot, m)) + m * np.arange(n_boot)[:, None]  # m draws per replicate
            w[:, members] = np.bincount(picks.ravel(), minlength=n_boot * m).reshape(n_boot, m)
    return w


def _per_group(cl: Clusters, values: np.ndarray) -> np.ndarray:
    return np.bincount(cl.index, weights=values.astype(np.float64), minlength=cl.n_groups)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b != 0)


def rate_replicates(y: np.ndarray, s: np.ndarray, cl: Clusters, w: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Confusion counts and rates at `threshold` in every replicate (NaN where a rate is undefined)."""
    if np.isnan(threshold):
        raise ValueError("threshold is NaN")
    called = s >= threshold
    tp = w @ _per_group(cl, called & (y == 1))
    fp = w @ _per_group(cl, called & (y == 0))
    fn = w @ _per_group(cl, ~called & (y == 1))
    tn = w @ _per_group(cl, ~called & (y == 0))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "sensitivity": _div(tp, tp + fn), "specificity": _div(tn, tn + fp), "ppv": _div(tp, tp + fp),
            "npv": _div(tn, tn + fn), "accuracy": _div(tp + tn, tp + fp + fn + tn), "f1": _div(2 * tp, 2 * tp + fp + fn)}


def calibration_replicates(y: np.ndarray, s: np.ndarray, cl: Clusters, w: np.ndarray,
                           n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """ECE (uniform bins, as `metrics.expected_calibration_error`) and Brier score in every replicate."""
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ValueError("y_score must be probabilities in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_id = np.searchsorted(edges[1:-1], s)  # same binning as metrics.calibration_curve
    cell = cl.index * n_bins + bin_id
    size = cl.n_groups * n_bins

    def table(v):
        return np.bincount(cell, weights=v, minlength=size).reshape(cl.n_groups, n_bins)

    n_b = w @ table(np.ones_like(s))
    gap = np.abs(w @ table(y.astype(np.float64)) - w @ table(s)).sum(axis=1)
    n = n_b.sum(axis=1)
    sq = w @ _per_group(cl, (s - y) ** 2)
    return {"ece": _div(gap, n), "brier": _div(sq, n)}


class _AucBlocks:
    """Scores sorted once into blocks of equal score, so a replicate's AUC is a weighted sum over blocks.

    Up to a few hundred patients: the Mann-Whitney numerator is a quadratic form in the patient draw counts,
    w' Q w with Q[g, h] = sum over score blocks of (positives of g in the block) x (negatives of h below it, ties
    half), so Q is built once and every replicate costs O(patients^2). More patients (e.g. one image each): each
    image takes its patient's draw count directly (gather, then sums per block), O(images) per replicate.
    """

    QUADRATIC_MAX_GROUPS = 512

    def __init__(self, y: np.ndarray, s: np.ndarray, cl: Clusters) -> None:
        order = np.argsort(s, kind="mergesort")
        ss = s[order]
        self.starts = np.r_[0, np.flatnonzero(np.diff(ss)) + 1] if ss.size else np.array([], int)
        self.group = cl.index[order]
        self.pos = (y[order] == 1).astype(np.float64)
        self.pos_g = np.bincount(cl.index, weights=(y == 1).astype(np.float64), minlength=cl.n_groups)
        self.neg_g = np.bincount(cl.index, weights=(y == 0).astype(np.float64), minlength=cl.n_groups)
        self.q = None
        if cl.n_groups <= self.QUADRATIC_MAX_GROUPS and ss.size:
            block = np.cumsum(np.isin(np.arange(ss.size), self.starts)) - 1
            shape = (cl.n_groups, self.starts.size)
            cpos, cneg = np.zeros(shape), np.zeros(shape)
            np.add.at(cpos, (self.group, block), self.pos)
            np.add.at(cneg, (self.group, block), 1 - self.pos)
            credit = np.cumsum(cneg, axis=1) - 0.5 * cneg  # negatives strictly below each block + half the ties
            self.q = cpos @ credit.T

    def aucs(self, w: np.ndarray) -> np.ndarray:
        if not self.starts.size:
            return np.full(len(w), np.nan)
        den = (w @ self.pos_g) * (w @ self.neg_g)
        if self.q is not None:
            return _div(np.einsum("bg,bg->b", w @ self.q, w), den)
        num = np.empty(len(w))
        for i in range(0, len(w), _CHUNK):
            wi = w[i : i + _CHUNK][:, self.group]  # (chunk, images) in score order
            pos = np.add.reduceat(wi * self.pos, self.starts, axis=1)
            neg = np.add.reduceat(wi * (1 - self.pos), self.starts, axis=1)
            num[i : i + _CHUNK] = np.einsum("bk,bk->b", pos, np.cumsum(neg, axis=1) - 0.5 * neg)
        return _div(num, den)


def auc_replicates(y: np.ndarray, s: np.ndarray, cl: Clusters, w: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties half) of every replicate, each image weighted by its patient's draw count."""
    return _AucBlocks(y, s, cl).aucs(w)


def model_auc_replicates(y_true, scores: dict[str, np.ndarray], groups, *, n_boot: int = N_BOOT,
                         seed: int = SEED) -> dict[str, np.ndarray]:
    """AUC replicates of several models on the same images and the SAME patient draws: any pair's difference is
    then the paired cluster bootstrap (`paired_from_replicates`), without resampling again per pair."""
    y = _inputs(y_true, np.zeros(np.asarray(y_true).size))[0]
    cl = clusters(groups, y)
    w = draw_weights(cl, n_boot, seed)
    return {m: auc_replicates(y, _inputs(y, s)[1], cl, w) for m, s in scores.items()}


def paired_from_replicates(observed_difference: float, rep_a: np.ndarray, rep_b: np.ndarray,
                           alpha: float = ALPHA) -> dict[str, float]:
    """CI and two-sided p of AUC(A) - AUC(B) from two models' replicates on the same draws.

    p: twice the smaller share of replicates on either side of 0, with the +1 correction (never 0 from a finite
    number of resamples), capped at 1.
    """
    d = rep_a - rep_b
    d = d[np.isfinite(d)]
    p = min(1.0, 2 * min((1 + np.sum(d <= 0)) / (d.size + 1), (1 + np.sum(d >= 0)) / (d.size + 1))) if d.size else float("nan")
    return {"difference": float(observed_difference), "ci": percentile_ci(d, alpha), "p_value": float(p)}


def percentile_ci(values: np.ndarray, alpha: float = ALPHA) -> list[float]:
    """Percentile interval over the finite replicates (a replicate where a rate is undefined is dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return [float("nan"), float("nan")]
    return [float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))]


def method_text(unit: str | None, n_boot: int = N_BOOT) -> str:
    """How an interval was made, for cards and captions."""
    if unit is None:
        return f"image-level (no patient ids): stratified bootstrap over images, {n_boot} resamples, percentile 95% CI"
    return (f"patient-level: cluster bootstrap over {unit}, stratified by whether the patient has the finding, "
            f"{n_boot} resamples, percentile 95% CI")


def patient_level_summary(y_true, y_score, groups, threshold: float, *, unit: str | None = "patient_id",
                          n_boot: int = N_BOOT, seed: int = SEED, alpha: float = ALPHA) -> dict:
    """Every card metric at `threshold` with its cluster-bootstrap CI, and how many patients it rests on.

    `groups=None` (no patient ids) gives the image-level bootstrap, and says so in `method`.
    """
    from core.evaluation import metrics

    y, s = _inputs(y_true, y_score)
    cl = clusters(groups, y)
    w = draw_weights(cl, n_boot, seed)
    reps = {"auc": auc_replicates(y, s, cl, w), **rate_replicates(y, s, cl, w, threshold),
            **calibration_replicates(y, s, cl, w)}
    point = metrics.metrics_at(y, s, threshold)
    point["auc"] = metrics.roc_auc(y, s)
    point["ece"] = metrics.expected_calibration_error(y, s, ECE_BINS)
    point["brier"] = metrics.brier_score(y, s)
    out: dict = {
        "method": method_text(unit if groups is not None else None, n_boot),
        "unit": unit if groups is not None else "image",
        "n_images": int(y.size),
        "n_patients": cl.n_groups,
        "n_patients_with_finding": int(cl.has_finding.sum()),
        "threshold": float(threshold),
        "n_boot": int(n_boot),
        "seed": int(seed),
    }
    for k in METRICS:
        out[k] = float(point[k])
        out[f"{k}_ci"] = percentile_ci(reps[k], alpha)
    return out


def paired_auc_difference(y_true, score_a, score_b, groups, *, n_boot: int = N_BOOT, seed: int = SEED,
                          alpha: float = ALPHA) -> dict[str, float]:
    """AUC(A) - AUC(B) on the same images: the same patient draws for both models, so the pairing is kept."""
    from core.evaluation import metrics

    y, a = _inputs(y_true, score_a)
    _, b = _inputs(y_true, score_b)
    reps = model_auc_replicates(y, {"a": a, "b": b}, groups, n_boot=n_boot, seed=seed)
    auc_a, auc_b = metrics.roc_auc(y, a), metrics.roc_auc(y, b)
    return {"auc_a": auc_a, "auc_b": auc_b, **paired_from_replicates(auc_a - auc_b, reps["a"], reps["b"], alpha),
            "n_patients": clusters(groups, y).n_groups, "n_boot": int(n_boot)}


def auc_ci(y_true, y_score, groups, *, n_boot: int = N_BOOT, seed: int = SEED, alpha: float = ALPHA) -> tuple[float, float, float]:
    """(AUC, low, high) by the cluster bootstrap; with `groups=None` image-level."""
    from core.evaluation import metrics

    y, s = _inputs(y_true, y_score)
    cl = clusters(groups, y)
    lo, hi = percentile_ci(auc_replicates(y, s, cl, draw_weights(cl, n_boot, seed)), alpha)
    return metrics.roc_auc(y, s), lo, hi


def rate_cis(y_true, y_score, groups, threshold: float, *, n_boot: int = N_BOOT, seed: int = SEED,
             alpha: float = ALPHA) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """CIs of the rates at a threshold, plus the replicates' counts (for derived quantities such as PPV at another
    prevalence). Cheap: no sorting, one matrix product per count."""
    y, s = _inputs(y_true, y_score)
    cl = clusters(groups, y)
    reps = rate_replicates(y, s, cl, draw_weights(cl, n_boot, seed), threshold)
    return {k: percentile_ci(reps[k], alpha) for k in RATES}, reps


def calibration_cis(y_true, y_score, groups, *, n_boot: int = N_BOOT, seed: int = SEED,
                    alpha: float = ALPHA) -> dict[str, tuple[float, list[float]]]:
    """{"ece": (value, [low, high]), "brier": ...}: ECE (10 uniform bins) and Brier with cluster-bootstrap CIs."""
    from core.evaluation import metrics

    y, s = _inputs(y_true, y_score)
    cl = clusters(groups, y)
    reps = calibration_replicates(y, s, cl, draw_weights(cl, n_boot, seed))
    return {"ece": (metrics.expected_calibration_error(y, s, ECE_BINS), percentile_ci(reps["ece"], alpha)),
            "brier": (metrics.brier_score(y, s), percentile_ci(reps["brier"], alpha))}
