"""The technician's cell review in a real browser (issue #29): confirm or reject a queued cell, by its key, until the
next queued cell is shown; p50 over about 20 cells (target <= 300 ms, aim <= 150 ms).

    python -m benchmarks.cell_review [--cells 20]

`streamlit run app.py` in clinical mode (the default) with its confirmations in a temporary file; headless Chromium
uploads validation fields (session S3 of `train`, never the test session: the fields with the most annotated
infected cells, enough for the queue to hold `cells` + 1 cells) on Predict, then presses I and N in turn. Each time is
measured in the page: from the keydown event to the frame painted once the next cell's label ("Cell k of n in the
queue") is in the document. The review panel is a fragment, so a call reruns it alone.
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

TARGET_MS = 300.0
AIM_MS = 150.0
QUICK_DWELL_MS = 300.0  # a quick reader: the key 300 ms after the cell is shown
LABEL = re.compile(r"Cell (\d+) of (\d+) in the queue")
TIMING = re.compile(r"\[timing\] cell_review (\d+) ms")

# In the page: `__armLabel(k)` starts waiting for the label "Cell k of"; the next keydown starts the clock; the result
# (ms) is in `window.__labelMs` once the label is in the document and a frame has been painted after it.
_TIMER_JS = """() => {
  if (window.__armLabel) return;
  document.addEventListener('keydown', () => { if (window.__t0 === null) window.__t0 = performance.now(); }, true);
  window.__armLabel = (k) => {
    window.__t0 = null; window.__labelMs = null;
    const want = `Cell ${k} of `;
    const seen = () => [...document.querySelectorAll('[data-testid="stMarkdownContainer"] strong')]
      .some(e => e.textContent.startsWith(want) && !e.closest('[data-stale="true"]'));
    const obs = new MutationObserver(() => {
      if (window.__t0 !== null && seen()) {
        obs.disconnect();
        requestAnimationFrame(() => setTimeout(() => { window.__labelMs = performance.now() - window.__t0; }, 0));
      }
    });
    obs.observe(document.body, {subtree: true, childList: true, characterData: true});
  };
}"""


def review_fields(cells: int) -> list[Path]:
    """Validation fields with the most annotated infected cells, enough for about `cells` + 1 queued cells."""
    from core.fields.cuts import STOP_SESSIONS, read_fields

    fields, _ = read_fields()
    val = fields[fields["session"].isin(STOP_SESSIONS)].sort_values(["n_infected", "path"], ascending=[False, True])
    need = int(1.5 * (cells + 1))  # about 0.87 of the infected cells reach the queue (review.json, validation)
    picked, total = [], 0
    for file, n in zip(val["file"], val["n_infected"]):
        if total >= need:
            break
        picked.append(Path(file))
        total += int(n)
    return picked


def open_review(page, url: str, files: list[Path], timeout_s: float = 300.0) -> int:
    """Predict (clinical mode) with `files` uploaded, until the first queued cell is shown; the queue's length."""
    from .browser import settle

    page.goto(url + "/predict")
    page.wait_for_selector('[data-testid="stFileUploader"]', timeout=timeout_s * 1000)
    settle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(f) for f in files])
    label = page.get_by_text(LABEL).first
    label.wait_for(timeout=timeout_s * 1000)
    settle(page, timeout_s)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # keys go to the page, not a box
    page.evaluate(_TIMER_JS)
    return int(LABEL.search(label.inner_text()).group(2))


_READY_JS = """() => !document.querySelector('[data-stale="true"]') && [...document.querySelectorAll('button')]
  .some(b => b.innerText.includes('Confirm infected') && !b.disabled)"""


def wait_ready(page, timeout_s: float = 30.0) -> None:
    """Until the shown cell's panel run is over (nothing stale on the page) and its buttons take keys."""
    page.wait_for_function(_READY_JS, timeout=timeout_s * 1000)


