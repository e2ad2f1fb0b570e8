"""Calibration: the fit (Platt, temperature), the one map every surface uses, and the bundled cards' records."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from core.evaluation import calibration, metrics
from core.inference.calibrate import apply_calibration, logit
from core.registry import TASKS, get_model_spec
from core.models.selection import default_model
from core.models.store import bundled_models, read_card, read_predictions
from tests.conftest import approx_tree

ALL = [(t, m) for t in TASKS for m in bundled_models(t)]


def _miscalibrated(n: int = 20000, a: float = 0.5, b: float = -0.7, seed: int = 0):
    """Raw scores whose true probability is sigmoid(a * logit(raw) + b)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, n)
    raw = np.round(expit(z), 8)
    y = (rng.random(n) < expit(a * logit(raw) + b)).astype(int)
    return y, raw


def test_platt_recovers_the_generating_map():
    y, raw = _miscalibrated()
    cal = calibration.fit_platt(y, raw)
    assert cal["method"] == "platt" and cal["fitted_on"] == "validation predictions" and cal["n"] == y.size
    assert cal["a"] == pytest.approx(0.5, abs=0.03) and cal["b"] == pytest.approx(-0.7, abs=0.05)


def test_platt_is_the_maximum_likelihood_logistic_fit():
    from sklearn.linear_model import LogisticRegression

    y, raw = _miscalibrated(3000, seed=2)
    cal = calibration.fit_platt(y, raw)
    ref = LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(logit(raw)[:, None], y)
    assert cal["a"] == pytest.approx(ref.coef_[0, 0], abs=1e-4) and cal["b"] == pytest.approx(ref.intercept_[0], abs=1e-4)


def test_temperature_is_the_best_single_slope():
    y, raw = _miscalibrated(3000, b=0.0, seed=3)
    cal = calibration.fit_temperature(y, raw)
    assert cal["b"] == 0.0 and cal["temperature"] == pytest.approx(1 / cal["a"])
    z = logit(raw)
    grid = np.linspace(0.2, 1.5, 2601)
    nll = [np.mean(np.logaddexp(0, g * z) - y * g * z) for g in grid]
    assert cal["a"] == pytest.approx(grid[int(np.argmin(nll))], abs=1e-3)


def test_calibration_lowers_ece_and_brier_on_held_out_data():
    y, raw = _miscalibrated(seed=4)
    cal = calibration.fit_platt(y[:10000], raw[:10000])
    e = calibration.effect(y[10000:], raw[10000:], cal)
    assert e["ece_calibrated"] < 0.5 * e["ece_raw"] and e["brier_calibrated"] < e["brier_raw"]


def test_cross_fitting_maps_each_fold_with_the_other_folds_fit():
    y, raw = _miscalibrated(6000, a=0.6, b=0.5, seed=7)
    folds = np.arange(y.size) % 3
    got = calibration.cross_fitted(y, raw, folds)
    assert got["n"] == y.size and got["folds"] == 3 and set(got) >= {"raw", "platt", "temperature"}
    mapped = np.empty_like(raw)
    for k in range(3):
        m = folds == k
        mapped[m] = apply_calibration(raw[m], calibration.fit_platt(y[~m], raw[~m]))
    assert got["platt"]["ece"] == pytest.approx(metrics.expected_calibration_error(y, mapped), abs=1e-12)
    assert got["platt"]["log_loss"] == pytest.approx(metrics.log_loss(y, mapped), abs=1e-12)
    assert got["platt"]["ece"] < 0.5 * got["raw"]["ece"] and got["platt"]["log_loss"] < got["raw"]["log_loss"]
    assert got["temperature"]["log_loss"] > got["platt"]["log_loss"]  # b = 0.5 is beyond a slope's reach
    with pytest.raises(ValueError, match="two folds"):
        calibration.cross_fitted(y, raw, np.zeros(y.size))


def test_log_loss_is_the_mean_negative_log_likelihood():
    assert metrics.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, abs=1e-12)
    assert np.isfinite(metrics.log_loss([1, 0], [0.0, 1.0]))  # clipped: a stored 0 is a rounding


