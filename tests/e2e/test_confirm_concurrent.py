"""Real browsers: four readers confirm at the same time on one app server and no confirmation is lost (issue #29:
"confirmations under 4 concurrent users (real browsers): 0 lost").

One `streamlit run app.py` with its stores in a temporary SECONDLOOK_HOME; four Chromium browsers in threads, each
uploading its own held-out chest film on Predict. Once all four have their answers they save, together, several
confirmations on each answer (the pneumonia decision, and the effusion answer, withheld for a child's film, or the
other way round): changing their call each time, with a note that names the browser, and, as a reader does, seeing
each call saved before making the next. Afterwards every Save is a row in the confirmations database, with its file's
checksum, the call made and the user. In local single-user mode every session is the same local account, so the note
tells the browsers apart. A failing browser leaves a screenshot in artifacts/ (git-ignored: it shows a dataset film).
"""
from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM_ARGS, settle, streamlit_app
from core import confirmations, users
from core.config import REPO_ROOT
from core.data import samples
from core.models import store
from tests.e2e.test_browser import _chromium

ARTIFACTS = REPO_ROOT / "artifacts"
BROWSERS = 4
SAVES = 3  # per answer, per browser
TASKS = ("pneumonia", "effusion")  # a chest film gets both answers (one of them withheld by population)
LABELS = {"pneumonia": ("NORMAL", "PNEUMONIA"), "effusion": ("NORMAL", "EFFUSION")}


def _films() -> list[tuple[str, str]]:
    """(file, sha256) of four different held-out pneumonia films (the dataset's test split, else the bundle)."""
    found = samples.examples("pneumonia")[:BROWSERS]
    if len(found) < BROWSERS or not all(store.bundled_models(t) for t in TASKS):
        pytest.skip("needs four example films and both chest models")
    return [(e["file"], hashlib.sha256(Path(e["file"]).read_bytes()).hexdigest()) for e in found]


def _confirm_all(url: str, i: int, file: str, sha: str, start: threading.Barrier, errors: list) -> None:
    """One reader: open Predict, upload the film, wait for the others, then save SAVES calls on each answer."""
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            try:
                page.goto(url + "/predict")
                page.wait_for_selector('[data-testid="stFileUploader"]', timeout=180_000)
                settle(page)
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(file)
                for task in TASKS:
                    page.locator(f".st-key-confirm_{task}_{sha[:16]}_pop").wait_for(timeout=300_000)
                settle(page, 120)
                start.wait(timeout=600)  # everyone has their answers: save at the same time
                for task in TASKS:
                    key = f"confirm_{task}_{sha[:16]}"
                    page.locator(f".st-key-{key}_pop button").first.click()
                    page.locator(f".st-key-{key}_save").wait_for(timeout=30_000)
                    for j in range(SAVES):
                        call = LABELS[task][(i + j) % 2]
                        page.locator(f".st-key-{key}_call [data-testid='stRadioOption']").filter(
                            has_text=re.compile(rf"(^|: ){call}$")).click()  # 'Agree: X', 'Disagree: X' or 'X'
                        settle(page)
                        note = page.locator(f".st-key-{key}_note input")
                        note.fill(f"browser-{i} {task} save-{j} {call}")
                        note.press("Enter")
                        settle(page)
                        page.locator(f".st-key-{key}_save button").click()
                        # as a reader does: see this call saved before the next (Streamlit merges interactions sent
                        # while a run is still going, and the last values win)
                        page.locator(f".st-key-{key}_pop [data-testid='stPopoverButton']").filter(
                            has_text=re.compile(rf"Saved: .*\b{call}\b.* · change")).first.wait_for(timeout=120_000)
                        settle(page)
                        if i == 0 and task == TASKS[0] and j == 0:
                            ARTIFACTS.mkdir(exist_ok=True)  # git-ignored: it shows a dataset film
                            page.screenshot(path=str(ARTIFACTS / "e2e_confirm.png"))
                    page.keyboard.press("Escape")
                    settle(page)
            except Exception:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"e2e_confirm_failed_{i}.png"))
                raise
            finally:
                browser.close()
    except Exception as exc:  # reported by the test, with the browser's number
        errors.append((i, repr(exc)))


def test_four_readers_confirming_at_once_lose_nothing(tmp_path):
    films = _films()
    _chromium()
    home = tmp_path / "home"
    db = home / "confirmations.sqlite"
    env = {"SECONDLOOK_HOME": str(home), "SECONDLOOK_CONFIRMATIONS": str(db), "SECONDLOOK_AUDIT": str(home / "audit.sqlite")}
    errors: list = []
    with streamlit_app(tmp_path / "streamlit.log", timeout_s=120, env=env) as srv:
        start = threading.Barrier(BROWSERS)
        threads = [threading.Thread(target=_confirm_all, args=(srv.url, i, f, s, start, errors)) for i, (f, s) in
                   enumerate(films)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(1200)
    assert not errors, errors
    rows = confirmations.rows(db=db)
    want = {(f"browser-{i} {task} save-{j} {LABELS[task][(i + j) % 2]}", films[i][1], task)
            for i in range(BROWSERS) for task in TASKS for j in range(SAVES)}
    got = [(r["note"], r["image_sha256"], r["task"]) for r in rows]
    assert len(rows) == len(want) == BROWSERS * len(TASKS) * SAVES, ("lost", sorted(want - set(got)), "saved", got)
    assert {(r["note"], r["image_sha256"], r["task"]) for r in rows} == want  # each in its own browser's film
    assert all(r["note"].endswith(r["reader_call"]) for r in rows)  # the call that browser made
    assert {r["user_sub"] for r in rows} == {users.local_user().sub}  # local mode: one account for everyone
    last = confirmations.latest(confirmations.to_frame(db=db))
    assert len(last) == BROWSERS * len(TASKS) and all(n.startswith(f"browser-") and f"save-{SAVES - 1}" in n
                                                      for n in last["note"])
