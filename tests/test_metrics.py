"""core.evaluation.metrics against scikit-learn/scipy references, hand-worked cases and direct O(n²) formulas.

Pure-array tests: no dataset, no model, no training. Property tests use small inputs and few examples
so the suite stays light on a shared machine.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, chi2, norm
from sklearn import calibration as skcal
from sklearn import metrics as skm

from core.evaluation import metrics as M

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled_scores(draw, min_size: int = 2, max_size: int = 40, both_classes: bool = True, tied: bool | None = None):
    """(y, s) with both classes present; `tied` scores come from a coarse grid, so ties are common."""
    n = draw(st.integers(min_size, max_size))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=int)
    if both_classes and (y.min() == y.max()):
        y[0] = 1 - y[0]
    tied = draw(st.booleans()) if tied is None else tied
    if tied:
        s = np.array(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))) / 20.0
    else:
        s = np.array(draw(st.lists(st.floats(0, 1, allow_nan=False, width=64), min_size=n, max_size=n)))
    return y, s


def probe_thresholds(s: np.ndarray) -> np.ndarray:
    """Every score, midpoints between distinct scores, above the max, below the min and the infinities."""
    u = np.unique(s)
    return np.r_[u, (u[1:] + u[:-1]) / 2, u[-1] + 0.5, u[0] - 0.5, np.nextafter(u, np.inf), np.nextafter(u, -np.inf), np.inf, -np.inf]


def sk_counts(y: np.ndarray, s: np.ndarray, t: float) -> dict[str, int]:
    tn, fp, fn, tp = skm.confusion_matrix(y, (s >= t).astype(int), labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


# --- a six-case example worked by hand -------------------------------------------------------------------------
# positives score 0.9, 0.7, 0.5; negatives 0.7, 0.3, 0.1 (one positive/negative tie at 0.7)
Y6 = np.array([1, 1, 0, 1, 0, 0])
S6 = np.array([0.9, 0.7, 0.7, 0.5, 0.3, 0.1])
# distinct thresholds (desc) and (tp, fp) there: 0.9 (1,0)  0.7 (2,1)  0.5 (3,1)  0.3 (3,2)  0.1 (3,3)
# Youden J = tpr − fpr:                           1/3        1/3        2/3        1/3        0


def test_hand_confusion_and_rates():
    assert M.confusion_at(Y6, S6, 0.6) == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    m = M.metrics_at(Y6, S6, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 0, 2)
    assert m["sensitivity"] == pytest.approx(1.0)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(3 / 4)
    assert m["npv"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(6 / 7)
    assert m["balanced_accuracy"] == pytest.approx(5 / 6)
    # threshold exactly at a tied score calls both tied cases positive
    assert M.confusion_at(Y6, S6, 0.7) == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert M.confusion_at(Y6, S6, np.nextafter(0.7, 1)) == {"tp": 1, "fp": 0, "fn": 2, "tn": 3}


def test_hand_auc_and_thresholds():
    # pairs won: 0.9 beats 3; 0.7 ties one (½) and beats 2; 0.5 beats 2 -> 7.5 / 9
    assert M.roc_auc(Y6, S6) == pytest.approx(7.5 / 9)
    assert M.youden_threshold(Y6, S6) == 0.5
    assert M.threshold_for_sensitivity(Y6, S6, 1 / 3) == 0.9
    assert M.threshold_for_sensitivity(Y6, S6, 0.5) == 0.7
    assert M.threshold_for_sensitivity(Y6, S6, 2 / 3) == 0.7  # exactly reachable, despite float round-off
    assert M.threshold_for_sensitivity(Y6, S6, 1.0) == 0.5
    assert M.threshold_for_specificity(Y6, S6, 1.0) == 0.9
    assert M.threshold_for_specificity(Y6, S6, 2 / 3) == 0.5  # 0.7 and 0.5 both give 2/3: the lower one
    assert M.threshold_for_specificity(Y6, S6, 0.3) == 0.3
    assert M.choose_threshold("sensitivity_1.0", Y6, S6) == 0.5
    assert M.choose_threshold("specificity_1.0", Y6, S6) == 0.9
    assert M.choose_threshold("youden", Y6, S6) == 0.5


def test_youden_ties_go_to_higher_threshold_and_floor():
    y = np.array([1, 0, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.4, 0.4, 0.1])
    # J at 0.9, 0.7 and 0.4 is 1/3 each; 0.8 and 0.1 give 0
    assert M.youden_threshold(y, s) == 0.9
    assert M.youden_threshold(y, s, min_sensitivity=0.6) == 0.7
    assert M.youden_threshold(y, s, min_sensitivity=0.9) == 0.4
    assert M.choose_threshold("youden_min_sensitivity_0.9", y, s) == 0.4


def test_threshold_for_specificity_above_top_negative():
    # the highest score is a negative: only a threshold above it reaches specificity 1
    y, s = np.array([0, 1, 0]), np.array([0.9, 0.5, 0.2])
    t = M.threshold_for_specificity(y, s, 1.0)
    assert t > 0.9
    assert M.confusion_at(y, s, t)["fp"] == 0
    assert M.confusion_at(y, s, np.nextafter(t, -np.inf))["fp"] == 1  # and it is the lowest such threshold


def test_hand_pr_curve_and_average_precision():
    precision, recall, thr = M.pr_curve(Y6, S6)
    np.testing.assert_allclose(thr, [0.1, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(precision, [3 / 6, 3 / 5, 3 / 4, 2 / 3, 1, 1])
    np.testing.assert_allclose(recall, [1, 1, 1, 2 / 3, 1 / 3, 0])
    # recall steps of 1/3 at 0.9 (P=1), 0.7 (P=2/3), 0.5 (P=3/4)
    assert M.average_precision(Y6, S6) == pytest.approx(1 / 3 + 2 / 9 + 1 / 4)


# --- OperatingCurve and operating_table ------------------------------------------------------------------------


@PROPERTY
@given(labelled_scores(min_size=1, both_classes=False))
def test_curve_counts_match_confusion_at_everywhere(ys):
    y, s = ys
    curve = M.OperatingCurve.from_scores(y, s)
    for t in probe_thresholds(s):
        c = curve.counts(t)
        assert c == M.confusion_at(y, s, t), t
        assert c == sk_counts(y, s, t), t


@PROPERTY
@given(labelled_scores(min_size=1, both_classes=False))
def test_operating_table_matches_counts_and_rates(ys):
    y, s = ys
    curve = M.OperatingCurve.from_scores(y, s)
    ts = probe_thresholds(s)
    table = M.operating_table(curve, ts)
    assert table["tp"].shape == ts.shape
    for i, t in enumerate(ts):
        c = curve.counts(t)
        assert {k: int(table[k][i]) for k in ("tp", "fp", "fn", "tn")} == c
        for name, value in M.rates(c).items():
            np.testing.assert_equal(table[name][i], value)  # NaN where rates() says NaN


def test_operating_table_shapes_empty_and_nan():
    curve = M.OperatingCurve.from_scores(Y6, S6)
    grid = np.array([[0.0, 0.5], [0.8, 1.0]])
    table = M.operating_table(curve, grid)
    assert table["sensitivity"].shape == (2, 2)
    np.testing.assert_array_equal(table["tp"], [[3, 3], [1, 0]])
    empty = M.operating_table(M.OperatingCurve.from_scores([], []), np.array([0.5]))
    assert (empty["tp"][0], empty["tn"][0]) == (0, 0) and np.isnan(empty["sensitivity"][0])
    with pytest.raises(ValueError):
        M.operating_table(curve, np.array([0.5, np.nan]))
    with pytest.raises(ValueError):
        curve.counts(float("nan"))


def test_operating_table_matches_direct_count_for_100k_scores():
    """Speed is measured in benchmarks/, not here."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 100_000)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    curve = M.OperatingCurve.from_scores(y, s)
    ts = np.linspace(0, 1, 201)
    table = M.operating_table(curve, ts)
    for i in (0, 77, 200):
        assert int(table["fp"][i]) == int(np.sum((s >= ts[i]) & (y == 0)))
    assert int(M.operating_table(curve, np.array([0.5]))["tp"][0]) == int(np.sum((s >= 0.5) & (y == 1)))


