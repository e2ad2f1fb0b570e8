"""AppTest: Threshold tuning — works from the prediction CSVs, reacts to the slider, presets and model switches."""
from __future__ import annotations

from core.evaluation import operating_point as op
from core.models import store
from tests.conftest import require_dataset
from tests.app_support import plotly_specs, start, task_with_models


def test_threshold_page_loads_with_val_and_test_columns():
    task = task_with_models()
    at = start(task, page="threshold")
    assert at.title[0].value == "Threshold tuning"
    table = at.table[0].value
    assert {"Validation (95% CI)", "Test, held-out (95% CI)"} <= set(table.columns)
    assert {"Sensitivity", "Specificity", "F1 score"} <= set(table["Metric"])
    assert len(plotly_specs(at)) == 4  # confusion, ROC, PR, distribution


def test_slider_changes_metrics_and_charts():
    task = task_with_models()
    at = start(task, page="threshold")
    t0, c0 = at.table[0].value.copy(), plotly_specs(at)
    at.sidebar.slider(key="op_sens").set_value(99.0).run()
    assert not at.exception
    t1, c1 = at.table[0].value, plotly_specs(at)
    assert not t0.equals(t1)
    assert c0 != c1


def test_preset_and_use_this_operating_point():
    task = task_with_models()
    at = start(task, page="threshold")
    mid = at.session_state["model"]
    at.button_group(key="tune_preset").set_value("spec95").run()
    assert not at.exception
    use = at.button(key="tune_use")
    if not use.disabled:
        use.click().run()
        assert not at.exception
        from core.evaluation import operating_point as op

        v = store.read_predictions(task, mid, "val")
        want = op.preset_threshold("spec95", v["y"], v["score"])
        assert at.session_state["op_thresholds"][f"{task}/{mid}"] == want
        assert at.session_state["tune_preset"] == "current"
        # Predict now uses it
        at.switch_page("app_pages/predict.py").run()
        assert any(f"{want:.4f}" in m.value for m in at.markdown)


def test_prevalence_changes_ppv():
    task = task_with_models()
    at = start(task, page="threshold")
    rows = at.table[0].value.set_index("Metric")
    before = rows.filter(like="PPV at", axis=0)
    at.number_input(key=f"tune_prev_{task}").set_value(5.0).run()
    after = at.table[0].value.set_index("Metric").filter(like="PPV at", axis=0)
    assert after.index[0].startswith("PPV at 5%")
    assert before.iloc[0, -1] != after.iloc[0, -1]


def test_switching_model_changes_curves():
    task = task_with_models(2)
    models = store.bundled_models(task)
    at = start(task, models[0], page="threshold")
    c0 = plotly_specs(at)
    at.sidebar.selectbox(key="model").select(models[1]).run()
    assert not at.exception
    assert plotly_specs(at) != c0


def test_works_from_prediction_csvs_without_images(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_DATA", str(tmp_path / "no-images-here"))
    task = task_with_models()
    at = start(task, page="threshold")
    assert not at.exception
    assert len(at.table[0].value) >= 6 and len(plotly_specs(at)) == 4


def test_test_column_is_the_cards_patient_level_interval():
    """At the card's threshold the page's test CIs are the card's patient-level ones (same draws), labelled."""
    require_dataset("malaria")
    at = start("malaria", page="threshold")
    mid = at.session_state["model"]
    card = store.read_card("malaria", mid)
    rows = at.table[0].value.set_index("Metric")
    pl = card["test_patient_level"]
    for metric, key in (("Sensitivity", "sensitivity"), ("Specificity", "specificity"), ("Accuracy", "accuracy")):
        assert rows.loc[metric, "Test, held-out (95% CI)"] == f"{op.fmt_pct(pl[key])}  ({op.fmt_ci(pl[key + '_ci'])})"
    caps = " ".join(c.value for c in at.caption)
    n_test, n_val = pl["n_patients"], card["validation_patient_level"]["n_patients"]  # a fold ensemble validates on every train patient
    assert f"Test: **patient-level ({n_test} patients)**" in caps and f"Validation: **patient-level ({n_val} patients)**" in caps


def test_without_patient_ids_the_intervals_are_labelled_image_level(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_DATA", str(tmp_path / "no-images-here"))
    at = start(task_with_models(), page="threshold")
    caps = " ".join(c.value for c in at.caption)
    assert "Test: **image-level (no patient ids)**" in caps and "DeLong" in caps
