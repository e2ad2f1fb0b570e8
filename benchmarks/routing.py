"""Routing (issue #28): what recognising an upload's kind and a chest film's population costs on top of the
single-task path, and how the routing decides on every test split.

    python -m benchmarks.routing [--n 40]            (also `make bench`, section routing)

Single-task path (before routing): decode + prepare + the task's default model. Routed path: decode + kind
(modality statistic, size) + the population check (the age-group network) + prepare + the same model. Both on the
same test films, p50 over films, after a warm-up. Rates: every test split routed by kind; every chest test film's
population (children: pneumonia test split; adults: effusion test split).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .common import stats_ms

TARGET_RATIO = 1.25  # routed single image p50 <= 1.25 x the single-task path (aim 1.1)


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def bench_overhead(n: int = 40) -> dict:
    from core.data import load_task_manifest
    from core.inference import population as pop
    from core.inference.decision import input_checks
    from core.inference.forward import predict_tensors
    from core.inference.preprocess import prepare
    from core.inference.routing import kind_of
    from core.io.images import read_image_with_info
    from core.models.selection import default_model
    from core.models.store import load_model
    from core.registry import get_model_spec

    out = {}
    for task in ("pneumonia", "effusion"):
        mid = default_model(task)
        model, spec = load_model(task, mid), get_model_spec(task, mid)
        files = load_task_manifest(task).query("split == 'test'").file.tolist()[:n]
        pop.checker()

        def single(f):
            d = read_image_with_info(f)
            predict_tensors(model, prepare(d.pixels, spec.input)[None])

        def routed(f):
            d = read_image_with_info(f)
            kind_of(d.pixels)
            input_checks(d.pixels, task, d.phi)
            predict_tensors(model, prepare(d.pixels, spec.input)[None])

        for f in files[:3]:
            single(f), routed(f)
        a = [_ms(lambda f=f: single(f)) for f in files]
        b = [_ms(lambda f=f: routed(f)) for f in files]
        sa, sb = stats_ms(a), stats_ms(b)
        out[f"{task}/{mid}"] = {"single_task": sa, "routed": sb, "ratio_p50": sb["p50"] / sa["p50"]}
    return out


def routing_rates() -> dict:
    """Kind on every test split, population on the chest ones (the issue's floors are on these)."""
    import pandas as pd

    from core.config import dataset_available, task_data_dir
    from core.data import load_task_manifest
    from core.inference import population as pop
    from core.inference.routing import kind_of
    from core.io.images import read_image

    expect = {"pneumonia": "radiograph", "effusion": "radiograph", "malaria": "cell", "malaria_fields": "field"}
    out = {}
    for name, kind in expect.items():
        if not dataset_available(name):
            out[name] = {"skipped": "dataset not found under SECONDLOOK_DATA"}
            continue
        if name == "malaria_fields":
            man = pd.read_csv(task_data_dir(name) / "manifest.csv").query("split == 'test'")
            files = [str(task_data_dir(name) / p) for p in man.path]
        else:
            files = load_task_manifest(name).query("split == 'test'").file.tolist()
        kinds, groups = [], []
        for f in files:
            px = read_image(f)
            kinds.append(kind_of(px))
            if name in ("pneumonia", "effusion"):
                groups.append(pop.checked(px).group)
        row = {"n": len(files), "routed_as_expected": float(np.mean([k == kind for k in kinds]))}
        if groups:
            own = {"pneumonia": "child", "effusion": "adult"}[name]
            row.update({g: float(np.mean([x == g for x in groups])) for g in ("child", "adult", "unsure")})
            row["own_population"] = row[own]
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.routing", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40)
    a = ap.parse_args(argv)
    print(json.dumps({"overhead": bench_overhead(a.n), "rates": routing_rates()}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