# --- agreement with scikit-learn ---------------------------------------------------------------------------------


@PROPERTY
@given(labelled_scores())
def test_roc_and_auc_match_sklearn(ys):
    y, s = ys
    fpr, tpr, thr = M.OperatingCurve.from_scores(y, s).roc()
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thr, sk_thr)
    ref = skm.roc_auc_score(y, s)
    assert M.roc_auc(y, s) == pytest.approx(ref, abs=1e-12)
    assert M.delong_auc_ci(y, s)[0] == pytest.approx(ref, abs=1e-12)


@PROPERTY
@given(labelled_scores())
def test_pr_curve_and_ap_match_sklearn(ys):
    y, s = ys
    precision, recall, thr = M.pr_curve(y, s)
    sk_p, sk_r, sk_t = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(precision, sk_p, rtol=1e-12)
    np.testing.assert_allclose(recall, sk_r, rtol=1e-12)
    np.testing.assert_array_equal(thr, sk_t)
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_pr_and_ap_without_positives_are_undefined():
    y, s = np.zeros(4, int), np.array([0.1, 0.4, 0.4, 0.8])
    precision, recall, thr = M.pr_curve(y, s)
    np.testing.assert_array_equal(precision, [0, 0, 0, 1])
    assert np.isnan(recall[:-1]).all() and recall[-1] == 0
    assert np.isnan(M.average_precision(y, s))