@pytest.mark.parametrize("rule", ["youden", "youden_min_sensitivity_0.95", "sensitivity_0.97", "specificity_0.95"])
def test_the_threshold_moves_with_the_map_and_the_counts_stay(rule):
    y, raw = _miscalibrated(4000, a=1.3, b=0.4, seed=5)
    cal = calibration.fit_platt(y, raw)
    shown = apply_calibration(raw, cal)
    t_raw, t_cal = metrics.choose_threshold(rule, y, raw), metrics.choose_threshold(rule, y, shown)
    assert metrics.confusion_at(y, raw, t_raw) == metrics.confusion_at(y, shown, t_cal)
    assert t_cal == pytest.approx(apply_calibration(t_raw, cal), abs=1e-8)
    assert metrics.roc_auc(y, shown) == pytest.approx(metrics.roc_auc(y, raw), abs=1e-6)


def test_the_map_is_strictly_increasing_even_at_the_stored_extremes():
    raw = np.array([0.0, 1e-8, 2e-8, 0.3, 0.5, 0.99999998, 0.99999999, 1.0])
    out = apply_calibration(raw, {"method": "platt", "a": 0.8, "b": 0.1})
    assert np.all(np.diff(out) > 0) and np.isfinite(out).all()
    assert apply_calibration(0.25, None) == 0.25 and isinstance(apply_calibration(0.25, {"method": "platt", "a": 1.0, "b": 0.0}), float)
    assert apply_calibration(0.25, {"method": "platt", "a": 1.0, "b": 0.0}) == 0.25


