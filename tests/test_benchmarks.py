"""Smoke test of the benchmark harness: structure of the results, never timings (targets live in benchmarks/)."""
from __future__ import annotations

import json
import math

from benchmarks.common import clean, stats_ms
from benchmarks.run import format_table
from benchmarks.threshold import TARGET_MS, bench_threshold

STAT_KEYS = {"n", "p50", "p95", "mean", "min", "max"}


def test_threshold_benchmark_structure():
    r = bench_threshold(n_scores=2_000, n_moves=25, grid_size=11, n_tables=4, naive_moves=3, warmup=2)
    assert r["n_scores"] == 2_000
    assert 0 < r["distinct_scores"] <= 2_000
    assert r["target_ms"] == TARGET_MS
    for key, n in (("move", 25), ("table", 4), ("naive_move", 3)):
        assert STAT_KEYS <= set(r[key]), key
        assert r[key]["n"] == n
        assert 0 <= r[key]["min"] <= r[key]["p50"] <= r[key]["p95"] <= r[key]["max"]
    assert r["table"]["grid_size"] == 11
    assert r["counts_agree_with_sklearn"] is True  # the fast path gives scikit-learn's confusion counts
    assert math.isfinite(r["curve_build_ms"]) and math.isfinite(r["naive_speedup_p50"])
    json.dumps(clean(r), allow_nan=False)  # what run.py writes must be strict JSON


def test_stats_and_table_helpers():
    assert stats_ms([])["n"] == 0 and clean(stats_ms([]))["p50"] is None
    s = stats_ms([1.0, 2.0, 3.0, 4.0])
    assert s["p50"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0
    rows = [{"benchmark": "b", "model": "m", "target": "< 5 ms", "measured": "1 ms", "result": "PASS"}]
    text = format_table(rows)
    assert "Benchmark" in text.splitlines()[0] and "PASS" in text.splitlines()[-1]


def test_memory_probe_peak_is_its_own_not_the_parents():
    """ru_maxrss survives fork + exec; the probe must report the peak of its own address space."""
    import subprocess
    import sys

    import numpy as np

    from core.config import REPO_ROOT

    ballast = np.ones(600 * 2**20 // 8)  # the parent holds 600 MB while it starts the child
    code = "from benchmarks.memory_probe import _peak_rss; print(_peak_rss())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert int(out.stdout) < 300 * 2**20, (int(out.stdout), ballast.nbytes)