@PROPERTY
@given(labelled_scores(min_size=1, both_classes=False), st.integers(1, 12), st.sampled_from(["uniform", "quantile"]))
def test_calibration_curve_matches_sklearn(ys, n_bins, strategy):
    y, s = ys  # tied scores sit on a 1/20 grid, so many land exactly on bin edges
    mean_pred, frac_pos, counts = M.calibration_curve(y, s, n_bins, strategy)
    sk_true, sk_pred = skcal.calibration_curve(y, s, n_bins=n_bins, strategy=strategy)
    np.testing.assert_allclose(mean_pred, sk_pred, rtol=1e-12)
    np.testing.assert_allclose(frac_pos, sk_true, rtol=1e-12)
    assert counts.sum() == y.size and (counts > 0).all()
    ece = np.sum(counts * np.abs(sk_true - sk_pred)) / y.size
    if strategy == "uniform":
        assert M.expected_calibration_error(y, s, n_bins) == pytest.approx(ece, abs=1e-12)


def test_calibration_uniform_edges_go_to_lower_bin():
    mean_pred, frac_pos, counts = M.calibration_curve([0, 1, 1], [0.1, 0.1, 0.2], n_bins=10)
    np.testing.assert_array_equal(counts, [2, 1])  # 0.1 is in (0, 0.1], 0.2 in (0.1, 0.2]
    np.testing.assert_allclose(mean_pred, [0.1, 0.2])
    np.testing.assert_allclose(frac_pos, [0.5, 1.0])


def test_ece_by_hand_and_on_synthetic_calibration():
    # bin 0: mean 0.05, half positive -> gap 0.45; bin 9: mean 0.95, all positive -> gap 0.05; equal weights
    assert M.expected_calibration_error([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95]) == pytest.approx(0.25)
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert M.expected_calibration_error(y, p) < 0.02
    assert M.expected_calibration_error(y, p**3) > 0.1  # over-confident in the negative direction


def test_calibration_rejects_non_probabilities():
    with pytest.raises(ValueError):
        M.calibration_curve([0, 1], [0.2, 1.2])
    with pytest.raises(ValueError):
        M.brier_score([0, 1], [-0.1, 0.5])
    with pytest.raises(ValueError):
        M.calibration_curve([0, 1], [0.2, 0.8], strategy="kmeans")


@PROPERTY
@given(labelled_scores(min_size=1, both_classes=False))
def test_brier_matches_sklearn(ys):
    y, s = ys
    assert M.brier_score(y, s) == pytest.approx(skm.brier_score_loss(y, s, labels=[0, 1]), abs=1e-12)