def test_the_map_is_chosen_by_held_out_log_loss():
    loss = lambda r, t, p: {"raw": {"log_loss": r}, "temperature": {"log_loss": t}, "platt": {"log_loss": p}}  # noqa: E731
    assert calibration.pick_map(loss(0.1099, 0.1108, 0.1121)) == "none"  # malaria long_folds' check, as recorded
    assert calibration.pick_map(loss(0.176, 0.179, 0.079)) == "platt"
    assert calibration.pick_map(loss(0.2, 0.1, 0.1)) == "temperature"  # a tie keeps the simpler map
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 6000)
    calibrated = expit(rng.normal(0, 1.5, y.size) + np.where(y == 1, 1.5, -1.5))
    honest = (rng.random(y.size) < calibrated).astype(int)  # labels drawn from the scores
    folds = np.arange(y.size) % 3
    shifted = expit(calibration.logit(calibrated) - 1.0)  # the same ranking, too low: only a bias fixes it
    cal, check = calibration.choose_map(honest, shifted, folds)
    assert cal["method"] == "platt" and cal["b"] == pytest.approx(1.0, abs=0.15) and cal["chosen_by"] == calibration.CHOSEN_BY
    assert check == calibration.cross_fitted(honest, shifted, folds)
    none = calibration.identity(honest, fitted_on=calibration.OUT_OF_FOLD)
    assert (none["a"], none["b"], none["n"]) == (1.0, 0.0, y.size) and (apply_calibration(shifted, none) == shifted).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="identity"):
        apply_calibration([0.5], {"method": "none", "a": 1.1, "b": 0.0})
    with pytest.raises(ValueError, match="a > 0"):
        apply_calibration([0.5], {"method": "platt", "a": -1.0, "b": 0.0})
    with pytest.raises(ValueError, match="unknown calibration method"):
        apply_calibration([0.5], {"method": "isotonic", "a": 1.0, "b": 0.0})
    with pytest.raises(ValueError, match="both classes"):
        calibration.fit_platt([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration.fit_platt([0, 1], [0.2, 1.5])
    y, raw = _miscalibrated(2000, seed=6)
    with pytest.raises(calibration.CalibrationError, match="better than chance"):
        calibration.fit_platt(y, 1 - raw)  # a model that ranks backwards has no increasing map


def test_scoring_probability_applies_the_given_calibration():
    from core.inference import scoring
    from core.inference.forward import predict_tensors
    from core.inference.preprocess import prepare
    from core.registry import get_model_spec
    from tests.modelgen import tiny_model

    spec = get_model_spec("malaria", "secondlook_cnn")
    model = tiny_model((64, 64, 3))
    pixels = np.random.default_rng(0).integers(0, 255, (80, 70, 3), dtype=np.uint8)
    raw = float(predict_tensors(model, prepare(pixels, spec.input)[None])[0])
    cal = {"method": "platt", "a": 2.0, "b": -1.0}
    assert scoring.probability(model, spec, pixels) == raw
    assert scoring.probability(model, spec, pixels, cal) == apply_calibration(raw, cal) != raw


@pytest.mark.parametrize("task,model_id", ALL)
def test_every_card_is_calibrated_in_the_shared_shape(task, model_id):
    card = read_card(task, model_id)
    cal = card["calibration"]
    folds = bool(get_model_spec(task, model_id).fold_ensemble_of)
    assert set(cal) == {"method", "a", "b", "fitted_on", "n"} | ({"chosen_by"} if folds else set()) and cal["a"] > 0
    assert cal["method"] in (calibration.MAPS if folds else ("platt",))  # a fold ensemble's is chosen by cross-fitting
    fitted_on = "out-of-fold predictions" if folds else "validation predictions"
    assert cal["fitted_on"] == fitted_on and cal["n"] == card["data"]["n_val"]
    test = card["calibration_check"]["test"]
    assert test["n"] == card["test"]["n"]
    shown = read_predictions(task, model_id, "test")
    assert test["ece_calibrated"] == pytest.approx(metrics.expected_calibration_error(shown["y"], shown["score"]), abs=1e-9)
    assert test["brier_calibrated"] == pytest.approx(metrics.brier_score(shown["y"], shown["score"]), abs=1e-9)


FOLD_ENSEMBLES = [(t, m) for t, m in ALL if get_model_spec(t, m).fold_ensemble_of]


@pytest.mark.parametrize("task,model_id", FOLD_ENSEMBLES)
def test_a_fold_ensembles_map_helps_on_folds_it_was_not_fitted_on(task, model_id):
    """The shipped map is chosen on training data only: fitted on two folds' out-of-fold scores, it must lower the
    third fold's log loss; the card's block is re-derived from the stored scores."""
    from core.training.cv import pooled_oof
    from core.training.fold_ensemble import CROSS_FITTED

    card = read_card(task, model_id)
    oof = pooled_oof(task, get_model_spec(task, model_id).fold_ensemble_of)
    again = calibration.cross_fitted(oof["y"], oof["raw"], oof["fold"])
    stored = card["calibration_check"][CROSS_FITTED]
    assert stored == approx_tree(again)
    method = card["calibration"]["method"]
    loss = {m: stored["raw" if m == "none" else m]["log_loss"] for m in calibration.MAPS}
    assert loss[method] == min(loss.values())  # the shipped map is the one that did best held out (none: raw did)


ECE_FLOOR = 0.08  # issue 15: test ECE (10 bins) of each task's default model, calibrated
KNOWN_ECE_MISSES = {
    "pneumonia": "calibrated test ECE 0.168 (raw 0.032) for secondlook_cnn_folds. The map is kept on training-side "
                 "evidence: cross-fitted on the out-of-fold scores, Platt lowers ECE 0.095 -> 0.007 and log loss 0.176 "
                 "-> 0.079 (temperature 0.090 / 0.179); it undoes label smoothing (a = 1.73) and the class weights "
                 "(b = 3.89 restores train's 74% pneumonia). Test has 62.5% pneumonia and another acquisition, so the "
                 "map does not carry to it; a site recalibrates on its own cases (site profile)",
}


def _ece_cases():
    for task in sorted(TASKS):
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=KNOWN_ECE_MISSES[task])] if task in KNOWN_ECE_MISSES else []
        yield pytest.param(task, marks=marks, id=task)


@pytest.mark.parametrize("task", list(_ece_cases()))
def test_default_model_is_calibrated_on_test(task):
    check = read_card(task, default_model(task))["calibration_check"]["test"]
    assert check["ece_calibrated"] <= ECE_FLOOR, f"{task}: test ECE {check['ece_calibrated']:.3f} > {ECE_FLOOR}"
