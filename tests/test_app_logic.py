"""Unit tests of the app's pure logic in core: operating points, charts, scoring, reviews, samples."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.data import samples
from core.evaluation import charts, metrics, reviews
from core.evaluation import operating_point as op
from core.evaluation.metrics import OperatingCurve
from core.inference import scoring
from core.models.selection import default_model


def _scores(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).round(3)  # ties on purpose
    return y, s


@pytest.mark.parametrize("seed", range(5))
def test_threshold_for_min_sensitivity_matches_metrics(seed):
    y, s = _scores(seed=seed)
    c = OperatingCurve.from_scores(y, s)
    for target in (0.0, 0.3, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert op.threshold_for_min_sensitivity(c, target) == metrics.threshold_for_sensitivity(y, s, target)
        got = op.at(c, op.threshold_for_min_sensitivity(c, target))["sensitivity"]
        assert got >= target - 1e-12


def test_presets_are_chosen_on_the_given_scores():
    y, s = _scores()
    assert op.preset_threshold("youden", y, s) == metrics.youden_threshold(y, s)
    t = op.preset_threshold("sens95", y, s)
    assert metrics.metrics_at(y, s, t)["sensitivity"] >= 0.95
    t = op.preset_threshold("spec90", y, s)
    assert metrics.metrics_at(y, s, t)["specificity"] >= 0.90
    with pytest.raises(KeyError):
        op.preset_threshold("nope", y, s)


def test_meaning_sentence_uses_counts_and_per_hundred():
    point = {"tp": 412, "fp": 24, "n_pos": 430, "n_neg": 201}
    text = op.meaning("pneumonia", point)
    assert "caught 96 of every 100 pneumonia cases in validation (412 of 430)" in text
    assert "false alarm on 12 of every 100 normal X-rays (24 of 201)" in text
    assert "parasitized cells" in op.meaning("malaria", point)


def test_decisions_use_greater_or_equal():
    assert op.decide(0.5, 0.5) and not op.decide(0.4999, 0.5)
    assert op.decision_label(0.7, 0.5, "pneumonia") == "PNEUMONIA"
    assert op.decision_label(0.2, 0.5, "malaria") == "Uninfected"


def test_metrics_table_val_and_test_with_cis_and_prevalence():
    y, s = _scores()
    yt, st_ = _scores(seed=9)
    rows = op.metrics_table(y, s, yt, st_, 0.5, prevalence=0.05)
    names = [r["metric"] for r in rows]
    assert names[:6] == ["Sensitivity", "Specificity", "PPV (positive predictive value)", "NPV (negative predictive value)", "Accuracy", "F1 score"]
    assert names[6].startswith("PPV at 5%") and names[7].startswith("NPV at 5%")
    m = metrics.metrics_at(yt, st_, 0.5)
    assert rows[0]["test"] == m["sensitivity"] and rows[1]["val"] == metrics.metrics_at(y, s, 0.5)["specificity"]
    for r in rows:
        for k in ("val", "test"):
            lo, hi = r[f"{k}_ci"]
            assert lo <= r[k] + 1e-9 and r[k] <= hi + 1e-9, (r["metric"], k, lo, r[k], hi)
    ppv5, npv5 = metrics.predictive_values_at_prevalence(m["sensitivity"], m["specificity"], 0.05)
    assert rows[6]["test"] == pytest.approx(ppv5) and rows[7]["test"] == pytest.approx(npv5)
    assert "5 in 100" in op.predictive_sentence("pneumonia", m["sensitivity"], m["specificity"], 0.05)


def test_charts_mark_the_operating_point():
    y, s = _scores()
    c = OperatingCurve.from_scores(y, s)
    fig = charts.roc_figure([{"name": "M", "curve": c, "auc": (0.8, 0.75, 0.85), "points": [{"threshold": 0.5}]}])
    pts = [t for t in fig.data if t.mode == "markers"]
    cnt = c.counts(0.5)
    assert pts[0].x[0] == pytest.approx(cnt["fp"] / c.n_neg) and pts[0].y[0] == pytest.approx(cnt["tp"] / c.n_pos)
    assert "AUC 0.800" in fig.data[1].name
    pr = charts.pr_figure(y, s, [{"threshold": 0.5}])
    assert any(t.mode == "markers" for t in pr.data)
    dist = charts.distribution_figure(y, s, 0.5, ("NORMAL", "PNEUMONIA"))
    assert sum(sum(t.y) for t in dist.data) == len(y)
    conf = charts.confusion_figure(cnt, ("NORMAL", "PNEUMONIA"))
    assert np.array(conf.data[0].customdata).sum() == len(y)
    rel = charts.reliability_figure([{"name": "M", "y": y, "s": s}])
    assert "ECE" in rel.data[1].name
    json.loads(fig.to_json())  # serialisable for the browser


def test_worklist_sorted_with_unreadable_last():
    rows = [{"file": "a", "probability": 0.2}, {"file": "b", "probability": 0.9}, {"file": "c", "probability": None},
            {"file": "d", "probability": 0.5}]
    wl = scoring.worklist(rows, 0.5, "pneumonia")
    assert list(wl["file"]) == ["b", "d", "a", "c"]
    assert list(wl["decision"]) == ["Flag: PNEUMONIA", "Flag: PNEUMONIA", "NORMAL", "could not read"]
    csv = scoring.worklist_csv(wl, 0.5, "pneumonia", "secondlook_cnn").decode()
    assert csv.splitlines()[0].startswith("rank,file,probability,decision")


def test_score_bytes_reports_bad_files_without_raising():
    s = scoring.score_bytes(model=None, spec=None, data=b"not an image", name="x.png")
    assert not s.ok and "x.png" in s.error


def test_reviews_roundtrip_and_export(tmp_path):
    db = tmp_path / "r.sqlite"
    rid = reviews.add_review("pneumonia", "secondlook_cnn", "images/test/a.jpg", "label_wrong", " looks normal ",
                             true_label="PNEUMONIA", error_type="fn", probability=0.01, threshold=0.4, db=db)
    reviews.add_review("pneumonia", "secondlook_cnn", "images/test/a.jpg", "image_quality", db=db)
    reviews.add_review("malaria", "secondlook_cnn", "x.png", "model_error", db=db)
    df = reviews.list_reviews("pneumonia", db=db)
    assert len(df) == 2 and df.iloc[-1]["id"] == rid and df.iloc[-1]["note"] == "looks normal"
    assert reviews.latest_tags("pneumonia", db=db)["images/test/a.jpg"]["tag"] == "image_quality"
    csv = reviews.export_csv("pneumonia", db=db).decode()
    assert "Label looks wrong" in csv and "x.png" not in csv
    reviews.delete_review(rid, db=db)
    assert len(reviews.list_reviews("pneumonia", db=db)) == 1
    with pytest.raises(ValueError):
        reviews.add_review("pneumonia", "m", "p", "bogus", db=db)


def test_reviews_default_path_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_REVIEWS", str(tmp_path / "x.sqlite"))
    assert reviews.db_path() == tmp_path / "x.sqlite"


def test_misclassified_sorted_by_confidence():
    df = pd.DataFrame({"path": list("abcdef"), "label": ["P", "P", "P", "N", "N", "N"],
                       "score": [0.9, 0.05, 0.3, 0.2, 0.95, 0.6], "y": [1, 1, 1, 0, 0, 0]})
    extra = pd.DataFrame({"path": list("abcdef"), "file": [f"/x/{c}" for c in "abcdef"], "subtype": ["bacteria"] * 3 + ["normal"] * 3})
    mis = reviews.misclassified(df, 0.5, extra)
    assert list(mis["path"]) == ["b", "e", "c", "f"]
    assert list(mis["error"]) == ["fn", "fp", "fn", "fp"]
    assert mis["confidence"].tolist() == pytest.approx([0.95, 0.95, 0.7, 0.6])
    assert (mis["file"] == "/x/" + mis["path"]).all()


def test_pick_test_examples_only_test_split_interleaved():
    man = pd.DataFrame({"path": [f"p{i}" for i in range(20)], "label": ["A", "B"] * 10,
                        "split": ["train"] * 10 + ["test"] * 10})
    ex = samples.pick_test_examples(man, ("A", "B"), 3)
    assert len(ex) == 6 and set(ex["split"]) == {"test"}
    assert list(ex["label"]) == ["A", "B", "A", "B", "A", "B"]
    assert ex.equals(samples.pick_test_examples(man, ("A", "B"), 3))  # deterministic


def test_probabilities_are_never_shown_as_certain():
    assert op.fmt_prob(0.99996) == ">99.9%" and op.fmt_prob(1.0) == "100.0%"
    assert op.fmt_prob(0.00004) == "<0.1%" and op.fmt_prob(0.0) == "0.0%"
    assert op.fmt_prob(0.5) == "50.0%"


def test_recommended_model_is_the_registry_default_and_is_labelled():
    from core.registry import TASKS
    from ui import common

    for task in TASKS:
        rec = common.recommended_model(task)
        assert rec == default_model(task)
        assert common.model_label(task, rec).endswith("· recommended")
        assert sum(common.model_label(task, m.id).endswith("· recommended") for m in TASKS[task].models) == 1


@pytest.mark.parametrize("p, thr", [(0.99951, 0.9995), (0.99996, 0.99999), (0.5, 0.5), (0.12, 0.5), (0.0004, 0.0003),
                                    (0.999999, 1.0), (1.0, 0.99999), (0.30049, 0.3005), (0.3005, 0.30049)])
def test_a_shown_probability_and_threshold_never_contradict_the_decision(p, thr):
    """The shown figures compare as the decision does (flagged exactly when p >= threshold); none shows 100% or 0%
    unless it is exactly that (issue: '>99.9%' against a threshold shown as '100.0%')."""
    def shown(text: str) -> float:  # ">99.9%" is a little more than 99.9, "<0.1%" a little less than 0.1
        return float(text.strip("<>%")) + (1e-9 if text[0] == ">" else -1e-9 if text[0] == "<" else 0.0)

    a, b = op.fmt_pair(p, thr)
    assert (shown(a) >= shown(b)) == (p >= thr) and (a == b) == (p == thr)
    assert (a == "100.0%") == (p == 1.0) and (b == "100.0%") == (thr == 1.0) and "0.0%" not in (a, b)


def test_honest_summary_leads_with_the_less_flattering_set_when_intervals_disagree():
    val = op.split_rates({"tp": 97, "fp": 2, "n_pos": 100, "n_neg": 100})
    test = op.split_rates({"tp": 388, "fp": 75, "n_pos": 390, "n_neg": 234})
    lines = op.honest_summary("pneumonia", {"validation": val, "test": test})
    assert lines[0].startswith("The test images had clearly more false alarms than the validation images")
    assert "false alarm on 32 of every 100" in lines[1] and "false alarm on 2 of every 100" in lines[2]
    same = op.split_rates({"tp": 95, "fp": 3, "n_pos": 100, "n_neg": 100})
    calm = op.honest_summary("pneumonia", {"validation": val, "test": same})
    assert len(calm) == 2 and not calm[0].startswith("The ")