def test_brier_by_hand():
    assert M.brier_score([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)


# --- DeLong ----------------------------------------------------------------------------------------------------


def direct_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) straight from the definition: ψ over all m·n pairs, then S10/m + S01/n."""
    pos, neg = y == 1, y == 0
    v10, v01, aucs = [], [], []
    for s in scores:
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    s10, s01 = np.atleast_2d(np.cov(np.array(v10))), np.atleast_2d(np.cov(np.array(v01)))
    return np.array(aucs), s10 / pos.sum() + s01 / neg.sum()


def test_delong_variance_matches_direct_formula_on_tiny_case():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.4, 0.2, 0.6, 0.5, 0.3, 0.1])
    # by hand: V10 = (1, 3.5/4, 2/4, 1/4), V01 = (1.5/4, 2/4, 3/4, 1) -> AUC 21/32,
    # S10 = 0.35546875/3, S01 = 0.23046875/3, var = (S10 + S01)/4 = 25/512
    aucs, cov = direct_delong(y, [s])
    assert aucs[0] == pytest.approx(21 / 32)
    assert cov[0, 0] == pytest.approx(25 / 512)
    auc, lo, hi = M.delong_auc_ci(y, s, alpha=0.5)
    assert auc == pytest.approx(21 / 32)
    half = norm.ppf(0.75) * np.sqrt(25 / 512)
    assert 0 < lo and hi < 1  # not clipped, so the half-width is exactly z·SE
    assert (lo, hi) == pytest.approx((auc - half, auc + half), rel=1e-12)
    assert M.delong_auc_ci(y, s, alpha=0.05)[2] == 1.0  # the 95% interval is clipped to [0, 1]


@PROPERTY
@given(labelled_scores(min_size=6), st.integers(0, 2**32 - 1))
def test_delong_test_matches_direct_formula(ys, seed):
    y, a = ys
    if min(y.sum(), (1 - y).sum()) < 2:
        y = np.r_[y, 1, 1, 0, 0]
        a = np.r_[a, 0.3, 0.8, 0.2, 0.7]
    b = np.round(a + np.random.default_rng(seed).normal(0, 0.3, a.size), 1)
    aucs, cov = direct_delong(y, [a, b])
    out = M.delong_test(y, a, b)
    assert out["auc_a"] == pytest.approx(aucs[0], abs=1e-12)
    assert out["auc_b"] == pytest.approx(aucs[1], abs=1e-12)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if var > 1e-12:
        p = 2 * norm.sf(abs(aucs[0] - aucs[1]) / np.sqrt(var))
        assert out["p_value"] == pytest.approx(p, rel=1e-6, abs=1e-12)


@PROPERTY
@given(labelled_scores(min_size=4))
def test_delong_ci_contains_auc(ys):
    y, s = ys
    if min(y.sum(), (1 - y).sum()) < 2:
        return
    auc, lo, hi = M.delong_auc_ci(y, s)
    assert 0 <= lo <= auc <= hi <= 1


def test_delong_identical_or_monotone_scores_give_p_one():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = rng.normal(y, 1.0)
    assert M.delong_test(y, s, s)["p_value"] == 1.0
    same_ranks = M.delong_test(y, s, np.exp(s))  # same ordering, different numbers
    assert same_ranks["difference"] == 0 and same_ranks["p_value"] == 1.0


def test_delong_detects_a_clearly_better_model():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 600)
    good, weak = rng.normal(2.0 * y, 1.0), rng.normal(0.3 * y, 1.0)
    out = M.delong_test(y, good, weak)
    assert out["auc_a"] > out["auc_b"] + 0.2
    assert out["p_value"] < 1e-6
    # two models of equal skill on the same cases should usually not differ
    assert M.delong_test(y, rng.normal(y, 1.0), rng.normal(y, 1.0))["p_value"] > 0.01


def test_delong_degenerate_cases_are_nan_not_zero_to_one():
    auc, lo, hi = M.delong_auc_ci([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3])
    assert auc == 1.0 and np.isnan(lo) and np.isnan(hi)
    assert all(np.isnan(M.delong_auc_ci([0, 0, 0], [0.1, 0.2, 0.3])))
    assert np.isnan(M.delong_test([1, 0, 0], [0.9, 0.1, 0.2], [0.1, 0.9, 0.2])["p_value"])


# --- McNemar ---------------------------------------------------------------------------------------------------


def paired(b: int, c: int, both_right: int = 10, both_wrong: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decisions where A alone is right on b cases and B alone on c cases (labels alternate to use both classes)."""
    n = b + c + both_right + both_wrong
    y = np.arange(n) % 2
    a_right = np.r_[np.ones(b), np.zeros(c), np.ones(both_right), np.zeros(both_wrong)].astype(bool)
    b_right = np.r_[np.zeros(b), np.ones(c), np.ones(both_right), np.zeros(both_wrong)].astype(bool)
    return y, np.where(a_right, y, 1 - y), np.where(b_right, y, 1 - y)


