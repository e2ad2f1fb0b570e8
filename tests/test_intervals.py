"""Patient-level (cluster bootstrap) intervals against brute force and the ordinary stratified bootstrap."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.evaluation import intervals as iv
from core.evaluation import metrics


def _clustered(n_pat: int = 30, per: int = 20, effect: float = 1.5, seed: int = 1):
    """Patients whose images share a patient effect on the score (so images of one patient are alike)."""
    rng = np.random.default_rng(seed)
    groups, y, s = [], [], []
    for p in range(n_pat):
        infected = p % 2 == 0
        shift = rng.normal(0, effect)
        for _ in range(per):
            lab = int(infected and rng.random() < 0.6)
            groups.append(f"P{p}")
            y.append(lab)
            s.append(1 / (1 + np.exp(-(1.2 * (2 * lab - 1) + shift + rng.normal(0, 0.5)))))
    return np.array(groups, dtype=object), np.array(y), np.array(s)


def _expand(weights_row: np.ndarray, cl: iv.Clusters) -> np.ndarray:
    """Image indices of one replicate: every image of patient g, repeated as often as g was drawn."""
    return np.concatenate([np.repeat(np.flatnonzero(cl.index == g), int(k)) for g, k in enumerate(weights_row) if k] or [np.array([], int)])


@pytest.mark.parametrize("n_pat,per,n_boot", [(8, 5, 60), (600, 1, 15)])  # few patients: quadratic form; many: gather
def test_replicates_equal_brute_force_resampling(n_pat, per, n_boot):
    groups, y, s = _clustered(n_pat=n_pat, per=per)
    s = np.round(s, 2)  # ties, to check they count half
    cl = iv.clusters(groups, y)
    assert (cl.n_groups <= iv._AucBlocks.QUADRATIC_MAX_GROUPS) == (n_pat <= 512)
    w = iv.draw_weights(cl, n_boot, seed=3)
    aucs = iv.auc_replicates(y, s, cl, w)
    rates = iv.rate_replicates(y, s, cl, w, 0.5)
    cal = iv.calibration_replicates(y, s, cl, w)
    for b in range(len(w)):
        idx = _expand(w[b], cl)
        yb, sb = y[idx], s[idx]
        assert aucs[b] == pytest.approx(metrics.roc_auc(yb, sb), abs=1e-12)
        m = metrics.metrics_at(yb, sb, 0.5)
        for k in ("tp", "fp", "fn", "tn"):
            assert rates[k][b] == m[k]
        for k in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "f1"):
            assert rates[k][b] == pytest.approx(m[k], abs=1e-12, nan_ok=True)
        assert cal["ece"][b] == pytest.approx(metrics.expected_calibration_error(yb, sb), abs=1e-12)
        assert cal["brier"][b] == pytest.approx(metrics.brier_score(yb, sb), abs=1e-12)


def test_each_replicate_keeps_the_strata():
    groups, y, _ = _clustered(n_pat=11, per=3)
    cl = iv.clusters(groups, y)
    w = iv.draw_weights(cl, 500, seed=0)
    assert (w[:, cl.has_finding].sum(axis=1) == cl.has_finding.sum()).all()
    assert (w[:, ~cl.has_finding].sum(axis=1) == (~cl.has_finding).sum()).all()
    # a patient with any positive image is in the finding stratum
    assert cl.has_finding.sum() == len({g for g, v in zip(groups, y) if v == 1})


def test_seeded_and_deterministic():
    groups, y, s = _clustered()
    a = iv.patient_level_summary(y, s, groups, 0.5, n_boot=300, seed=7)
    b = iv.patient_level_summary(y, s, groups, 0.5, n_boot=300, seed=7)
    c = iv.patient_level_summary(y, s, groups, 0.5, n_boot=300, seed=8)
    assert a == b and a["auc_ci"] != c["auc_ci"]


def test_one_image_per_patient_matches_the_ordinary_stratified_bootstrap():
    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.4).astype(int)
    s = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 1.2, y.size))))
    groups = np.array([f"img{i}" for i in range(y.size)], dtype=object)
    ours = iv.patient_level_summary(y, s, groups, 0.5, n_boot=4000, seed=1)
    auc_ref = metrics.stratified_bootstrap_ci(y, s, metrics.roc_auc, n_boot=4000, seed=2)
    rate_ref = metrics.bootstrap_rates_ci(y, s, 0.5, n_boot=4000, seed=2)
    np.testing.assert_allclose(ours["auc_ci"], auc_ref, atol=0.006)  # Monte Carlo error of a 2.5% quantile
    for k in ("sensitivity", "specificity", "accuracy"):
        np.testing.assert_allclose(ours[f"{k}_ci"], rate_ref[k], atol=0.012)
    # and groups=None (no ids) is the same computation as one group per image
    assert iv.patient_level_summary(y, s, None, 0.5, n_boot=500)["auc_ci"] == \
        iv.patient_level_summary(y, s, [f"{i:04d}" for i in range(y.size)], 0.5, n_boot=500)["auc_ci"]


def test_clustered_data_gives_wider_intervals_than_image_level():
    groups, y, s = _clustered(n_pat=20, per=40, effect=1.5)
    pat = iv.patient_level_summary(y, s, groups, 0.5, n_boot=1500)
    img = iv.patient_level_summary(y, s, None, 0.5, n_boot=1500)
    width = lambda d, k: d[f"{k}_ci"][1] - d[f"{k}_ci"][0]  # noqa: E731
    for k in ("auc", "sensitivity", "specificity", "accuracy", "ece"):
        assert width(pat, k) > 1.5 * width(img, k), (k, width(pat, k), width(img, k))
    assert pat["n_patients"] == 20 and img["n_patients"] == y.size
    assert pat["method"].startswith("patient-level") and img["method"].startswith("image-level (no patient ids)")
    for k in iv.METRICS:  # point estimates do not depend on the resampling
        assert pat[k] == pytest.approx(img[k], nan_ok=True)
        lo, hi = pat[f"{k}_ci"]
        assert lo <= pat[k] + 1e-9 and pat[k] <= hi + 1e-9 or k == "ece"  # ECE is biased upward under resampling


def test_point_estimates_are_the_card_metrics():
    groups, y, s = _clustered()
    out = iv.patient_level_summary(y, s, groups, 0.4, n_boot=100)
    m = metrics.metrics_at(y, s, 0.4)
    assert out["auc"] == pytest.approx(metrics.roc_auc(y, s))
    assert out["sensitivity"] == pytest.approx(m["sensitivity"]) and out["npv"] == pytest.approx(m["npv"])
    assert out["ece"] == pytest.approx(metrics.expected_calibration_error(y, s))


def test_paired_difference_of_identical_models_is_zero_with_p_one():
    groups, y, s = _clustered()
    d = iv.paired_auc_difference(y, s, s, groups, n_boot=500)
    assert d["difference"] == 0 and d["ci"] == [0.0, 0.0] and d["p_value"] == 1.0


def test_paired_difference_detects_a_better_model_and_matches_brute_force():
    groups, y, s = _clustered(n_pat=40, per=10, effect=0.3)
    rng = np.random.default_rng(9)
    noisy = 1 / (1 + np.exp(-(np.log(s / (1 - s)) + rng.normal(0, 3, s.size))))
    d = iv.paired_auc_difference(y, s, noisy, groups, n_boot=800, seed=4)
    assert d["difference"] > 0 and d["ci"][0] > 0 and d["p_value"] < 0.01
    # brute force on the same patient draws
    cl = iv.clusters(groups, y)
    w = iv.draw_weights(cl, 800, 4)
    brute = [metrics.roc_auc(y[i], s[i]) - metrics.roc_auc(y[i], noisy[i]) for i in (_expand(r, cl) for r in w)]
    np.testing.assert_allclose(d["ci"], iv.percentile_ci(np.array(brute)), atol=1e-12)
    # swapping A and B mirrors the difference and keeps p
    r = iv.paired_auc_difference(y, noisy, s, groups, n_boot=800, seed=4)
    assert r["difference"] == pytest.approx(-d["difference"]) and r["p_value"] == pytest.approx(d["p_value"])


def test_rate_cis_replicates_give_the_counts():
    groups, y, s = _clustered()
    cis, reps = iv.rate_cis(y, s, groups, 0.5, n_boot=200)
    assert set(cis) == set(iv.RATES)
    n = reps["tp"] + reps["fp"] + reps["fn"] + reps["tn"]
    assert n.min() > 0 and len(n) == 200


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="groups has 2 values"):
        iv.clusters(["a", "b"], [0, 1, 1])
    with pytest.raises(ValueError, match="missing"):
        iv.clusters(np.array(["a", None], dtype=object), [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        iv.patient_level_summary([0, 2], [0.1, 0.2], None, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        iv.patient_level_summary([0, 1], [0.1, 0.2], None, float("nan"))


def test_prediction_groups_joins_the_manifest_on_path(tmp_path, monkeypatch):
    from core.evaluation import patients

    monkeypatch.setenv("SECONDLOOK_DATA", str(tmp_path))
    assert patients.prediction_groups("malaria", ["a.jpg"]) is None  # no dataset here
    (tmp_path / "malaria").mkdir()
    pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "label": ["Parasitized", "Uninfected", "Uninfected"],
                  "patient_id": ["P1", "P1", "C2"], "split": "test"}).to_csv(tmp_path / "malaria" / "manifest.csv", index=False)
    assert patients.prediction_groups("malaria", ["c.jpg", "a.jpg"]).tolist() == ["C2", "P1"]
    assert patients.prediction_groups("malaria", ["a.jpg", "unknown.jpg"]) is None  # a row we cannot place
    (tmp_path / "effusion").mkdir()
    pd.DataFrame({"path": ["x.png"], "label": ["NORMAL"], "patient_id": ["rxtorax-1"], "split_group": ["g7"],
                  "split": "test"}).to_csv(tmp_path / "effusion" / "manifest.csv", index=False)
    assert patients.prediction_groups("effusion", ["x.png"]).tolist() == ["g7"]


def test_operating_table_uses_patient_draws_when_given_groups():
    from core.evaluation import operating_point as op

    groups, y, s = _clustered()
    rows = op.metrics_table(y, s, y, s, 0.5, prevalence=0.05, val_groups=None, test_groups=groups)
    cis, _ = iv.rate_cis(y, s, groups, 0.5)
    by = {r["metric"]: r for r in rows}
    assert list(by["Sensitivity"]["test_ci"]) == cis["sensitivity"]
    assert tuple(by["Sensitivity"]["val_ci"]) == metrics.bootstrap_rates_ci(y, s, 0.5, n_boot=1000)["sensitivity"]
    lo, hi = by["PPV at 5% prevalence"]["test_ci"]
    assert 0 <= lo <= by["PPV at 5% prevalence"]["test"] <= hi <= 1
    # patient draws are wider than image draws on clustered data
    assert hi - lo > np.subtract(*by["PPV at 5% prevalence"]["val_ci"][::-1])
