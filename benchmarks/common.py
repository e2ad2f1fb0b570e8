"""Shared helpers: timing statistics, machine description, model selection and test images."""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from core.config import REPO_ROOT

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def stats_ms(samples_ms) -> dict:
    """n, p50, p95, mean, min, max of a list of milliseconds (NaNs when empty)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "mean": nan, "min": nan, "max": nan}
    return {
        "n": int(a.size),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def time_calls(fn: Callable[[int], object], warmup: int, reps: int) -> list[float]:
    """Call fn(i) `warmup` times untimed, then `reps` times; wall milliseconds of each timed call."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def busy_processes(min_cpu: float = 20.0, interval: float = 1.0) -> list[dict]:
    """Other processes using more than `min_cpu` % CPU over `interval` s: who else is competing for the cores."""
    try:
        import psutil
    except ImportError:
        return []
    me = os.getpid()
    procs = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if p.pid != me:
                p.cpu_percent(None)
                procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    time.sleep(interval)
    out = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
            if cpu >= min_cpu:
                cmd = " ".join(p.cmdline()[:6])[:100]
                out.append({"pid": p.pid, "cpu_percent": round(cpu, 1), "command": cmd or p.info["name"]})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sorted(out, key=lambda d: -d["cpu_percent"])


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    import keras
    import tensorflow as tf

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        import psutil

        mem_total = int(psutil.virtual_memory().total)
    except ImportError:
        mem_total = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "memory_total_bytes": mem_total,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty_files": len([line for line in _git("status", "--porcelain", "--untracked-files=no").splitlines() if line]),
        "secondlook_data": os.environ.get("SECONDLOOK_DATA", ""),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def all_bundled(root=None) -> list[tuple[str, str]]:
    from core.models import store
    from core.registry import TASKS

    return [(t, m) for t in TASKS for m in store.bundled_models(t, root)]


def select_models(spec: str | None, root=None) -> list[tuple[str, str]]:
    """`None` -> every bundled model; else 'task/id,task/id' (each must be bundled)."""
    bundled = all_bundled(root)
    if not spec:
        return bundled
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if "/" not in item:
            raise SystemExit(f"--models: expected task/model_id, got {item!r}")
        task, mid = item.split("/", 1)
        if (task, mid) not in bundled:
            have = ", ".join(f"{t}/{m}" for t, m in bundled) or "none"
            raise SystemExit(f"--models: {item} is not a bundled model (bundled: {have})")
        out.append((task, mid))
    return out


def test_split(task: str):
    """The task's test split from its manifest (columns include path, label, file), or None without the dataset."""
    from core.config import dataset_available
    from core.data import load_task_manifest

    if not dataset_available(task):
        return None
    man = load_task_manifest(task)
    return man[man["split"] == "test"].reset_index(drop=True)


def varied_examples(test, labels: tuple[str, str], k: int, seed: int = 0) -> list[str]:
    """k test files, alternating between the two classes, chosen reproducibly."""
    rng = np.random.default_rng(seed)
    per = []
    for label in labels:
        files = test.loc[test["label"] == label, "file"].tolist()
        per.append([files[i] for i in rng.permutation(len(files))[: math.ceil(k / 2)]])
    out = [f for pair in zip(*per) for f in pair]
    return out[:k] if len(out) >= k else (out + [f for p in per for f in p if f not in out])[:k]


def clean(o):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return o


def format_table(rows: list[dict]) -> str:
    cols = [("benchmark", "Benchmark"), ("model", "Model"), ("target", "Target"), ("measured", "Measured"), ("result", "Result")]
    widths = {k: max(len(h), *(len(str(r[k])) for r in rows)) if rows else len(h) for k, h in cols}
    line = "  ".join(h.ljust(widths[k]) for k, h in cols)
    out = [line, "  ".join("-" * widths[k] for k, _ in cols)]
    out += ["  ".join(str(r[k]).ljust(widths[k]) for k, _ in cols) for r in rows]
    return "\n".join(out)
