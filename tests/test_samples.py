"""The bundled demo set: what the rule picks, licensed sources only, small, a DICOM that decodes to its source,
used by the app when no dataset is present, and read by no test or training code as data."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from core.config import REPO_ROOT
from core.data import samples
from core.io import read_image, read_image_with_info
from core.registry import TASKS
from tests.conftest import require_dataset

ROOT = samples.SAMPLES_DIR


def _manifest(task: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / task / "manifest.csv", dtype=str)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_bundled_files_are_what_the_rule_picks(task):
    require_dataset(task)
    man = _manifest(task)
    images = man[man["format"] == "as in the dataset"]
    picks = samples.bundle_picks(task)
    assert images["source_path"].tolist() == picks["path"].tolist()
    for row, pick in zip(images.itertuples(), picks.itertuples()):
        data = (ROOT / task / row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert data == open(pick.file, "rb").read(), row.path  # byte for byte the dataset's test image
        assert row.label == pick.label


@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_per_class_from_the_test_split_and_licensed(task):
    man = _manifest(task)
    images = man[man["format"] == "as in the dataset"]
    assert images["label"].value_counts().to_dict() == {label: samples.BUNDLE_PER_CLASS for label in TASKS[task].labels}
    if task == "effusion":  # NIH-named files only; the renamed rxtorax copies have no known licence
        assert not images["source_path"].str.contains("rxtorax").any()
        assert images["source_path"].map(lambda p: re.search(r"/\d{8}_\d{3}\.png$", p) is not None).all()
    attribution = (ROOT / "ATTRIBUTION.md").read_text()
    assert samples.LICENCES[task]["licence"] in attribution and samples.LICENCES[task]["citation"] in attribution
    for p in images["path"]:
        assert f"`{task}/{p}`" in attribution


def test_bundle_is_small_and_holds_no_field_images():
    files = [p for p in ROOT.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= samples.BUNDLE_MAX_BYTES
    assert {p.relative_to(ROOT).parts[0] for p in files} <= {*TASKS, "ATTRIBUTION.md"}  # no malaria_fields


def test_bundled_dicom_decodes_to_its_source_pixels():
    man = _manifest(samples.DICOM_TASK)
    dcm = man[man["format"].str.startswith("DICOM")]
    assert len(dcm) == 1
    row = dcm.iloc[0]
    src = man[(man["source_path"] == row.source_path) & (man["format"] == "as in the dataset")].iloc[0]
    decoded = read_image_with_info(ROOT / samples.DICOM_TASK / row.path)
    assert decoded.format == "DICOM"
    np.testing.assert_array_equal(decoded.pixels, read_image(ROOT / samples.DICOM_TASK / src.path))
    assert "PatientBirthDate" not in decoded.phi and decoded.phi.get("PatientID") in (None, "SECONDLOOK-SAMPLE")


def test_rebuilding_the_bundle_reproduces_it(tmp_path):
    for task in TASKS:
        require_dataset(task)
    samples.write_bundle(tmp_path)
    for p in sorted(ROOT.rglob("*")):
        if p.is_file():
            assert (tmp_path / p.relative_to(ROOT)).read_bytes() == p.read_bytes(), p


def test_app_falls_back_to_the_bundle_without_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_DATA", str(tmp_path))
    for task in TASKS:
        ex = samples.examples(task)
        assert len(ex) >= 4 and all(e["source"].startswith("bundled") for e in ex)
        assert all((ROOT / task).resolve() in __import__("pathlib").Path(e["file"]).resolve().parents for e in ex)


def test_no_test_or_training_code_reads_the_samples_as_data():
    allowed = {REPO_ROOT / "core" / "data" / "samples.py", REPO_ROOT / "core" / "samples.py", REPO_ROOT / "tests" / "test_samples.py",
               REPO_ROOT / "benchmarks" / "screenshots.py"}  # shows a sample in the app for docs/img/, reads no pixels
    for folder in ("core", "tests", "benchmarks"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if path not in allowed:
                text = path.read_text()
                assert "sample_images" not in text and "SAMPLES_DIR" not in text and "bundled_examples" not in text, path


def test_try_an_example_works_on_a_machine_without_the_dataset(tmp_path, monkeypatch):
    """A fresh clone: no dataset, yet Predict's example button scores a bundled test image, said to be one."""
    import streamlit as st

    from core.models import store
    from tests.app_support import exact_probabilities, start, task_with_models

    task = task_with_models()
    monkeypatch.setenv("SECONDLOOK_DATA", str(tmp_path))
    st.cache_data.clear()
    try:
        at = start(task, page="predict")
        assert "bundled samples from the held-out test set" in " ".join(c.value for c in at.caption)
        at.button(key="predict_try").click().run()
        assert not at.exception, [e.message for e in at.exception]
        ex = at.session_state["predict_examples"][task][0]
        assert ex["source"].startswith("bundled")
        mid = at.session_state["model"]
        src = _manifest(task).set_index("path").loc[ex["path"].split(f"sample_images/{task}/", 1)[1], "source_path"]
        csv = store.read_predictions(task, mid, "test").set_index("path")["score"]  # the bundled file IS that test image
        assert abs(exact_probabilities(at)[0] - csv[src]) <= 1e-6
    finally:
        st.cache_data.clear()


def test_every_screenshot_in_docs_shows_a_listed_bundled_sample():
    """docs/img/ holds only screenshots of the bundled samples, each listed in ATTRIBUTION.md."""
    from core.config import REPO_ROOT

    attribution = (ROOT / "ATTRIBUTION.md").read_text()
    shots = sorted(p.name for p in (REPO_ROOT / "docs" / "img").iterdir())
    assert shots == sorted(samples.SCREENSHOTS)
    for name, shown in samples.SCREENSHOTS.items():
        assert (ROOT / shown).is_file() and f"| `docs/img/{name}` | `{shown}` |" in attribution
