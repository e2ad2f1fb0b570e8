"""Scale benchmarks (issue #13): batch engines, Ray, a 10,000-file folder with corrupt files, onnxruntime vs TF.

    .venv/bin/python -m benchmarks.scale [--quick] [--out benchmarks/results/scale.json]
    (also the `scale` section of `python -m benchmarks.run`)

Measured, each in one run so the ratios share the machine's state:
  embedded   core.batch's local engine (which also runs the modality check and hashes every file) vs
             core.inference.forward.score_sources on the whole malaria test split per run (target >= 0.95x), runs
             ABBA-interleaved so contention hits both alike; total wall time and CPU time
  ray        core.batch's Ray engine on a local Ray (2 CPUs) vs the embedded engine end to end on 10,000 real cells
             (target >= 0.7x; each run loads its model: the Ray run in its actors, which also import TensorFlow; the
             embedded one in-process; also reported against an embedded run handed a loaded model); the first job
             on a just-started Ray, which also starts Ray Data's own actors, reported apart; the steady state after
             the first batch, the same on the 1,865-file test split (start-up dominates), Ray start-up (ray.init) on
             its own; scores compared
  stages     per-image cost of each stage, one thread: read+sha256, decode+check+prepare, score (batches of 128)
  corrupt    a 10,000-file folder of small PNGs drawn here, 1% corrupt: completes, every file one row
  onnx       for every bundled model: onnxruntime (core.export.onnx_engine) vs the traced TF graph
             (core.inference.forward.predict_tensors), one image and batches of 128, interleaved; max |diff|
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import RESULTS_DIR, all_bundled, clean, load_average, machine_info, test_split

EMBEDDED_TARGET, RAY_TARGET = 0.95, 0.7
RAY_ARCHIVE_FILES = 10_000  # an archive job, not a demo: Ray's fixed start-up (~12 s here) is paid once per job
BATCH_TASK, BATCH_MODEL = "malaria", "secondlook_cnn"  # 1,865 real test cells: the archive-screening case
SECTIONS = ("embedded", "ray", "stages", "corrupt", "onnx")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _timed_cpu(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench_embedded(model, files: list[str], repeats: int, slice_size: int | None = None) -> dict:
    """score_sources vs run_batch(engine='local') on the same files, ABBA-interleaved runs of `slice_size` files
    (default: all of them, i.e. the whole test split per run: a batch run pays its fixed costs, the card, the output
    file and the worker pool, once per run, as an archive job does); wall and CPU time.
    """
    slice_size = slice_size or len(files)
    from core.batch import run_batch
    from core.inference.forward import score_sources
    from core.registry import get_model_spec

    spec = get_model_spec(BATCH_TASK, BATCH_MODEL).input
    score_sources(model, spec, files[:256])  # warm-up: graph traced
    n_slices = max(2, 2 * repeats * max(1, len(files) // slice_size))
    wall = {"score_sources": 0.0, "batch": 0.0}
    cpu = {"score_sources": 0.0, "batch": 0.0}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        def run_src(part):
            return _timed_cpu(lambda: score_sources(model, spec, part))

        def run_bat(part, i):  # the files as a manifest CSV, as an archive job names them
            out, manifest = Path(tmp) / f"run{i}.csv", Path(tmp) / f"files{i}.csv"
            manifest.write_text("path\n" + "\n".join(part) + "\n")
            return _timed_cpu(lambda: run_batch(BATCH_TASK, [str(manifest)], str(out), BATCH_MODEL, progress=False,
                                                model=model))

        for i in range(n_slices):
            lo = (i * slice_size) % max(1, len(files) - slice_size + 1)
            part = files[lo : lo + slice_size]
            if i % 2 == 0:
                a, b = run_src(part), run_bat(part, i)
            else:
                b, a = run_bat(part, i), run_src(part)
            wall["score_sources"] += a[0]
            wall["batch"] += b[0]
            cpu["score_sources"] += a[1]
            cpu["batch"] += b[1]
            ratios.append(a[0] / b[0])
    n = n_slices * min(slice_size, len(files))
    return {"n_files_scored_each": n, "slices": n_slices, "slice_size": slice_size, "wall_s": wall, "cpu_s": cpu,
            "score_sources_files_per_s": n / wall["score_sources"], "batch_local_files_per_s": n / wall["batch"],
            "ratio_batch_over_score_sources": wall["score_sources"] / wall["batch"],
            "cpu_ratio_score_sources_over_batch": cpu["score_sources"] / cpu["batch"],
            "per_slice_ratios": ratios, "median_slice_ratio": float(np.median(ratios))}


def archive_files(n: int) -> list[str]:
    """`n` distinct real cell images (every split of the malaria dataset: speed only, no metric is computed)."""
    from core.config import dataset_available
    from core.data import load_task_manifest

    if not dataset_available(BATCH_TASK):
        return []
    return sorted(load_task_manifest(BATCH_TASK)["file"].unique().tolist())[:n]


def bench_ray(model, files: list[str], repeats: int) -> dict:
    """Local Ray (2 CPUs): start-up, then the Ray engine vs the embedded engine on the same files, end to end
    (each Ray run starts its scoring actors, loads the model and traces it, as a real job does)."""
    import ray

    from core.batch import run_batch
    from core.batch.output import read_rows
    from core.batch.ray_engine import connect

    res: dict = {"n_files": len(files)}
    if ray.is_initialized():
        ray.shutdown()
    _, res["ray_init_s"] = connect(None, 2)
    try:
        ray_s, emb_s, warm_s, timings = [], [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            # run 0 is the first job on the just-started Ray: it also starts Ray Data's own actors (~5 s here), once
            # per cluster; it is reported apart, and the ratio is over the jobs after it (a running cluster's case)
            for r in range(repeats + 1):
                s = run_batch(BATCH_TASK, files, f"{tmp}/ray{r}.csv", BATCH_MODEL, progress=False, engine="ray")
                ray_s.append(s.seconds)
                timings.append(s.timings)
                # like for like: the embedded run loads and traces its model, as each Ray run's actors do (still in
                # a process that has imported TensorFlow, which a Ray actor pays for: 4.5 s here)
                emb_s.append(run_batch(BATCH_TASK, files, f"{tmp}/emb{r}.csv", BATCH_MODEL, progress=False).seconds)
                warm_s.append(run_batch(BATCH_TASK, files, f"{tmp}/warm{r}.csv", BATCH_MODEL, progress=False,
                                        model=model).seconds)  # handed a loaded, traced model: the most it can be
            a = {r["file"]: r["probability"] for r in read_rows(f"{tmp}/ray0.csv")}
            b = {r["file"]: r["probability"] for r in read_rows(f"{tmp}/emb0.csv")}
        first_job = {"ray_s": ray_s[0], "embedded_s": emb_s[0], "ratio": emb_s[0] / ray_s[0], "timings": timings[0]}
        ray_s, emb_s, warm_s, timings = ray_s[1:], emb_s[1:], warm_s[1:], timings[1:]
        res.update(ray_s=ray_s, embedded_s=emb_s, embedded_warm_model_s=warm_s, ray_stage_timings=timings,
                   ray_files_per_s=len(files) / statistics.median(ray_s),
                   embedded_files_per_s=len(files) / statistics.median(emb_s),
                   ratio_ray_over_embedded=statistics.median(emb_s) / statistics.median(ray_s),
                   ratio_ray_over_embedded_warm_model=statistics.median(warm_s) / statistics.median(ray_s),
                   first_job_on_a_new_ray=first_job, ratio_first_run=first_job["ratio"],
                   same_files=sorted(a) == sorted(b),
                   max_abs_diff=max(abs(a[f] - b[f]) for f in a) if a and sorted(a) == sorted(b) else None)
    finally:
        ray.shutdown()
    return res


def bench_stages(task: str, mid: str, files: list[str]) -> dict:
    """Per-image milliseconds of each stage on one thread (what one worker core costs per image)."""
    from core.batch._core import input_spec, prepare_bytes, read_hashed
    from core.inference.forward import predict_tensors
    from core.models.store import load_model

    spec = input_spec(task, mid)
    model = load_model(task, mid)
    t0 = time.perf_counter()
    blobs = [read_hashed(f) for f in files]
    read_ms = (time.perf_counter() - t0) * 1000 / len(files)
    t0 = time.perf_counter()
    x = np.stack([prepare_bytes(d, f, spec, task)[0] for f, (_, d, _) in zip(files, blobs)])
    prep_ms = (time.perf_counter() - t0) * 1000 / len(files)
    predict_tensors(model, x[:128])
    t0 = time.perf_counter()
    predict_tensors(model, x)
    score_ms = (time.perf_counter() - t0) * 1000 / len(files)
    return {"task": task, "model": mid, "n": len(files), "read_sha256_ms": read_ms, "decode_prepare_ms": prep_ms,
            "score_ms_batch128_all_cores": score_ms, "mean_file_bytes": float(np.mean([len(d) for _, d, _ in blobs]))}


def _tiny_png(rng, side: int = 48) -> bytes:
    from PIL import Image

    base = np.linspace(0, 255, side, dtype=np.float32)[None, :, None] * np.ones((side, 1, 3), np.float32)
    arr = np.clip(base + rng.normal(0, 20, size=(side, side, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def bench_corrupt_folder(model, n: int = 10_000, corrupt_fraction: float = 0.01) -> dict:
    """n small PNGs drawn here (1% truncated or garbage) in nested folders: one row per file, errors for the bad ones."""
    from core.batch import run_batch
    from core.batch.output import read_rows

    rng = np.random.default_rng(0)
    n_bad = int(round(n * corrupt_fraction))
    bad = set(rng.choice(n, n_bad, replace=False).tolist())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i in range(n):
            d = Path(tmp, "archive", f"{i // 1000:02d}")
            d.mkdir(parents=True, exist_ok=True)
            data = _tiny_png(rng)
            if i in bad:
                data = data[: len(data) // 3] if i % 2 else rng.bytes(200)
            (d / f"img{i:05d}.png").write_bytes(data)
        make_s = time.perf_counter() - t0
        out = Path(tmp, "out.csv")
        s = run_batch(BATCH_TASK, [str(Path(tmp, "archive"))], str(out), BATCH_MODEL, progress=False, model=model)
        rows = read_rows(out)
        errors = sum(not r["ok"] for r in rows)
        names = [Path(r["file"]).name for r in rows]
    return {"n_files": n, "n_corrupt": n_bad, "make_s": make_s, "batch_s": s.seconds, "rows": len(rows),
            "unique_files_in_rows": len(set(names)), "error_rows": errors, "files_per_s": n / s.seconds,
            "every_file_one_row": len(rows) == n and len(set(names)) == n and errors == n_bad}


def bench_onnx(models: list[tuple[str, str]], single_reps: int, batch_reps: int) -> dict:
    """onnxruntime vs the traced TF graph on prepared tensors, one image and batches of 128, interleaved."""
    from core.export.onnx_engine import predict_tensors_onnx
    from core.inference.forward import predict_tensors
    from core.models.store import load_model

    out = {}
    for task, mid in models:
        key = f"{task}/{mid}"
        _log(f"[scale/onnx] {key} ...")
        model = load_model(task, mid)
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        x = np.random.default_rng(0).normal(size=(128, *shape)).astype(np.float32)
        t0 = time.perf_counter()
        b = predict_tensors_onnx(model, x)  # converts (tf2onnx) and warms up
        convert_s = time.perf_counter() - t0
        a = predict_tensors(model, x)
        single = {"tf": [], "onnx": []}
        batch = {"tf": [], "onnx": []}
        fns = {"tf": predict_tensors, "onnx": predict_tensors_onnx}
        for i in range(single_reps):
            for k, f in fns.items():
                single[k].append(_timed(lambda: f(model, x[i % 128 : i % 128 + 1])) * 1000)
        for _ in range(batch_reps):
            for k, f in fns.items():
                batch[k].append(128 / _timed(lambda: f(model, x)))
        r = {"convert_s": convert_s, "max_abs_diff": float(np.abs(a - b).max()),
             "single_ms_p50": {k: float(np.median(v)) for k, v in single.items()},
             "batch_images_per_s": {k: float(np.median(v)) for k, v in batch.items()}}
        r["single_speedup_onnx"] = r["single_ms_p50"]["tf"] / r["single_ms_p50"]["onnx"]
        r["batch_speedup_onnx"] = r["batch_images_per_s"]["onnx"] / r["batch_images_per_s"]["tf"]
        out[key] = r
    return out


def run(rows: list, quick: bool = False, sections=SECTIONS, models=None) -> dict:
    """All scale measurements; appends table rows (benchmark, model, target, measured, result) to `rows`."""
    from core.models.store import load_model

    def row(bench, model, target, measured, status):
        rows.append({"benchmark": bench, "model": model, "target": target, "measured": measured, "result": status})

    res: dict = {}
    key = f"{BATCH_TASK}/{BATCH_MODEL}"
    test = test_split(BATCH_TASK)
    need_data = {"embedded", "ray", "stages"} & set(sections)
    if test is None and need_data:
        row("Scale: batch engines", key, "-", "malaria dataset not found under SECONDLOOK_DATA", "SKIP")
        sections = [s for s in sections if s not in need_data]
    files = test["file"].tolist() if test is not None else []
    model = load_model(BATCH_TASK, BATCH_MODEL)
    reps = 1 if quick else 3
    if "embedded" in sections:
        _log(f"[scale/embedded] {len(files)} files x {reps} ...")
        e = res["embedded"] = bench_embedded(model, files, reps)
        row(f"Scale: core.batch local vs score_sources ({e['slices']} runs x {e['slice_size']} test files)", key,
            f">= {EMBEDDED_TARGET}x",
            f"{e['ratio_batch_over_score_sources']:.2f}x ({e['batch_local_files_per_s']:,.0f} vs "
            f"{e['score_sources_files_per_s']:,.0f} files/s; median slice {e['median_slice_ratio']:.2f}x; "
            f"CPU time {e['cpu_ratio_score_sources_over_batch']:.2f}x)", "PASS" if e["ratio_batch_over_score_sources"] >= EMBEDDED_TARGET else "MISS")
    if "ray" in sections:
        archive = archive_files(2_000 if quick else RAY_ARCHIVE_FILES)
        _log(f"[scale/ray] local Ray, {len(archive)} files x {reps} ...")
        r = res["ray"] = bench_ray(model, archive, 1 if quick else 3)
        row(f"Scale: Ray engine vs embedded, end to end (local Ray, 2 CPUs, {len(archive):,} cells)", key,
            f">= {RAY_TARGET}x",
            f"{r['ratio_ray_over_embedded']:.2f}x ({r['ray_files_per_s']:,.0f} vs {r['embedded_files_per_s']:,.0f} files/s; "
            f"each run loads its model; the first job on a just-started Ray {r['ratio_first_run']:.2f}x)",
            "PASS" if r["ratio_ray_over_embedded"] >= RAY_TARGET else "MISS")
        row("  Ray vs an embedded run handed an already loaded model", key, "reported",
            f"{r['ratio_ray_over_embedded_warm_model']:.2f}x", "INFO")
        if not quick:
            _log(f"[scale/ray] local Ray, the {len(files)}-file test split x {reps} ...")
            small = res["ray_test_split"] = bench_ray(model, files, 2)
            row(f"  Ray vs embedded on a short job ({len(files):,} test files: start-up dominates)", key, "reported",
                f"{small['ratio_ray_over_embedded']:.2f}x ({small['ray_files_per_s']:,.0f} vs "
                f"{small['embedded_files_per_s']:,.0f} files/s)", "INFO")
        steady = [t.get("steady_files_per_s") for t in r["ray_stage_timings"] if t.get("steady_files_per_s")]
        first = [t.get("first_result_s") for t in r["ray_stage_timings"] if t.get("first_result_s")]
        if steady:
            r["steady_ratio_ray_over_embedded"] = statistics.median(steady) / r["embedded_files_per_s"]
            row("  Ray steady state (after the first scored batch) vs embedded", key, "reported",
                f"{r['steady_ratio_ray_over_embedded']:.2f}x ({statistics.median(steady):,.0f} files/s; first batch after "
                f"{statistics.median(first):.1f} s: actor start, model load, trace)", "INFO")
        row("  Ray local start-up (ray.init)", "", "reported", f"{r['ray_init_s']:.1f} s", "INFO")
        same = r["same_files"] and r["max_abs_diff"] is not None and r["max_abs_diff"] <= 1e-6
        row("  Ray scores vs embedded", key, "max |diff| <= 1e-6",
            f"max |diff| {r['max_abs_diff']}", "PASS" if same else "MISS")
    if "stages" in sections:
        res["stages"] = []
        for task, mid in ((BATCH_TASK, BATCH_MODEL), ("pneumonia", "secondlook_cnn"), ("effusion", "secondlook_cnn")):
            t = test_split(task)
            if t is None:
                continue
            st = bench_stages(task, mid, t["file"].tolist()[: 150 if quick else 400])
            res["stages"].append(st)
            row("  stage cost per image: read+sha256 / decode+check+prepare (1 thread) / score", f"{task}/{mid}", "-",
                f"{st['read_sha256_ms']:.2f} / {st['decode_prepare_ms']:.2f} / {st['score_ms_batch128_all_cores']:.2f} ms",
                "INFO")
    if "corrupt" in sections:
        n = 2_000 if quick else 10_000
        _log(f"[scale/corrupt] {n}-file folder, 1% corrupt ...")
        c = res["corrupt"] = bench_corrupt_folder(model, n)
        row(f"Scale: {n:,}-file folder, 1% corrupt", key, "completes, one row per file",
            f"{c['rows']:,} rows, {c['error_rows']} errors (of {c['n_corrupt']} corrupt), {c['files_per_s']:,.0f} files/s",
            "PASS" if c["every_file_one_row"] else "MISS")
    if "onnx" in sections:
        chosen = models if models is not None else all_bundled()
        o = res["onnx"] = bench_onnx(chosen, 10 if quick else 40, 2 if quick else 5)
        for k, v in o.items():
            row("Scale: onnxruntime vs TF graph, single (p50) / batch 128", k, "reported",
                f"{v['single_ms_p50']['onnx']:.1f} vs {v['single_ms_p50']['tf']:.1f} ms ({v['single_speedup_onnx']:.2f}x) / "
                f"{v['batch_images_per_s']['onnx']:,.0f} vs {v['batch_images_per_s']['tf']:,.0f} img/s "
                f"({v['batch_speedup_onnx']:.2f}x); max |diff| {v['max_abs_diff']:.1e}", "INFO")
    return res


def main(argv: list[str] | None = None) -> int:
    from .common import format_table

    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--models", help="onnx section: task/id,task/id (default: every bundled model)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "scale.json"))
    a = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    models = [tuple(m.split("/", 1)) for m in a.models.split(",")] if a.models else None
    meta = machine_info()
    meta["load_average_start"] = load_average()
    rows: list = []
    res = run(rows, a.quick, sections, models)
    meta["load_average_end"] = load_average()
    print(f"SecondLook scale benchmarks {meta['date']} {meta['cpu_count']} CPUs load average start "
          f"{meta['load_average_start']} end {meta['load_average_end']}")
    print(format_table(rows))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(clean({"meta": meta, "results": res, "table": rows}), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
