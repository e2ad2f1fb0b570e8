"""Real-browser end-to-end test: Streamlit server + headless Chromium driven by Playwright.

Starts `streamlit run app.py` on a free localhost port, uploads a real TEST image on Predict, checks the shown
probability against the one core.evaluate wrote to test_predictions.csv, moves the operating-point slider and
sees the decision change. Screenshots go to artifacts/ (git-ignored; they show dataset images).

Runs in CI (CI=true) unconditionally; locally it skips only when Chromium is not installed.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.config import REPO_ROOT
from tests.conftest import IN_CI, require_dataset

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO_ROOT / "artifacts"
LOG = ARTIFACTS / "e2e_streamlit.log"
RERUN_BUDGET_MS = 200  # a slider move must re-render within this (server-side script time, median)


def _chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        if IN_CI:
            pytest.fail(f"CI must have Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"Chromium not installed at {CHROMIUM}; install it with `apt-get install -y chromium`")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "SECONDLOOK_TIMING": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(LOG, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}; see artifacts/e2e_streamlit.log")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("streamlit did not become healthy in 90 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _pick_case():
    """The task/model the sidebar opens with, and a test image whose probability is clear of 0 and 1."""
    from core import store
    from core.data import load_task_manifest
    from core.tasks import TASKS

    task = next((t for t in TASKS if store.bundled_models(t)), None)
    if task is None:
        if IN_CI:
            pytest.fail("no bundled model")
        pytest.skip("no trained model bundled yet")
    require_dataset(task)
    models = store.bundled_models(task)
    mid = TASKS[task].default_model if TASKS[task].default_model in models else models[0]
    preds = store.read_predictions(task, mid, "test")
    man = load_task_manifest(task).set_index("path")
    mid_range = preds[(preds.score > 0.02) & (preds.score < 0.98)]
    row = (mid_range if len(mid_range) else preds).iloc[0]
    return task, mid, man.loc[row.path, "file"], float(row.score)


def _settle(page, timeout=60):
    """Wait until Streamlit has finished the current run."""
    page.wait_for_timeout(300)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(300)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(200)


def _decision(page) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Decision at this operating point")
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_predict_upload_and_slider(server):
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    task, mid, file, csv_score = _pick_case()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server + "/predict")
            page.wait_for_selector('[data-testid="stFileUploader"]', timeout=120_000)
            _settle(page)
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(file)
            exact = page.get_by_text(re.compile(r"Exact model output: [0-9.]+"))
            exact.wait_for(timeout=120_000)
            _settle(page)
            shown = float(re.search(r"([0-9.]+)$", exact.inner_text().strip()).group(1))
            assert abs(shown - csv_score) <= 1e-6, (shown, csv_score)
            before = _decision(page)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "e2e_predict_before.png"))

            # Switch the sidebar to the threshold slider and push it to the far end that flips this image.
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("By threshold").click()
            _settle(page)
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
            _settle(page)
            after = _decision(page)
            assert after != before and after.startswith("Flag") != flagged, (before, after)
            page.screenshot(path=str(ARTIFACTS / "e2e_predict_after.png"))

            # Every slider move re-renders without re-running the model: time a few moves on the server.
            n_before = len(_timings())
            for key in ["ArrowLeft", "ArrowRight"] * 3:
                thumb.press(key)
                _settle(page)
            moves = _timings()[n_before:]
            assert moves, "no timed reruns"
            assert sorted(moves)[len(moves) // 2] < RERUN_BUDGET_MS, moves
        finally:
            browser.close()


def _timings() -> list[float]:
    """Server-side run times (ms) of the Predict page, from the app's SECONDLOOK_TIMING lines."""
    lines = LOG.read_text().splitlines() if LOG.exists() else []
    return [float(m.group(1)) for ln in lines if (m := re.match(r"\[timing\] predict (\d+) ms", ln))]

