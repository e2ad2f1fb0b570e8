"""Real browser, clinical mode: the technician's cell review (#29) on a whole smear field, driven by the keyboard.

A training field (not the test session) with infected cells is uploaded on Predict; the queued cells are confirmed
(I) or rejected (N) by key, each call shows the next cell, and the confirmed parasitemia counts the confirmed cells
over the field's red cells, "confirmed by" the local user; the calls are in the confirmations store, hashes only.
"""
from __future__ import annotations

import re

from benchmarks.browser import CHROMIUM_ARGS, settle, streamlit_app
from benchmarks.cell_review import open_review, press_to_next, wait_ready
from core import confirmations
from core.config import REPO_ROOT
from tests.e2e.test_browser import _chromium, _metric
from tests.test_cell_review import _field

ARTIFACTS = REPO_ROOT / "artifacts"


def test_queued_cells_are_confirmed_by_key_and_counted(tmp_path):
    from playwright.sync_api import sync_playwright

    file = _field()
    db = tmp_path / "confirmations.sqlite"
    env = {"SECONDLOOK_CONFIRMATIONS": str(db), "SECONDLOOK_AUDIT": str(tmp_path / "audit.sqlite"),
           "SECONDLOOK_RESEARCH": "0"}
    with streamlit_app(tmp_path / "streamlit.log", timeout_s=90, env=env) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            n = open_review(page, srv.url, [file])
            assert n >= 2
            assert _metric(page, "Confirmed result") == "not yet reviewed"
            press_to_next(page, "i", 2)  # cell 1 confirmed infected: cell 2 follows
            for k in range(3, n + 1):
                press_to_next(page, "n", k)
            wait_ready(page)
            page.keyboard.press("n")  # the last queued cell: not infected
            page.get_by_text(f"All {n} queued cells reviewed.", exact=True).wait_for(timeout=30_000)
            settle(page)
            cells = int(_metric(page, "Red cells counted").replace(",", ""))
            assert _metric(page, "Confirmed result") == f"{100 / cells:.2f}%"
            words = page.get_by_text(re.compile(r"^Confirmed: 1 infected of")).inner_text()
            assert f"1 infected of {cells} red cells" in words and "proposed by SecondLook, confirmed by" in words
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "e2e_cell_review.png"))  # git-ignored: shows a dataset field
        finally:
            browser.close()
    rows = confirmations.rows(db=db)
    assert [r["reader_call"] for r in rows] == ["Parasitized"] + ["Uninfected"] * (n - 1)
    assert len({r["cell"] for r in rows}) == n and len({r["case_id"] for r in rows}) == 1