def test_mcnemar_exact_matches_binomtest():
    for b, c in [(7, 2), (0, 5), (12, 12), (1, 0), (20, 4)]:
        out = M.mcnemar_test(*paired(b, c))
        assert (out["b"], out["c"], out["method"]) == (b, c, "exact binomial")
        assert out["statistic"] == min(b, c)
        assert out["p_value"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_mcnemar_chi_square_by_hand():
    out = M.mcnemar_test(*paired(30, 15))
    assert out["method"] == "chi-square with continuity correction"
    assert out["statistic"] == pytest.approx((15 - 1) ** 2 / 45)
    assert out["p_value"] == pytest.approx(chi2.sf((15 - 1) ** 2 / 45, 1), rel=1e-12)
    assert M.mcnemar_test(*paired(20, 20))["p_value"] == pytest.approx(1.0)


def test_mcnemar_switch_at_25_and_orientation():
    assert M.mcnemar_test(*paired(16, 8))["method"] == "exact binomial"  # 24 discordant
    assert M.mcnemar_test(*paired(17, 8))["method"].startswith("chi-square")  # 25 discordant
    y, a, b = paired(9, 1)
    swapped = M.mcnemar_test(y, b, a)
    assert (swapped["b"], swapped["c"]) == (1, 9)
    assert swapped["p_value"] == pytest.approx(M.mcnemar_test(y, a, b)["p_value"])
    none = M.mcnemar_test(*paired(0, 0))
    assert (none["b"], none["c"], none["p_value"]) == (0, 0, 1.0)
    with pytest.raises(ValueError):
        M.mcnemar_test([0, 1], [0, 1], [0, 1, 1])


# --- bootstrap, Wilson, prevalence -----------------------------------------------------------------------------


def _bootstrap_data(n: int = 400, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.35).astype(int)
    return y, np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1)


def test_bootstrap_rates_contain_point_estimate_and_are_reproducible():
    y, s = _bootstrap_data()
    point = M.metrics_at(y, s, 0.5)
    ci = M.bootstrap_rates_ci(y, s, 0.5, n_boot=2000, seed=11)
    assert set(ci) == {"sensitivity", "specificity", "ppv", "npv", "accuracy", "f1"}
    for name, (lo, hi) in ci.items():
        assert 0 <= lo < point[name] < hi <= 1, name
    assert M.bootstrap_rates_ci(y, s, 0.5, n_boot=2000, seed=11) == ci
    assert M.bootstrap_rates_ci(y, s, 0.5, n_boot=2000, seed=12) != ci
    wider = M.bootstrap_rates_ci(y, s, 0.5, n_boot=2000, seed=11, alpha=0.01)
    assert wider["sensitivity"][0] <= ci["sensitivity"][0] and wider["sensitivity"][1] >= ci["sensitivity"][1]


def test_bootstrap_rates_agree_with_resampling_images():
    """The binomial shortcut must give the same intervals as the slow index-resampling bootstrap."""
    y, s = _bootstrap_data(300)
    fast = M.bootstrap_rates_ci(y, s, 0.5, n_boot=3000, seed=0)
    for name in ("sensitivity", "specificity", "ppv", "accuracy"):
        slow = M.stratified_bootstrap_ci(y, s, lambda yy, ss, k=name: M.rates(M.confusion_at(yy, ss, 0.5))[k], n_boot=3000, seed=1)
        assert fast[name] == pytest.approx(slow, abs=0.015), name


def test_bootstrap_rates_edge_cases():
    y, s = _bootstrap_data()
    # nothing called positive: sensitivity pinned at 0, PPV undefined in every replicate
    ci = M.bootstrap_rates_ci(y, s, 2.0, n_boot=200)
    assert ci["sensitivity"] == (0.0, 0.0) and ci["specificity"] == (1.0, 1.0)
    assert all(np.isnan(ci["ppv"]))
    assert all(np.isnan(M.bootstrap_rates_ci(np.zeros(5, int), np.linspace(0, 1, 5), 0.5)["sensitivity"]))


