"""AppTest: Model comparison — overlaid ROC, paired tests, calibration, one image through every model."""
from __future__ import annotations

import json

from core.models import store
from tests.app_support import plotly_specs, start, task_with_models
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
    assert {"DeLong p", "McNemar p"} <= set(at.table[1].value.columns)
    assert len(at.table[1].value) == len(models) * (len(models) - 1) // 2
    assert any("Reliability" in s for s in specs.values())
    # moving the sidebar slider moves the current model's operating point in the table and the ROC marker
    table0 = at.table[0].value.copy()
    at.sidebar.slider(key="op_sens").set_value(99.0).run()
    assert not at.exception
    assert not at.table[0].value.equals(table0)
    assert plotly_specs(at) != specs
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
