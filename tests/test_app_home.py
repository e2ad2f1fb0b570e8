"""AppTest: app.py (router + shared sidebar) and the Home page."""
from __future__ import annotations

from core.models import store
from core.registry import TASKS
from tests.app_support import need, start, task_with_models, texts, use_threshold


def test_home_loads_and_lists_tasks_and_models():
    at = start()
    assert at.title[0].value == "SecondLook"
    body = "\n".join(texts(at))
    assert "not a diagnostic device" in body
    for task in TASKS.values():
        assert any(h.value == f"### {task.title}" for h in at.markdown), task.title
    # every bundled model's card metrics are in a table
    shown = "\n".join(df.value.to_string() for df in at.dataframe)
    for name in TASKS:
        for mid in store.bundled_models(name):
            test = store.read_card(name, mid).get("test")
            if test:
                assert f"{test['auc']:.3f}" in shown


def test_sidebar_is_shared_and_slider_changes_the_operating_point():
    task = task_with_models()
    at = start(task)
    assert at.sidebar.selectbox(key="task").value == task
    before = at.session_state["op_thresholds"].get(f"{task}/{at.session_state['model']}")
    sentence = [m.value for m in at.sidebar.markdown if m.value.startswith("Catches")][0]
    at.sidebar.slider(key="op_sens").set_value(99.0).run()
    assert not at.exception
    after_thr = at.session_state["op_thresholds"][f"{task}/{at.session_state['model']}"]
    assert after_thr != before
    sentence2 = [m.value for m in at.sidebar.markdown if m.value.startswith("Catches")][0]
    assert sentence2 != sentence
    # the operating point survives a page switch
    at.switch_page("app_pages/predict.py").run()
    assert at.session_state["op_thresholds"][f"{task}/{at.session_state['model']}"] == after_thr
    assert at.sidebar.slider(key="op_sens").value == 99.0


def test_threshold_mode_and_reset():
    task = task_with_models()
    at = start(task)
    key = f"{task}/{at.session_state['model']}"
    default = store.read_card(task, at.session_state["model"])["threshold"]
    use_threshold(at, 0.123)
    assert at.session_state["op_thresholds"][key] == 0.123
    reset = [b for b in at.sidebar.button if b.label == "Reset to validated default"]
    assert reset
    reset[0].click().run()
    assert at.session_state["op_thresholds"].get(key, default) == default


def test_switching_task_picks_that_tasks_model():
    tasks = [t for t in TASKS if store.bundled_models(t)]
    need(len(tasks) >= 2, "two tasks with trained models are needed to switch task")
    at = start(tasks[0])
    at.sidebar.selectbox(key="task").select(tasks[1]).run()
    assert not at.exception
    assert at.session_state["model"] in store.bundled_models(tasks[1])


def test_task_without_models_says_so():
    empty = [t for t in TASKS if not store.bundled_models(t)]
    if not empty:
        return  # every task has a model: nothing to check
    at = start(empty[0])
    assert any("No trained model" in i.value for i in at.sidebar.info)
    for page in ("predict", "threshold", "compare", "review"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception
        assert any("no trained model" in i.value.lower() for i in at.info), page


def test_model_still_being_evaluated_is_handled(tmp_path, monkeypatch):
    """A model whose card exists but whose test predictions are not written yet (training just finished)."""
    import shutil

    import streamlit as st

    import core.config
    import core.models.store

    task = task_with_models()
    mid = store.bundled_models(task)[0]
    dest = tmp_path / "models" / task / mid
    dest.mkdir(parents=True)
    for name in ("model.keras", "card.json", "val_predictions.csv"):
        shutil.copy(store.model_dir(task, mid) / name, dest / name)
    card = store.read_card(task, mid)
    card.pop("test", None)
    store.write_card(task, mid, card, root=tmp_path / "models")
    monkeypatch.setattr(core.models.store, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setattr(core.config, "MODELS_DIR", tmp_path / "models")
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = start(task)
        assert "not yet evaluated on test" in "\n".join(df.value.to_string() for df in at.dataframe)
        for page in ("predict", "threshold", "compare", "review"):
            at.switch_page(f"app_pages/{page}.py").run()
            assert not at.exception, (page, [e.message for e in at.exception])
        assert "Validation (95% CI)" in at.switch_page("app_pages/threshold.py").run().table[0].value.columns
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


def test_home_shows_patient_level_intervals_from_the_cards():
    at = start()
    frames = iter(df.value for df in at.dataframe if "CV AUC" in df.value.columns)  # each task's "All figures" table
    for name in [t for t in TASKS if store.bundled_models(t)]:
        frame = next(frames)  # one table per task with models, rows in registry order
        for (_, row), mid in zip(frame.iterrows(), store.bundled_models(name), strict=True):
            card = store.read_card(name, mid)
            if not card.get("test"):
                continue
            assert row["Model"].startswith(TASKS[name].model(mid).title)
            cv = card.get("cv") or card.get("members_cv")
            d = 4 if cv and cv["complete"] and cv["sd_auc"] < 0.001 else 3
            assert row["CV AUC"] == (f"{cv['mean_auc']:.{d}f} ± {cv['sd_auc']:.{d}f} ({cv['k']}-fold)" if cv and cv["complete"]
                                     else f"{len(cv['folds_done'])} of {cv['k']} folds done" if cv else "—")
            pl = card.get("test_patient_level")
            if pl:
                assert row["Intervals"] == f"patient-level, {pl['n_patients']} patients"
                lo, hi = pl["auc_ci"]
                assert row["AUC (95% CI)"] == f"{card['test']['auc']:.3f} ({lo:.3f}–{hi:.3f})"
            else:
                assert row["Intervals"] == "image-level (no patient ids)"


def test_home_says_how_each_default_was_chosen():
    from core.models.selection import default_choice

    at = start()
    caps = [c.value for c in at.caption if c.value.startswith("**Default model**")]
    tasks = [t for t in TASKS if store.bundled_models(t)]
    assert len(caps) == len(tasks)
    for task, cap in zip(tasks, caps):
        choice = default_choice(task)
        assert f"chosen by {choice.rule}" in cap and choice.note in cap
        if choice.rule.startswith("best on validation"):
            assert "cross-validation is not complete" in cap or "different k" in cap
    for task in tasks:  # a model bundled for comparison only says so, with the reason
        for m in TASKS[task].models:
            if m.not_a_candidate and m.id in store.bundled_models(task):
                assert any(f"*Not a default candidate:* {m.not_a_candidate}." in md.value for md in at.markdown)
