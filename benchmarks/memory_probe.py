"""Resident memory of a fresh process with every bundled model loaded and one Grad-CAM run on each.

Run by `benchmarks.run` as a subprocess (so nothing else the benchmark did is counted):

    python -m benchmarks.memory_probe [--models task/id,...]

prints one JSON object: RSS (psutil) after importing TensorFlow/Keras and the app's core modules, after loading
every model, and after one probability + Grad-CAM per model (a real test image when the dataset is present,
else a mid-grey image), plus the process's peak RSS (ru_maxrss). Being a fresh process, it also times the cold
start: importing TensorFlow/Keras/core, loading each model, and its first probability and first Grad-CAM.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

TARGET_BYTES = 2_000_000_000  # "< 2 GB"


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    """This process's peak RSS. Linux: VmHWM, which belongs to the address space and so starts afresh at exec;
    ru_maxrss does not (it carries the parent's peak over fork + exec: 2.15 GB reported under benchmarks.run
    for a process that never exceeded 0.96 GB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak * (1 if sys.platform == "darwin" else 1024))


def probe(models: list[tuple[str, str]]) -> dict:
    """Also times the cold start of a fresh process (what the app pays on its first scored image)."""
    out = {"rss_start_bytes": _rss()}
    t0 = time.perf_counter()
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    from core.inference import explain
    from core.inference.forward import predict_tensors
    from core.inference.preprocess import prepare
    from core.io.images import read_image
    from core.models import store
    from core.registry import get_model_spec

    from .common import test_split

    out["import_tensorflow_keras_core_s"] = time.perf_counter() - t0
    out["rss_after_imports_bytes"] = _rss()
    loaded, cold = {}, {}
    for task, mid in models:
        t0 = time.perf_counter()
        loaded[(task, mid)] = store.load_model(task, mid)
        cold[f"{task}/{mid}"] = {"load_model_s": time.perf_counter() - t0}
    out["rss_after_load_bytes"] = _rss()
    import numpy as np

    for (task, mid), model in loaded.items():
        spec = get_model_spec(task, mid)
        test = test_split(task)
        if test is not None and len(test):
            pixels = read_image(test["file"].iloc[0])
        else:
            pixels = np.full((spec.input.size, spec.input.size), 128, np.uint8)
        x = prepare(pixels, spec.input)
        t0 = time.perf_counter()
        predict_tensors(model, x[None])
        t1 = time.perf_counter()
        explain.gradcam(model, x)
        t2 = time.perf_counter()
        cold[f"{task}/{mid}"].update({"first_predict_s": t1 - t0, "first_gradcam_s": t2 - t1})
    out["rss_after_gradcam_bytes"] = _rss()
    out["cold_start"] = cold
    out["peak_rss_bytes"] = _peak_rss()
    out["models"] = [f"{t}/{m}" for t, m in models]
    out["target_bytes"] = TARGET_BYTES
    return out


def main(argv: list[str] | None = None) -> int:
    from .common import select_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="task/id,... (default: every bundled model)")
    args = ap.parse_args(argv)
    print(json.dumps(probe(select_models(args.models))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