def test_stratified_bootstrap_keeps_class_counts_and_contains_auc():
    y, s = _bootstrap_data(200)
    seen = []
    lo, hi = M.stratified_bootstrap_ci(y, s, lambda yy, ss: seen.append(int(yy.sum())) or M.roc_auc(yy, ss), n_boot=50, seed=4)
    assert set(seen) == {int(y.sum())}
    assert lo < M.roc_auc(y, s) < hi
    assert M.stratified_bootstrap_ci(y, s, M.roc_auc, n_boot=50, seed=4) == (lo, hi)


def test_wilson_interval_by_hand():
    # k = 8, n = 10, z = 1.95996: centre (0.8 + z²/20) / (1 + z²/10), half z·sqrt(0.016 + z²/400) / (1 + z²/10)
    z = norm.ppf(0.975)
    d = 1 + z * z / 10
    centre, half = (0.8 + z * z / 20) / d, z * np.sqrt(0.016 + z * z / 400) / d
    assert M.wilson_ci(8, 10) == pytest.approx((centre - half, centre + half))
    assert M.wilson_ci(0, 10)[0] == 0.0 and M.wilson_ci(10, 10)[1] == pytest.approx(1.0)
    assert M.wilson_ci(0, 10)[1] == pytest.approx(1 - M.wilson_ci(10, 10)[0])  # symmetric in k <-> n - k
    assert all(np.isnan(M.wilson_ci(0, 0)))


def test_predictive_values_by_hand_and_at_sample_prevalence():
    ppv, npv = M.predictive_values_at_prevalence(0.9, 0.8, 0.1)
    assert ppv == pytest.approx(0.09 / (0.09 + 0.18)) and npv == pytest.approx(0.72 / 0.73)
    assert isinstance(ppv, float)
    # at the test set's own prevalence Bayes must reproduce the counted PPV/NPV
    m = M.metrics_at(Y6, S6, 0.6)
    ppv, npv = M.predictive_values_at_prevalence(m["sensitivity"], m["specificity"], Y6.mean())
    assert (ppv, npv) == pytest.approx((m["ppv"], m["npv"]))
    ppvs, npvs = M.predictive_values_at_prevalence(0.9, 0.8, np.array([0.01, 0.1, 0.5]))
    assert ppvs.shape == (3,) and np.all(np.diff(ppvs) > 0) and np.all(np.diff(npvs) < 0)
    assert np.isnan(M.predictive_values_at_prevalence(0.0, 1.0, 0.2)[0])  # nothing is ever called positive
    with pytest.raises(ValueError):
        M.predictive_values_at_prevalence(0.9, 1.2, 0.1)


# --- input checking and the summary card -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[0.5, 1], [256, 1], [2, 0], [np.nan, 1]])
def test_labels_must_be_zero_one(bad):
    with pytest.raises(ValueError):
        M.confusion_at(bad, [0.1, 0.2], 0.5)


def test_inputs_checked():
    with pytest.raises(ValueError):
        M.roc_auc([0, 1], [0.1, np.inf])
    with pytest.raises(ValueError):
        M.roc_auc([0, 1, 1], [0.1, 0.2])
    assert M.confusion_at([True, False], [0.7, 0.2], 0.5) == {"tp": 1, "fp": 0, "fn": 0, "tn": 1}
    assert np.isnan(M.roc_auc([1, 1], [0.2, 0.3]))


def test_summary_card_consistent():
    out = M.summary(Y6, S6, 0.5)
    assert (out["n"], out["n_positive"], out["tp"], out["fn"]) == (6, 3, 3, 0)
    assert out["auc"] == pytest.approx(7.5 / 9)
    assert out["auc_ci"][0] <= out["auc"] <= out["auc_ci"][1]
    assert out["sensitivity_ci"] == pytest.approx(list(M.wilson_ci(3, 3)))
    assert out["specificity_ci"] == pytest.approx(list(M.wilson_ci(2, 3)))
