"""Sidebar state under a real browser (issue #28): cold starts of the server with the window resized while Predict
loads for the first time; counts the starts after which the sidebar no longer shows the validated operating point.

    python -m benchmarks.state [--starts 10]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

TARGET_FLIPS = 0


def bench_state(starts: int = 10) -> dict:
    from playwright.sync_api import sync_playwright

    from core.models import store
    from core.models.selection import default_model
    from core.registry import TASKS

    from .browser import CHROMIUM_ARGS, find_chromium, resize_while_loading, sidebar_state, streamlit_app

    exe = find_chromium()
    if not exe:
        return {"skipped": "Chromium not installed (apt-get install chromium)"}
    task = next(t for t in TASKS if store.bundled_models(t))
    want = f"Threshold {float(store.read_card(task, default_model(task))['threshold']):.4f} · the model's validated default"
    seen = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(starts):
            with streamlit_app(Path(tmp) / f"s{i}.log", timeout_s=90) as srv, sync_playwright() as p:
                browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    resize_while_loading(page, srv.url)
                    seen.append(sidebar_state(page))
                finally:
                    browser.close()
    flips = sum(caption != want for caption, _ in seen)
    return {"starts": starts, "flips": flips, "expected_caption": want, "seen": seen, "target_flips": TARGET_FLIPS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.state", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=10)
    print(json.dumps(bench_state(ap.parse_args(argv).starts), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
