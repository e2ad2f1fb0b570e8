"""Real-browser end-to-end test: Streamlit server + headless Chromium driven by Playwright.

Starts `streamlit run app.py` on a free localhost port, uploads a real TEST image on Predict, checks the shown
probability against the one core.evaluate wrote to test_predictions.csv, moves the operating-point slider and
sees the decision change. Screenshots go to artifacts/ (git-ignored; they show dataset images).

Runs in CI (CI=true) unconditionally; locally it skips only when Chromium is not installed.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    find_chromium,
    opening_model,
    predict_timings,
    settle,
    streamlit_app,
)
from core.config import REPO_ROOT
from tests.conftest import IN_CI, SCORE_TOLERANCE, require_dataset

ARTIFACTS = REPO_ROOT / "artifacts"
LOG = ARTIFACTS / "e2e_streamlit.log"


def _chromium() -> str:
    path = find_chromium()
    if not path:
        if IN_CI:
            pytest.fail(f"CI must have Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"Chromium not installed at {CHROMIUM}; install it with `apt-get install -y chromium`")
    return path


@pytest.fixture(scope="module")
def server():
    # research mode: these tests drive the workbench Predict page (sidebar task and model, exact model output)
    with streamlit_app(LOG, timeout_s=90, env={"SECONDLOOK_TIMING": "1", "SECONDLOOK_RESEARCH": "1"}) as srv:
        yield srv.url


def _pick_case():
    """The task/model the sidebar opens with, and a test image whose probability is clear of 0 and 1."""
    from core.data import load_task_manifest
    from core.models import store

    opening = opening_model()
    if opening is None:
        if IN_CI:
            pytest.fail("no bundled model")
        pytest.skip("no trained model bundled yet")
    task, mid = opening
    require_dataset(task)
    preds = store.read_predictions(task, mid, "test")
    man = load_task_manifest(task).set_index("path")
    mid_range = preds[(preds.score > 0.02) & (preds.score < 0.98)]
    row = (mid_range if len(mid_range) else preds).iloc[0]
    return task, mid, man.loc[row.path, "file"], float(row.score)




def _decision(page) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Decision at this operating point")
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


@contextmanager
def _predict_page(server: str, height: int = 800):
    """Chromium on the Predict page, its uploader ready; closed however the test ends."""
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.goto(server + "/workbench")
            page.wait_for_selector('[data-testid="stFileUploader"]', timeout=120_000)
            settle(page)
            yield page
        finally:
            browser.close()


def test_predict_upload_and_slider(server):
    task, mid, file, csv_score = _pick_case()
    with _predict_page(server) as page:
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(file)
        exact = page.get_by_text(re.compile(r"Exact model output: [0-9.]+"))
        exact.wait_for(timeout=120_000)
        settle(page)
        shown = float(re.search(r"([0-9.]+)$", exact.inner_text().strip()).group(1))
        assert abs(shown - csv_score) <= SCORE_TOLERANCE, (shown, csv_score)
        before = _decision(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e_predict_before.png"))

        # Switch the sidebar to the threshold slider and push it to the far end that flips this image.
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("By threshold").click()
        settle(page)
        thumb = sidebar.get_by_role("slider", name="Probability threshold")
        thumb.focus()
        flagged = before.startswith("Flag")
        thumb.press("End" if flagged else "Home")
        page.wait_for_function(
            """([before]) => {
                const m = [...document.querySelectorAll('[data-testid="stMetric"]')]
                  .find(e => e.innerText.includes('Decision at this operating point'));
                return m && !m.querySelector('[data-testid="stMetricValue"]').innerText.includes(before);
            }""",
            arg=[before], timeout=60_000,
        )
        settle(page)
        after = _decision(page)
        assert after != before and after.startswith("Flag") != flagged, (before, after)
        page.screenshot(path=str(ARTIFACTS / "e2e_predict_after.png"))

        # Every slider move re-renders the page (its speed is measured by `make bench`, section app).
        n_before = len(predict_timings(LOG))
        for key in ["ArrowLeft", "ArrowRight"] * 3:
            thumb.press(key)
            settle(page)
        assert len(predict_timings(LOG)) > n_before, "slider moves did not re-run the page"


def _training_field():
    """A training-split field (session S2/S3, not the test session) that holds infected cells, and its expected
    result from core.fields at the default malaria model's card threshold (what the sidebar opens with)."""
    from core.fields.cuts import read_fields
    from core.fields.screen import screen_field
    from core.io.images import read_image
    from core.registry import get_model_spec
    from core.models.selection import default_model
    from core.models.store import load_model, read_card

    require_dataset("malaria_fields")
    fields, _ = read_fields()
    file = fields[(fields["split"] == "train") & (fields["n_infected"] >= 2)].sort_values("path")["file"].iloc[0]
    mid = default_model("malaria")
    thr = float(read_card("malaria", mid)["threshold"])
    s = screen_field(read_image(file), load_model("malaria", mid), get_model_spec("malaria", mid), Path(file).name)
    return file, mid, s.result(thr, mid)


def _metric(page, label: str) -> str:
    m = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return m.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_field_upload_outlines_and_counts_cells(server):
    """#10: a whole smear field on Predict (malaria) is recognised, outlined and counted as core.fields counts it."""
    file, mid, expected = _training_field()
    with _predict_page(server, height=1000) as page:
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.locator('[data-testid="stSelectbox"]').filter(has_text="Task").click()
        page.get_by_role("option", name=re.compile("^Malaria")).click()
        settle(page)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(file))
        page.get_by_text(re.compile(r"Whole-field screening — 1 field")).wait_for(timeout=180_000)
        page.get_by_text(re.compile(r"most suspicious cells")).wait_for(timeout=180_000)
        settle(page)
        assert _metric(page, "Red cells counted") == f"{expected['n_cells']:,}"
        assert _metric(page, "Infected cells") == f"{expected['n_infected']:,}"
        assert _metric(page, "Parasitemia") == f"{expected['parasitemia']:.2f}%"
        ARTIFACTS.mkdir(exist_ok=True)
        page.mouse.move(5, 5)  # no tooltip over the page
        page.screenshot(path=str(ARTIFACTS / "e2e_field_counts.png"))
        outlined = page.locator('[data-testid="stImage"]').filter(has_text="Every found red cell outlined").first
        outlined.scroll_into_view_if_needed()
        settle(page)
        assert outlined.locator("img").evaluate("i => i.complete && i.naturalWidth") > 0
        page.screenshot(path=str(ARTIFACTS / "e2e_field_outlined.png"))
