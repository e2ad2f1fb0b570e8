"""A real `streamlit run app.py` and the headless Chromium that drives it: shared by the app benchmark and the e2e test."""
from __future__ import annotations

import re

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core.config import REPO_ROOT
from core.models.selection import default_model

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it with apt
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_missing() -> str | None:
    """Why a browser benchmark cannot run here (no Playwright, no Chromium), else None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return None if find_chromium() else "Chromium not installed (apt-get install chromium)"


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Terminate a server we started, and kill it when it does not stop in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    t0: float  # perf_counter() just before the process was started
    health_s: float = float("nan")


@contextmanager
def streamlit_app(log_path: Path, timeout_s: float = 90.0, env: dict | None = None, args: list[str] | None = None,
                  port: int | None = None) -> Iterator[Server]:
    """Start the app on a free localhost port (or `port`, when the caller must know it first, e.g. for a sign-in
    redirect_uri); `args` are extra command-line options (`--secrets.files PATH`); yield once `/_stcore/health`
    answers 200; always stop it."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false", *(args or [])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), **(env or {})}
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(f"http://127.0.0.1:{port}", proc, t0)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with code {proc.returncode}; see {log_path}")
                if time.perf_counter() - t0 > timeout_s:
                    raise TimeoutError(f"streamlit was not healthy after {timeout_s:.0f} s; see {log_path}")
                try:
                    with urllib.request.urlopen(server.url + "/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)
            server.health_s = time.perf_counter() - t0
            yield server
        finally:
            stop_process(proc)


def settle(page, timeout_s: float = 60.0) -> None:
    """Wait until Streamlit's 'running' status widget has been gone for a moment (the current run finished)."""
    deadline = time.time() + timeout_s
    page.wait_for_timeout(250)
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            page.wait_for_timeout(300)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        page.wait_for_timeout(150)


def opening_model() -> tuple[str, str] | None:
    """The task/model the sidebar opens with: the first task with a bundled model, and its default model."""
    from core.models import store
    from core.registry import TASKS

    task = next((t for t in TASKS if store.bundled_models(t)), None)
    if task is None:
        return None
    models = store.bundled_models(task)
    return task, (default_model(task) if default_model(task) in models else models[0])


def predict_timings(log_path: Path) -> list[float]:
    """Server-side run times (ms) of the Predict page, from the app's SECONDLOOK_TIMING lines in the server log."""
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    return [float(m.group(1)) for ln in lines if (m := re.match(r"\[timing\] (?:predict|workbench) (\d+) ms", ln))]


RESIZES = [(1280, 800), (900, 700), (1400, 900), (700, 1000), (1280, 800)]


def resize_while_loading(page, url: str, path: str = "/predict", timeout_s: float = 180.0) -> None:
    """Open `path` and resize the window several times while the first run (TensorFlow import, model loads) is still
    going, as a user does; return once the page has settled (issue #28: this used to flip the sidebar)."""
    page.goto(url + path, wait_until="commit")
    for w, h in RESIZES:
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(150)
    page.get_by_role("button", name="Try an example").first.wait_for(timeout=timeout_s * 1000)
    settle(page, timeout_s)


def sidebar_state(page) -> tuple[str, str]:
    """(the sidebar's threshold caption, the operating-point slider's value) as the user sees them."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    caption = sidebar.get_by_text(re.compile(r"^Threshold ")).first.inner_text().strip()
    return caption, str(sidebar.get_by_role("slider").first.get_attribute("aria-valuenow"))
