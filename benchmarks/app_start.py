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

`slider_rerun_ms`: the Predict page's server-side run time (the app's `SECONDLOOK_TIMING` lines) for each of six
threshold-slider moves after the first probability: a move re-renders without re-running the model (target: median
<= 200 ms).

Server RSS (psutil, process and children) is sampled after Home and after the first probability. The server is
always terminated at the end (`finally`).
"""
from __future__ import annotations

import re
import time

from .browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    find_chromium,
    opening_model,
    predict_timings,
    settle,
    streamlit_app,
)
from .common import RESULTS_DIR

TARGET_S = 20.0
RERUN_TARGET_MS = 200.0  # a slider move re-renders within this (server-side script time, median)


def _tree_rss(pid: int) -> int | None:
    try:
        import psutil

        p = psutil.Process(pid)
        return int(p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True)))
    except Exception:
        return None


def bench_app(timeout_s: float = 180.0, predict: bool = True) -> dict:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install -r requirements-dev.txt)"}
    exe = find_chromium()
    if not exe:
        return {"skipped": f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"}

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / "streamlit.log"
    out: dict = {"definition": "seconds from starting `streamlit run app.py` (see benchmarks/app_start.py)",
                 "models_loaded_at_start": False, "target_s": TARGET_S, "log": str(log_path)}
    with sync_playwright() as pw:
        t_launch = time.perf_counter()
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        out["browser_launch_s"] = time.perf_counter() - t_launch
        server = None
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            with streamlit_app(log_path, timeout_s, env={"SECONDLOOK_TIMING": "1", "SECONDLOOK_RESEARCH": "1"}) as server:
                out["server_pid"] = server.proc.pid
                out["health_s"] = server.health_s
                page.goto(server.url, timeout=timeout_s * 1000)
                page.get_by_role("heading", name="SecondLook", level=1).wait_for(state="visible", timeout=timeout_s * 1000)
                out["home_heading_s"] = time.perf_counter() - server.t0
                settle(page, timeout_s)
                out["home_complete_s"] = time.perf_counter() - server.t0
                out["server_rss_after_home_bytes"] = _tree_rss(server.proc.pid)
                if predict:
                    out.update(_first_probability(page, server.url, server.t0, timeout_s))
                    if "first_probability_s" in out:
                        out["slider_rerun_ms"] = _slider_moves(page, log_path, timeout_s)
                    out["server_rss_after_probability_bytes"] = _tree_rss(server.proc.pid)
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            browser.close()
            if server is not None:
                out["server_returncode"] = server.proc.returncode
    return out


def _first_probability(page, url: str, t0: float, timeout_s: float) -> dict:
    res: dict = {}
    t_nav = time.perf_counter()
    page.goto(url + "/workbench", timeout=timeout_s * 1000)  # research mode: the workbench page shows the exact output
    button = page.get_by_role("button", name="Try an example")
    button.wait_for(state="visible", timeout=timeout_s * 1000)
    settle(page, timeout_s)
    if button.is_disabled():
        res["predict_skipped"] = "no example images (dataset not found and no bundled samples)"
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
    opening = opening_model()
    res["scored_with"] = "/".join(opening) if opening else ""
    return res


def _slider_moves(page, log_path, timeout_s: float) -> list[float]:
    """Server run times (ms) of six threshold-slider moves on the Predict page, after the first probability.

    Each key press waits for its own timing line (the log is written by the server process)."""
    settle(page, timeout_s)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("By threshold").click()
    settle(page, timeout_s)
    thumb = sidebar.get_by_role("slider", name="Probability threshold")
    n_before = len(predict_timings(log_path))
    for key in ["ArrowLeft", "ArrowRight"] * 3:
        n = len(predict_timings(log_path))
        thumb.focus()
        thumb.press(key)
        settle(page, timeout_s)
        deadline = time.perf_counter() + 15.0
        while len(predict_timings(log_path)) <= n and time.perf_counter() < deadline:
            time.sleep(0.1)
    return predict_timings(log_path)[n_before:]
