"""Page draw times (issue #28: Model comparison drawn in <= 3 s p50, aim 1 s), server side, through Streamlit's
AppTest: the app is started once (research mode), then each page is drawn `reps` times on a fresh session (cold
caches for what belongs to the session) after one warm-up draw that fills the process-wide caches, as a server does
for its second user.

    python -m benchmarks.pages [--reps 5]
"""
from __future__ import annotations

import argparse
import json
import os
import time

from .common import stats_ms

TARGET_MS = {"compare": 3000.0}
AIM_MS = {"compare": 1000.0}


def bench_pages(pages=("compare",), reps: int = 5, task: str = "effusion") -> dict:
    from streamlit.testing.v1 import AppTest

    from core.config import REPO_ROOT

    os.environ["SECONDLOOK_RESEARCH"] = "1"
    out = {}
    try:
        for page in pages:
            times, first = [], None
            for i in range(reps + 1):
                at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=600)
                at.run()
                if at.session_state["task"] != task:
                    at.sidebar.selectbox(key="task").select(task).run()
                t0 = time.perf_counter()
                at.switch_page(f"app_pages/{page}.py").run()
                ms = (time.perf_counter() - t0) * 1000.0
                if at.exception:
                    raise RuntimeError([e.message for e in at.exception])
                if i == 0:
                    first = ms
                else:
                    times.append(ms)
            out[page] = {"task": task, "first_draw_ms": first, "draw_ms": stats_ms(times),
                         "target_ms": TARGET_MS.get(page), "aim_ms": AIM_MS.get(page)}
    finally:
        os.environ.pop("SECONDLOOK_RESEARCH", None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pages", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--task", default="effusion", help="the task whose models are compared (effusion has the most)")
    a = ap.parse_args(argv)
    print(json.dumps(bench_pages(reps=a.reps, task=a.task), indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
