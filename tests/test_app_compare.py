"""AppTest: Model comparison — overlaid ROC, paired tests, calibration, one image through every model."""
from __future__ import annotations

import json

from core.models import store
from core.evaluation import intervals
from tests.app_support import need, plotly_specs, start, task_with_models
from tests.conftest import require_dataset
from ui import common


def test_compare_loads_or_explains_single_model():
    task = task_with_models()
    at = start(task, page="compare")
    assert at.title[0].value == "Model comparison"
    if len(store.bundled_models(task)) < 2:
        assert any("Comparison needs two or more" in i.value for i in at.info)


def test_compare_curves_tests_and_slider():
    task = task_with_models(2)
    models = store.bundled_models(task)
    at = start(task, page="compare")
    specs = plotly_specs(at)
    roc = next(json.loads(s) for s in specs.values() if "ROC curve" in s)
    names = " ".join(t.get("name", "") for t in roc["data"])
    for m in models:
        assert common.short_model_label(task, m) in names
    assert {"Bootstrap p", "DeLong p (image-level)", "McNemar p (image-level)"} <= set(at.table[1].value.columns)
    assert len(at.table[1].value) == len(models) * (len(models) - 1) // 2
    assert any("Reliability" in s for s in specs.values())
    # moving the sidebar slider moves the current model's operating point in the table and the ROC marker
    table0 = at.table[0].value.copy()
    at.sidebar.slider(key="op_sens").set_value(99.0).run()
    assert not at.exception
    assert not at.table[0].value.equals(table0)
    assert plotly_specs(at) != specs
    from core.models.selection import cv_summary

    cvs = {m: cv_summary(store.read_card(task, m)) for m in at.multiselect(key=f"compare_models_{task}").value}
    for m, text in cvs.items():  # the cross-validation estimate beside the test numbers
        assert table0.loc["CV AUC (training folds)", common.short_model_label(task, m)] == text
    assert task != "effusion" or any("fold" in t for t in cvs.values())  # effusion has cross-validated models
    # dropping a model changes the curves
    at.multiselect(key=f"compare_models_{task}").set_value(models[:2]).run()
    if len(models) > 2:
        assert plotly_specs(at) != specs


def test_one_example_through_every_model():
    task = task_with_models(2)
    require_dataset(task)
    models = store.bundled_models(task)
    at = start(task, page="compare")
    at.button(key="compare_try").click().run()
    assert not at.exception, [e.message for e in at.exception]
    probs = [m for m in at.metric if m.label.startswith("Probability of")]
    assert len(probs) == len(models)
    ex = at.session_state["compare_example"]
    for m, shown in zip(models, probs):
        csv = store.read_predictions(task, m, "test").set_index("path")["score"][ex["path"]]
        exact = float(shown.proto.help.split()[-1])
        assert abs(exact - csv) <= 1e-6


def test_compare_resamples_patients_where_ids_exist():
    """Malaria: 14 test patients, so the intervals and the paired test are patient-level, and say so."""
    require_dataset("malaria")
    need(len(store.bundled_models("malaria")) >= 2, "two malaria models are needed")
    at = start("malaria", page="compare")
    caps = " ".join(c.value for c in at.caption)
    assert "patient-level (14 patients)" in caps
    table = at.table[0].value
    assert "AUC (95% CI, DeLong, image-level)" in table.index
    m = store.bundled_models("malaria")[0]
    auc, lo, hi = intervals.auc_ci(*_test_arrays("malaria", m))
    assert f"{auc:.3f} ({lo:.3f}–{hi:.3f})" == table.loc["AUC (95% CI)", common.short_model_label("malaria", m)]
    pairs = at.table[1].value
    assert pairs["AUC A − B (95% CI)"].str.contains(" to ").all()


def test_compare_without_patient_ids_says_image_level(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_DATA", str(tmp_path / "no-data"))
    task = task_with_models(2)
    at = start(task, page="compare")
    assert not at.exception
    assert "image-level (no patient ids)" in " ".join(c.value for c in at.caption)


def _test_arrays(task, model_id):
    from core.evaluation.patients import prediction_groups

    df = store.read_predictions(task, model_id, "test")
    return df["y"].to_numpy(), df["score"].to_numpy(), prediction_groups(task, df["path"].tolist())
