"""Sign-in round trip in a real browser, against the test OpenID Connect provider (tests/oidc, issue #30).

    python -m benchmarks.signin [--n 10]            (also `make bench`, section signin)

One provider and one `streamlit run app.py` with an [auth] block pointing at it. Each repetition opens a fresh
browser context (no cookies) on the app's sign-in page (untimed), then times: click "Sign in" -> the provider's
login form -> e-mail and password typed and submitted -> back in the app, first page drawn with the sidebar's
"Signed in as" caption. The first sign-in after the server starts (cold: the Home page's first run) is reported
apart; p50/p90 are over the `n` that follow. Target: p50 <= 3 s.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_MS = 3000.0


def _round_trip(browser, stack, user) -> float:
    from tests.oidc_support import sign_in, signed_in_caption

    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = ctx.new_page()
        page.goto(stack.url + "/")
        page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
        t0 = time.perf_counter()
        sign_in(page, stack, user)
        caption = signed_in_caption(page)
        ms = (time.perf_counter() - t0) * 1000.0
        if user.email not in caption:
            raise RuntimeError(f"signed in as someone else: {caption!r}")
        return ms
    finally:
        ctx.close()


def bench_signin(n: int = 10) -> dict:
    from .browser import CHROMIUM_ARGS, browser_missing, find_chromium

    if why := browser_missing():
        return {"skipped": why}
    import pytest
    from playwright.sync_api import sync_playwright

    from tests.oidc_support import CLINICIAN, require_provider, signin_stack

    exe = find_chromium()
    try:
        require_provider()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # no Node or no npm packages
        return {"skipped": str(exc)}
    with tempfile.TemporaryDirectory() as tmp, signin_stack(Path(tmp)) as stack, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            cold = _round_trip(browser, stack, CLINICIAN)
            times = [_round_trip(browser, stack, CLINICIAN) for _ in range(n)]
        finally:
            browser.close()
    a = np.asarray(times)
    return {"n": n, "cold_ms": cold, "times_ms": times, "p50_ms": float(np.percentile(a, 50)),
            "p90_ms": float(np.percentile(a, 90)), "max_ms": float(a.max()), "target_p50_ms": TARGET_MS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.signin", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10)
    print(json.dumps(bench_signin(ap.parse_args(argv).n), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
