"""AppTest: withheld decisions and the one-click task switch on Predict; the Site validation page and the
sidebar's site-profile selector."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data import load_task_manifest
from core.models import store
from core.models.selection import default_model
from core.site import profiles
from tests.app_support import metric, need, start, texts
from tests.conftest import require_dataset
from tests.imagegen import encode


@pytest.fixture(autouse=True)
def _site_db(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_SITES", str(tmp_path / "sites.sqlite"))


def _model(task: str) -> str:
    models = store.bundled_models(task)
    return default_model(task) if default_model(task) in models else models[0]


def _chest_task() -> str:
    task = next((t for t in ("pneumonia", "effusion") if store.bundled_models(t)), None)
    need(task is not None, "no chest X-ray model bundled")
    need(bool(store.bundled_models("malaria")), "no malaria model bundled")
    return task


def _test_files(task: str, n: int) -> list[tuple[str, bytes, str]]:
    require_dataset(task)
    df = load_task_manifest(task).query("split == 'test'").head(n)
    return [(Path(f).name, Path(f).read_bytes(), "image/png") for f in df.file]


def test_cell_on_a_chest_task_is_not_assessed_and_one_click_switch_keeps_the_file():
    task = _chest_task()
    at = start(task, _model(task), page="predict")
    at.file_uploader(key="predict_files").set_value(_test_files("malaria", 1)[0]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert metric(at, "Decision") == "Not assessed"
    assert not any(m.label.startswith("Decision at this operating point") for m in at.metric)
    assert any("Not assessed" in e.value and "colour image" in e.value for e in at.error)
    assert not any(m.label.startswith("Model output") for m in at.metric)  # no number unless asked
    at.toggle(key="predict_score_anyway").set_value(True).run()
    assert metric(at, "Model output (outside the model's scope)").endswith("%")
    assert metric(at, "Decision") == "Not assessed"  # scoring anyway never makes a decision
    at.button(key="predict_route_malaria").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["task"] == "malaria"
    assert metric(at, "Decision at this operating point") in ("Flag: Parasitized", "Uninfected")


def test_worklist_withholds_the_radiograph_among_cells():
    need(bool(store.bundled_models("malaria")), "no malaria model bundled")
    files = _test_files("malaria", 2) + _test_files("effusion" if store.bundled_models("effusion") else "pneumonia", 1)
    at = start("malaria", _model("malaria"), page="predict")
    at.file_uploader(key="predict_files").set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    wl = at.dataframe[0].value
    xr = wl[wl["file"] == files[2][0]].iloc[0]
    assert xr["decision"] == "Not assessed" and np.isnan(xr["probability"]) and wl["file"].iloc[-1] == files[2][0]
    assert set(wl["decision"].iloc[:2]) <= {"Flag: Parasitized", "Uninfected"}
    at.toggle(key="predict_score_anyway").set_value(True).run()
    wl = at.dataframe[0].value
    xr = wl[wl["file"] == files[2][0]].iloc[0]
    assert xr["decision"] == "Not assessed" and 0 <= xr["probability"] <= 1
    assert any(b.key and b.key.startswith("predict_route_") for b in at.button)  # the X-ray's tasks are offered


def _cell(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    disc = (y - size / 2) ** 2 + (x - size / 2) ** 2 < (size * 0.4) ** 2
    img = np.zeros((size, size, 3))
    img[disc] = (200 + rng.integers(-20, 20), 120 + rng.integers(-20, 20), 150)
    if seed % 2:
        cy, cx = rng.integers(20, 44, 2)
        img[(y - cy) ** 2 + (x - cx) ** 2 < 25] = (90, 40, 120)
    return np.clip(img + rng.normal(0, 5, img.shape) * disc[..., None], 0, 255).astype(np.uint8)


def test_site_page_builds_saves_and_activates_a_profile():
    need(bool(store.bundled_models("malaria")), "no malaria model bundled")
    mid = _model("malaria")
    at = start("malaria", mid, page="site")
    assert at.title[0].value == "Site validation"
    imgs = [(f"c{i}.png", encode(_cell(i), "PNG"), "image/png") for i in range(44)]
    bad_csv = ("labels.csv", b"path,label\nc0.png,Parasitized\nc1.png,perhaps\n", "text/csv")
    at.file_uploader(key="site_images").set_value(imgs).run()
    at.file_uploader(key="site_labels").set_value(bad_csv).run()
    at.text_input(key="site_name").input("lab-a").run()
    at.button(key="site_evaluate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    err = "\n".join(e.value for e in at.error)
    assert "row 3 ('c1.png'): unknown label 'perhaps'" in err and "image 'c2.png' is not in the labels.csv" in err
    csv = "path,label\n" + "".join(f"c{i}.png,{'Parasitized' if i % 2 else 'Uninfected'}\n" for i in range(44))
    at.file_uploader(key="site_labels").set_value(("labels.csv", csv.encode(), "text/csv")).run()
    at.button(key="site_evaluate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    shown = "\n".join(texts(at))
    assert "44 cases" in shown and "AUC" in shown and "Proposed site operating point" in shown
    assert {"site_new_roc", "site_new_cal"} <= {el.proto.id for el in at.get("plotly_chart")} or len(at.get("plotly_chart")) >= 2
    at.button(key="site_save").click().run()
    assert not at.exception, [e.message for e in at.exception]
    saved = profiles.get("lab-a", "malaria", mid)
    assert at.sidebar.selectbox(key=f"site_sel/malaria/{mid}").value == "lab-a"
    assert at.session_state["op_thresholds"][f"malaria/{mid}"] == pytest.approx(saved.threshold)
    assert any(b.proto.label.startswith("Export profile") for b in at.get("download_button"))
    # Predict shows the site-calibrated probability beside the model's
    at.switch_page("app_pages/predict.py").run()
    at.file_uploader(key="predict_files").set_value(imgs[1]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Site 'lab-a': recalibrated on 44 local cases" in c.value for c in at.caption)
    # choosing "none" in the sidebar goes back to the shipped point
    at.sidebar.selectbox(key=f"site_sel/malaria/{mid}").select("None (shipped operating point)").run()
    assert f"malaria/{mid}" not in at.session_state["op_thresholds"]
