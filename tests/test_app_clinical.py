"""AppTest: the clinical mode a user meets first — one upload box that routes every file to the model validated for
its kind and patient, one model per task, state that moves only by the user's hand and survives navigation."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.data import load_task_manifest
from core.fields import records
from core.inference.population import TRAINED_ON
from core.models import store
from tests.app_support import metric, need, start, texts
from tests.conftest import require_dataset
from tests.imagegen import make_dicom


def _test_file(task: str, i: int = 0) -> str:
    require_dataset(task)
    return load_task_manifest(task).query("split == 'test'").file.iloc[i]


def _upload(at, *files: tuple[str, bytes]):
    at.file_uploader(key="screen_files_0").set_value([(n, d, "application/octet-stream") for n, d in files]).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _clinical(page: str | None = "screen"):
    need(all(store.bundled_models(t) for t in ("pneumonia", "effusion", "malaria")), "every task needs a bundled model")
    return start(page=page, research=False)


def test_clinical_mode_shows_one_model_and_no_research_pages():
    at = _clinical(page=None)
    assert not [s for s in at.sidebar.selectbox if s.key == "model"]  # no model picker
    assert at.sidebar.toggle(key="research").value is False
    assert not any("CV AUC" in str(df.value.columns) for df in at.dataframe)  # no statistical workbench columns
    assert all(len(df.value) == 1 for df in at.dataframe)  # Home: one validated model per task
    with pytest.raises(Exception):
        at.switch_page("app_pages/compare.py").run()
    at.sidebar.toggle(key="research").set_value(True).run()  # the user turns research mode on
    assert [s for s in at.sidebar.selectbox if s.key == "model"] and any(len(df.value) > 1 for df in at.dataframe)


def test_a_childs_film_gets_the_pneumonia_answer_and_the_effusion_answer_withheld():
    f = _test_file("pneumonia")
    at = _upload(_clinical(), (Path(f).name, Path(f).read_bytes()))
    assert metric(at, "Decision") in ("Flag: PNEUMONIA", "NORMAL")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and TRAINED_ON["effusion"] in errors[0] and "Not assessed" in errors[0]


def test_an_adults_dicom_gets_the_effusion_answer_and_the_pneumonia_answer_withheld():
    import numpy as np
    from PIL import Image

    f = _test_file("effusion")
    img = np.asarray(Image.open(f).convert("L"))
    at = _upload(_clinical(), ("adult.dcm", make_dicom(img, extra={"PatientAge": "054Y"})))
    assert metric(at, "Decision") in ("Flag: EFFUSION", "NORMAL")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and TRAINED_ON["pneumonia"] in errors[0] and "54 years" in errors[0]
    assert any("test images" in t or "validation images" in t for t in texts(at))  # honest numbers beside it


def test_a_field_is_screened_with_the_field_model_at_its_field_point():
    import pandas as pd

    from core.config import task_data_dir

    require_dataset("malaria_fields")
    fields = pd.read_csv(task_data_dir("malaria_fields") / "manifest.csv").query("split == 'test'")
    path = task_data_dir("malaria_fields") / fields.path.iloc[0]
    at = _upload(_clinical(), (path.name, path.read_bytes()))
    fm = records.field_model()
    thr, _ = records.field_threshold(fm)
    assert any(f"{thr:.4f}" in t and "Whole fields" in t for t in texts(at))
    assert at.metric[0].label == "Red cells counted" and int(at.metric[0].value.replace(",", "")) > 50


def test_uploads_and_results_survive_navigation_and_reruns():
    f = _test_file("pneumonia", 1)
    at = _upload(_clinical(), (Path(f).name, Path(f).read_bytes()))
    before = metric(at, "Probability")
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/screen.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert metric(at, "Probability") == before
    for _ in range(3):
        at.run()
    assert metric(at, "Probability") == before
    assert any("validated default" in c.value for c in at.sidebar.caption)
    assert not any("changed by you" in c.value for c in at.sidebar.caption)


def test_the_operating_point_changes_only_by_the_users_hand():
    at = _clinical(page=None)
    model_before = at.session_state["model"]
    shown = at.sidebar.slider(key="op_sens").value
    at.session_state["op_sens"] = 50.0  # a widget value that moved without its callback (e.g. a reset widget)
    at.run()
    assert at.sidebar.slider(key="op_sens").value == shown != 50.0  # put back from the state the user set
    assert not any("changed by you" in c.value for c in at.sidebar.caption)
    assert at.session_state["model"] == model_before
    at.sidebar.slider(key="op_sens").set_value(99.0).run()  # the user's hand
    assert any("changed by you" in c.value for c in at.sidebar.caption)
    assert at.sidebar.slider(key="op_sens").value == 99.0
