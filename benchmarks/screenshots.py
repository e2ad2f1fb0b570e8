"""The README's screenshot, made by driving the real app in Chromium as the browser benchmarks do:

    python -m benchmarks.screenshots            # writes docs/img/predict.png

The app runs without the datasets (SECONDLOOK_DATA points at an empty folder), so everything on screen comes from a
bundled sample listed in sample_images/ATTRIBUTION.md: the adult film `effusion/EFFUSION/00006968_002.png` on the
clinical Predict page, answered for effusion and withheld for (pediatric) pneumonia.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from core.config import REPO_ROOT
from core.data.samples import SCREENSHOTS

from .browser import CHROMIUM_ARGS, find_chromium, settle, streamlit_app

OUT = REPO_ROOT / "docs" / "img" / "predict.png"
SAMPLE = REPO_ROOT / "sample_images" / SCREENSHOTS[OUT.name]  # the bundled sample it shows (ATTRIBUTION.md lists it)


def predict_screenshot(out: Path = OUT, width: int = 1280, height: int = 1000) -> Path:
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if not exe:
        raise SystemExit("Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as empty, streamlit_app(Path(empty) / "s.log", timeout_s=90,
                                                                env={"SECONDLOOK_DATA": empty}) as srv:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(srv.url + "/predict")
                page.wait_for_selector('[data-testid="stFileUploader"]', timeout=180_000)
                settle(page, 120)
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(SAMPLE))
                page.get_by_text(re.compile("Not assessed")).first.wait_for(timeout=180_000)
                settle(page, 120)
                page.locator('[data-testid="stMarkdownContainer"]').filter(has_text=SAMPLE.name).first.scroll_into_view_if_needed()
                page.mouse.move(5, 5)
                settle(page, 30)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
            finally:
                browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.screenshots", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    print(predict_screenshot(ap.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
