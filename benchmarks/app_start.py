"""App start-up, measured in a real browser.

Headless Chromium (Playwright) is launched first; then the clock starts and `streamlit run app.py` is started on a
free localhost port (`--server.headless true`). Times are seconds from starting the server process:

* `health_s`: Streamlit's `/_stcore/health` answers 200 (the server listens);
* `home_heading_s` — **"first page served"**: Chromium, which requests the page as soon as the server is healthy,
  shows the Home page's main heading (the `h1` "SecondLook"), i.e. the app script has run and the page has been
  rendered in the browser;
* `home_complete_s`: the Home page has finished its run (its model tables are drawn, no "running" indicator).

The Home page reads only the model cards: **no model is loaded at start** (models are loaded lazily,
`st.cache_resource`, by the first page that scores an image). So the time to a first result with a model loaded
is measured too: Chromium then opens the Predict page and presses "Try an example" (a test image);
`first_probability_s` is when the probability ("Exact model output: ...") is shown, and
`predict_click_to_probability_s` the part after the click (model load + TensorFlow warm-up + scoring + Grad-CAM).

Server RSS (psutil, process and children) is sampled after Home and after the first probability. The server is
always terminated at the end (`finally`).
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

from core.config import REPO_ROOT

from .common import RESULTS_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss(pid: int) -> int | None:
    try:
        import psutil

        p = psutil.Process(pid)
        return int(p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True)))
    except Exception:
        return None


def _settle(page, timeout_s: float = 120.0) -> None:
    """Wait until Streamlit's 'running' status widget has been gone for a moment."""
    deadline = time.time() + timeout_s
    page.wait_for_timeout(200)
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(250)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(100)


def _chromium() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def bench_app(timeout_s: float = 180.0, predict: bool = True) -> dict:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install -r requirements-dev.txt)"}
    exe = _chromium()
    if not exe:
        return {"skipped": f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"}

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / "streamlit.log"
    out: dict = {"definition": "seconds from starting `streamlit run app.py` (see benchmarks/app_start.py)",
                 "models_loaded_at_start": False, "target_s": TARGET_S, "log": str(log_path)}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    proc = None
    with sync_playwright() as pw, open(log_path, "w") as log:
        t_launch = time.perf_counter()
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        out["browser_launch_s"] = time.perf_counter() - t_launch
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            out["server_pid"] = proc.pid
            deadline = t0 + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log_path}")
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"streamlit was not healthy after {timeout_s:.0f} s")
                try:
                    with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)
            out["health_s"] = time.perf_counter() - t0
            page.goto(url, timeout=timeout_s * 1000)
            page.get_by_role("heading", name="SecondLook", level=1).wait_for(state="visible", timeout=timeout_s * 1000)
            out["home_heading_s"] = time.perf_counter() - t0
            _settle(page, timeout_s)
            out["home_complete_s"] = time.perf_counter() - t0
            out["server_rss_after_home_bytes"] = _tree_rss(proc.pid)
            if predict:
                out.update(_first_probability(page, url, t0, timeout_s))
                out["server_rss_after_probability_bytes"] = _tree_rss(proc.pid)
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            browser.close()
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
                out["server_returncode"] = proc.returncode
    return out


def _first_probability(page, url: str, t0: float, timeout_s: float) -> dict:
    res: dict = {}
    t_nav = time.perf_counter()
    page.goto(url + "/predict", timeout=timeout_s * 1000)
    button = page.get_by_role("button", name="Try an example")
    button.wait_for(state="visible", timeout=timeout_s * 1000)
    _settle(page, timeout_s)
    if button.is_disabled():
        res["predict_skipped"] = "no example images (dataset not found and sample_images/ empty)"
        return res
    res["predict_page_ready_s"] = time.perf_counter() - t0
    res["predict_page_load_s"] = time.perf_counter() - t_nav
    t_click = time.perf_counter()
    button.click()
    exact = page.get_by_text(re.compile(r"Exact model output: [0-9.]+"))
    exact.first.wait_for(state="visible", timeout=timeout_s * 1000)
    t_prob = time.perf_counter()
    res["first_probability_s"] = t_prob - t0
    res["predict_click_to_probability_s"] = t_prob - t_click
    res["shown_probability"] = float(re.search(r"([0-9.]+)\s*$", exact.first.inner_text().strip()).group(1))
    res["scored_with"] = _opening_model()
    return res


def _opening_model() -> str:
    """The task/model the sidebar opens with (first task with a bundled model, its default model)."""
    from core import store
    from core.tasks import TASKS

    task = next((t for t in TASKS if store.bundled_models(t)), None)
    if task is None:
        return ""
    models = store.bundled_models(task)
    mid = TASKS[task].default_model if TASKS[task].default_model in models else models[0]
    return f"{task}/{mid}"
