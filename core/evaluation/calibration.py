"""Fitting the probability map on held-out predictions, and what it does to calibration (ECE, Brier).

Platt scaling on the logit, p = sigmoid(a * logit(raw) + b), by maximum likelihood (Newton's method on the two
parameters); temperature scaling is the one-parameter case (b = 0, a = 1/T). Fitted on predictions the model did not
train on: today each model's validation predictions, later its out-of-fold predictions (the `fitted_on` field says
which). The map itself is applied in one place, `core.inference.calibrate.apply_calibration`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from core.evaluation import metrics
from core.inference.calibrate import apply_calibration, check_calibration, logit

VALIDATION = "validation predictions"
OUT_OF_FOLD = "out-of-fold predictions"


class CalibrationError(ValueError):
    """No increasing map fits: on the held-out predictions the model ranks no better than chance (slope a <= 0)."""


def _nll(y: np.ndarray, eta: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels under sigmoid(eta), computed without overflow."""
    return float(np.mean(np.logaddexp(0.0, eta) - y * eta))


def _newton(x: np.ndarray, y: np.ndarray, start: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood logistic coefficients for design matrix x, by damped Newton steps."""
    w = start.astype(np.float64)
    loss = _nll(y, x @ w)
    for _ in range(max_iter):
        p = expit(x @ w)
        grad = x.T @ (p - y) / y.size
        hess = (x * (p * (1 - p))[:, None]).T @ x / y.size + 1e-12 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:
            cand = w - t * step
            new = _nll(y, x @ cand)
            if new <= loss + 1e-15:
                break
            t /= 2
        else:
            break
        w, done, loss = cand, float(np.max(np.abs(t * step))) < tol, new
        if done:
            return w
    return w


def _prepare(y_true, raw_scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.float64).ravel()
    s = np.asarray(raw_scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values, raw_scores {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 0/1")
    if y.min() == y.max():
        raise ValueError("calibration needs both classes in the held-out predictions")
    if not np.isfinite(s).all() or s.min() < 0 or s.max() > 1:
        raise ValueError("raw_scores must be probabilities in [0, 1]")
    return y, logit(s)


def fit_platt(y_true, raw_scores, fitted_on: str = VALIDATION) -> dict:
    """{"method": "platt", "a", "b", "fitted_on", "n"} maximising the likelihood of the labels."""
    y, z = _prepare(y_true, raw_scores)
    a, b = _newton(np.c_[z, np.ones_like(z)], y, np.array([1.0, 0.0]))
    if not a > 0:
        raise CalibrationError(f"Platt fit on {y.size} {fitted_on} gives slope a = {a:.4g} <= 0: the model does not rank "
                               "these cases better than chance, so no increasing calibration exists")
    cal = {"method": "platt", "a": float(a), "b": float(b), "fitted_on": fitted_on, "n": int(y.size)}
    check_calibration(cal)
    return cal


def fit_temperature(y_true, raw_scores, fitted_on: str = VALIDATION) -> dict:
    """Temperature scaling: {"method": "temperature", "a": 1/T, "b": 0.0, "temperature": T, ...}."""
    y, z = _prepare(y_true, raw_scores)
    (a,) = _newton(z[:, None], y, np.array([1.0]))
    if not a > 0:
        raise CalibrationError(f"temperature fit on {y.size} {fitted_on} gives a = {a:.4g} <= 0")
    cal = {"method": "temperature", "a": float(a), "b": 0.0, "temperature": float(1 / a) if a else float("inf"),
           "fitted_on": fitted_on, "n": int(y.size)}
    check_calibration(cal)
    return cal


MAPS = ("none", "temperature", "platt")  # simplest first: a tie keeps the simpler map
CHOSEN_BY = "the lowest cross-fitted out-of-fold log loss among none / temperature / platt"


def identity(y_true, raw_scores=None, fitted_on: str = VALIDATION) -> dict:
    """The map that shows the raw score, recorded like a fitted one (so the card says it was a choice)."""
    return {"method": "none", "a": 1.0, "b": 0.0, "fitted_on": fitted_on, "n": int(np.size(y_true))}


def choose_map(y_true, raw_scores, folds, fitted_on: str = OUT_OF_FOLD) -> tuple[dict, dict]:
    """(map, cross-fitted check): the map with the best held-out log loss, fitted on all the scores.

    Why: Platt always wins in-sample, yet a model whose raw scores are already calibrated can lose held-out log loss
    to it (malaria secondlook_long_folds: 0.1099 raw against 0.1121 Platt); the choice uses training data only."""
    check = cross_fitted(y_true, raw_scores, folds)
    fit = {"none": identity, "temperature": fit_temperature, "platt": fit_platt}[pick_map(check)]
    return {**fit(y_true, raw_scores, fitted_on), "chosen_by": CHOSEN_BY}, check


def pick_map(check: dict) -> str:
    """The map of a `cross_fitted` check with the lowest held-out log loss ("none": the raw scores'); ties: simpler."""
    return min(MAPS, key=lambda m: (check["raw" if m == "none" else m]["log_loss"], MAPS.index(m)))


def cross_fitted(y_true, raw_scores, folds, n_bins: int = 10) -> dict:
    """Each fold's scores mapped by Platt and by temperature fitted on the other folds: the maps' held-out effect.

    Why: the in-sample check of a map fitted on these very scores cannot show that it overfits or fails to carry
    from one group of patients to another; this one can (ECE, Brier and log loss of raw and of each map).
    """
    y = np.asarray(y_true).astype(np.float64).ravel()
    raw = np.asarray(raw_scores, dtype=np.float64).ravel()
    f = np.asarray(folds).ravel()
    if not y.size == raw.size == f.size:
        raise ValueError(f"y_true, raw_scores and folds differ in length ({y.size}, {raw.size}, {f.size})")
    keys = np.unique(f)
    if keys.size < 2:
        raise ValueError("cross-fitting needs at least two folds")
    mapped = {"platt": np.empty_like(raw), "temperature": np.empty_like(raw)}
    for k in keys:
        m = f == k
        for name, fit in (("platt", fit_platt), ("temperature", fit_temperature)):
            mapped[name][m] = apply_calibration(raw[m], fit(y[~m], raw[~m], OUT_OF_FOLD))

    def scored(p: np.ndarray) -> dict:
        return {"ece": metrics.expected_calibration_error(y, p, n_bins), "brier": metrics.brier_score(y, p),
                "log_loss": metrics.log_loss(y, p)}

    return {"n": int(y.size), "folds": int(keys.size), "ece_bins": n_bins, "raw": scored(raw),
            **{name: scored(p) for name, p in mapped.items()}}


def effect(y_true, raw_scores, calibration: dict, n_bins: int = 10) -> dict:
    """ECE (n_bins uniform bins) and Brier score of the raw and of the calibrated probabilities on one set."""
    y = np.asarray(y_true)
    raw = np.asarray(raw_scores, dtype=np.float64)
    cal = apply_calibration(raw, calibration)
    return {
        "n": int(y.size),
        "ece_raw": metrics.expected_calibration_error(y, raw, n_bins),
        "ece_calibrated": metrics.expected_calibration_error(y, cal, n_bins),
        "brier_raw": metrics.brier_score(y, raw),
        "brier_calibrated": metrics.brier_score(y, cal),
        "ece_bins": n_bins,
    }
