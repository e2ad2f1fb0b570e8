"""AppTest: the Predict page — real test images give core.evaluate's probability; the slider flips decisions live."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data import load_task_manifest
from core.models import store
from core.registry import TASKS
from core.models.selection import default_model
from tests.app_support import (
    exact_probabilities,
    metric,
    need,
    start,
    task_with_models,
    use_threshold,
)
from tests.conftest import require_dataset


def _cases(task: str, model_id: str, n: int = 3):
    """Test images (file, path, csv score) with probabilities clear of 0 and 1, from core.evaluate's CSV; for a chest
    task only films the age-group check places in the task's population (the others get no decision)."""
    from core.inference import population as pop
    from core.io.images import read_image

    preds = store.read_predictions(task, model_id, "test")
    man = load_task_manifest(task).set_index("path")
    if task in pop.TASK_POPULATION:
        keep = [pop.checked(read_image(man.loc[p, "file"])).group == pop.TASK_POPULATION[task] for p in preds.path]
        preds = preds[keep]
    mid = preds[(preds.score > 0.02) & (preds.score < 0.98)]
    rows = (mid if len(mid) >= n else preds).sort_values("score").iloc[np.linspace(0, max(len(mid), n) - 1, n).astype(int)]
    return [(man.loc[r.path, "file"], r.path, float(r.score)) for r in rows.itertuples()]


def _model(task: str) -> str:

    models = store.bundled_models(task)
    return default_model(task) if default_model(task) in models else models[0]


def test_predict_loads():
    task = task_with_models()
    at = start(task, page="predict")
    assert at.title[0].value == "Predict"
    assert at.file_uploader(key="predict_files") is not None


@pytest.mark.parametrize("task", list(TASKS))
def test_uploaded_test_image_matches_core_evaluate_and_slider_flips_decision(task):
    need(bool(store.bundled_models(task)), f"no trained {task} model bundled yet")
    require_dataset(task)
    mid = _model(task)
    file, path, csv_score = _cases(task, mid, 1)[0]
    at = start(task, mid, page="predict")
    data = Path(file).read_bytes()
    mime = "image/jpeg" if file.lower().endswith((".jpg", ".jpeg")) else "image/png"
    at.file_uploader(key="predict_files").set_value((Path(file).name, data, mime)).run()
    assert not at.exception, [e.message for e in at.exception]
    probs = exact_probabilities(at)
    assert len(probs) == 1
    assert abs(probs[0] - csv_score) <= 1e-6, (probs[0], csv_score)
    # decision follows the operating point without re-scoring
    use_threshold(at, 0.0)
    assert metric(at, "Decision").startswith("Flag")
    use_threshold(at, 1.0)
    assert not metric(at, "Decision").startswith("Flag")
    assert exact_probabilities(at) == probs


def test_try_an_example_scores_a_test_image_like_core_evaluate():
    task = task_with_models()
    require_dataset(task)
    mid = _model(task)
    at = start(task, mid, page="predict")
    at.button(key="predict_try").click().run()
    assert not at.exception
    ex = at.session_state["predict_examples"][task][0]
    csv = store.read_predictions(task, mid, "test").set_index("path")["score"]
    probs = exact_probabilities(at)
    assert abs(probs[0] - csv[ex["path"]]) <= 1e-6


def test_worklist_sorted_bad_file_reported_and_others_continue():
    task = task_with_models()
    require_dataset(task)
    mid = _model(task)
    cases = _cases(task, mid, 3)
    files = [(Path(f).name, Path(f).read_bytes(), "image/png") for f, _, _ in cases]
    files.append(("broken.png", b"this is not an image", "image/png"))
    at = start(task, mid, page="predict")
    at.file_uploader(key="predict_files").set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("broken.png" in e.value for e in at.error)
    wl = at.dataframe[0].value
    assert len(wl) == 3
    assert list(wl["probability"]) == sorted(wl["probability"], reverse=True)
    assert np.allclose(sorted(wl["probability"]), sorted(s for _, _, s in cases), atol=1e-6)
    # moving the slider changes decisions in the worklist
    use_threshold(at, 0.0)
    assert at.dataframe[0].value["decision"].str.startswith("Flag").all()
    use_threshold(at, 1.0)
    assert not at.dataframe[0].value["decision"].str.startswith("Flag").any()


def test_dicom_upload_scores_like_the_png_and_keeps_identifiers_out_of_sight():
    from core.inference.population import TASK_POPULATION
    from core.io import images as imageio
    from tests.imagegen import make_dicom

    task = task_with_models()
    require_dataset(task)
    mid = _model(task)
    file, path, csv_score = _cases(task, mid, 1)[0]
    pixels = imageio.read_image(file)
    if pixels.ndim != 2:
        return  # colour cell crops are not DICOM material
    at = start(task, mid, page="predict")
    age = {"child": "003Y", "adult": "045Y"}.get(TASK_POPULATION.get(task), "045Y")  # the task's population
    dcm = make_dicom(pixels, extra={"PatientAge": age})
    at.file_uploader(key="predict_files").set_value(("study.dcm", dcm, "application/dicom")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert abs(exact_probabilities(at)[0] - csv_score) <= 1e-6
    shown = "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)
    assert "Doe^Jane" not in shown  # patient name only inside the on-request expander
    assert any("Patient identifiers" in e.label for e in at.expander)


def test_wrong_kind_of_image_gets_a_plain_warning():
    from core.registry import get_task

    task = next((t for t in ("pneumonia", "effusion") if store.bundled_models(t)), None)
    if task is None:
        task = task_with_models()  # skips/fails with the usual reason
    require_dataset("malaria")
    cell = load_task_manifest("malaria").query("split == 'test'").iloc[0]
    at = start(task, _model(task), page="predict")
    at.file_uploader(key="predict_files").set_value(("cell.png", Path(cell.file).read_bytes(), "image/png")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert get_task(task).modality == "xray"
    assert any("colour image" in w.value for w in at.error)  # withheld: "Not assessed" with the reason


def test_tampered_model_is_refused_with_a_clear_message(monkeypatch):
    """A model file whose checksum differs from its card stops Predict with one readable message."""
    import streamlit as st

    task = task_with_models()
    monkeypatch.setattr(store, "sha256_file", lambda path: "0" * 64)
    st.cache_resource.clear()
    try:
        at = start(task, page="predict")
        assert not at.exception, [e.message for e in at.exception]
        errors = [e.value for e in at.error]
        assert any("does not match its card" in e and "refuses to use it" in e for e in errors), errors
        assert not exact_probabilities(at)
    finally:
        st.cache_resource.clear()