def press_to_next(page, key: str, k: int, ready: bool = True, timeout_s: float = 30.0) -> float:
    """Once the shown cell's buttons are drawn (its run is over), press `key` and wait for the label of queued cell
    `k`; milliseconds from the keydown to the frame that shows it."""
    if ready:
        wait_ready(page, timeout_s)
    page.evaluate("k => window.__armLabel(k)", k)
    page.keyboard.press(key)
    page.wait_for_function("() => window.__labelMs !== null", timeout=timeout_s * 1000)
    return float(page.evaluate("() => window.__labelMs"))


def _lost_or_ms(page, key: str, k: int, dwell_ms: float) -> float | None:
    """Press `key` `dwell_ms` after cell k-1 appeared, as a quick reader does, without waiting for the panel's run to
    end; None when the key met the previous cell's buttons and moved nothing (nothing is kept for a cell not shown)."""
    from playwright.sync_api import TimeoutError as Timeout

    page.wait_for_timeout(dwell_ms)
    try:
        return press_to_next(page, key, k, ready=False, timeout_s=5)
    except Timeout:
        return None


def bench_cell_review(cells: int = 20, quick_cells: int = 10) -> dict:
    """`cells` keyboard calls, I and N in turn, each pressed once the shown cell's panel run is over: p50, p95 and
    each time (ms); then `quick_cells` more pressed `QUICK_DWELL_MS` after the cell appears, whatever the server is
    doing; and the server's own run time of the panel (SECONDLOOK_TIMING lines)."""
    from .browser import CHROMIUM_ARGS, browser_missing, find_chromium, settle, streamlit_app
    from .common import stats_ms

    if why := browser_missing():
        return {"skipped": why}
    import time

    from playwright.sync_api import sync_playwright

    from core.fields.cuts import fields_available

    exe = find_chromium()
    if not fields_available():
        return {"skipped": "malaria_fields not found under SECONDLOOK_DATA"}
    files = review_fields(cells + quick_cells)
    times, ready, quick = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"SECONDLOOK_CONFIRMATIONS": str(Path(tmp) / "confirmations.sqlite"), "SECONDLOOK_TIMING": "1",
               "SECONDLOOK_AUDIT": str(Path(tmp) / "audit.sqlite"), "SECONDLOOK_RESEARCH": "0"}
        log = Path(tmp) / "streamlit.log"
        with streamlit_app(log, timeout_s=90, env=env) as srv, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                n = open_review(page, srv.url, files)
                k = 1
                for _ in range(min(cells, n - 1)):
                    t0 = time.perf_counter()
                    wait_ready(page)
                    ready.append(1000 * (time.perf_counter() - t0))
                    k += 1
                    times.append(press_to_next(page, "i" if k % 2 else "n", k))
                settle(page)
                while len(quick) < quick_cells and k < n:
                    ms = _lost_or_ms(page, "i" if (k + 1) % 2 else "n", k + 1, QUICK_DWELL_MS)
                    quick.append(ms)
                    k += ms is not None
            finally:
                browser.close()
        server = [float(m.group(1)) for ln in log.read_text().splitlines() if (m := TIMING.match(ln))]
    s, q = stats_ms(times), stats_ms([v for v in quick if v is not None])
    return {"n_fields": len(files), "queue": n, "n": s["n"], "p50_ms": s["p50"], "p95_ms": s["p95"], "max_ms": s["max"],
            "times_ms": times, "ready_after_label_ms": stats_ms(ready[1:])["p50"],
            "quick_dwell_ms": QUICK_DWELL_MS, "quick_p50_ms": q["p50"], "quick_times_ms": quick,
            "quick_keys_lost": sum(v is None for v in quick), "server_run_ms": stats_ms(server[1:])["p50"],
            "target_ms": TARGET_MS, "aim_ms": AIM_MS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cell_review", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--quick-cells", type=int, default=10)
    a = ap.parse_args(argv)
    print(json.dumps(bench_cell_review(a.cells, a.quick_cells), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
