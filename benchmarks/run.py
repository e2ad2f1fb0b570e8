"""SecondLook benchmarks: speed and memory against the project's targets.

    make bench                                   # = .venv/bin/python -m benchmarks.run
    .venv/bin/python -m benchmarks.run --quick   # few repetitions: checks the harness end to end (~2-3 min)
    .venv/bin/python -m benchmarks.run --models malaria/secondlook_cnn,pneumonia/secondlook_cnn --sections single,batch

Needs the datasets (SECONDLOOK_DATA, for real test images) and, for the app-start section, Chromium at
/usr/bin/chromium with Playwright. Prints a table (target, measured, PASS/MISS) and writes all raw numbers with the
machine description to benchmarks/results/latest.json (git-ignored; `--out` to choose another file).

Sections (all by default):
  threshold  operating-point update for 100,000 scores: counts + rates per slider move and operating_table for a
             1001-point grid (target < 5 ms, judged on p95), against scikit-learn recomputed on every move
  intervals  patient-level CIs: card summary (AUC, rates, ECE, Brier) and paired AUC difference by cluster bootstrap,
             2,000 resamples of 2,000 images from 100 patients (target < 2 s each, judged on p50)
  single     per model: decode (encoded bytes of real test images) + prepare + probability + Grad-CAM,
             p50/p95 after warm-up (target p50 <= 60 ms); cold first image; Keras model.predict() per image
  batch      per model: core.inference.forward.score_sources on the whole test split (target >= 1,000 images/s for the
             64x64 cell models, >= 250 for X-ray models); model-only throughput on prepared tensors; outputs
             checked against the stored test_predictions.csv
  memory     RSS of a fresh process with every selected model loaded and one Grad-CAM each (target < 2 GB)
  fields     whole-field screening (malaria): one field decoded, cells found and scored, outlined picture (p50
             <= 500 ms, aim 250), and the memory a 20-field case adds (<= 300 MB); validation fields only
  state      10 cold starts of the app in Chromium, window resized while Predict loads: sidebar changes with no
             user action (target 0): benchmarks/state.py
  pages      Model comparison drawn (server side, AppTest), p50 <= 3 s after one warm-up draw: benchmarks/pages.py
  routing    single image with routing (kind + the age-group check) vs the single-task path (<= 1.25x p50); the
             kind of every test split (>= 99%) and the population of the chest ones: benchmarks/routing.py
  handoff    PDF report and SC + SR for one image, Orthanc fetch + score + send round trip, audit writes
             (single p95; 4 concurrent writers x 500 rows, none lost): see benchmarks/handoff.py
  scale      benchmarks/scale.py (issue #13): core.batch embedded vs score_sources, Ray vs embedded + Ray start-up,
             stage costs, a 10,000-file folder with 1% corrupt files, onnxruntime vs the TF graph for every model
  cellreview the technician's cell review in Chromium (#29): a queued cell confirmed or rejected by its key -> the
             next cell's label shown, p50 over 20 cells (<= 300 ms, aim 150); validation fields: benchmarks/cell_review.py
  app        `streamlit run app.py` -> Home page heading shown in headless Chromium (target < 20 s); the app loads
             no model at start, so also the time until Predict shows a probability for an example
  signin     sign-in round trip in Chromium against the test OpenID Connect provider (tests/oidc): "Sign in" -> the
             provider's form -> first page with "Signed in as", fresh context each, p50 <= 3 s: benchmarks/signin.py

Numbers are only meaningful on an otherwise idle machine: the load average and any busy processes at start and
end are recorded, and the table says when the machine was busy.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import (
    RESULTS_DIR,
    busy_processes,
    clean,
    format_table,
    load_average,
    machine_info,
    select_models,
    test_split,
)

SECTIONS = ("threshold", "intervals", "single", "batch", "memory", "app", "state", "pages", "fields", "routing", "handoff", "scale", "signin",
            "cellreview")
FULL = {"single_warmup": 5, "single_reps": 50, "naive_reps": 20, "batch_repeats": 3,
        "moves": 2000, "tables": 200, "naive_moves": 50}
QUICK = {"single_warmup": 2, "single_reps": 10, "naive_reps": 5, "batch_repeats": 1,
         "moves": 300, "tables": 30, "naive_moves": 8}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _row(rows: list, bench: str, model: str, target: str, measured: str, status: str) -> None:
    rows.append({"benchmark": bench, "model": model, "target": target, "measured": measured, "result": status})


def _ok(flag: bool) -> str:
    return "PASS" if flag else "MISS"


def _ms(v: float) -> str:
    return f"{v:.3f} ms" if v < 1 else f"{v:.1f} ms"


# ------------------------------------------------------------------------------------------------ sections


def run_threshold(p: dict, rows: list) -> dict:
    from .threshold import TARGET_MS, bench_threshold

    _log("[threshold] 100,000 scores ...")
    r = bench_threshold(n_moves=p["moves"], n_tables=p["tables"], naive_moves=p["naive_moves"])
    m, t, nv = r["move"], r["table"], r["naive_move"]
    label = f"{r['n_scores']:,} scores"
    _row(rows, "Operating point: counts + rates per slider move (p95)", label, f"< {TARGET_MS:g} ms",
         f"{_ms(m['p95'])} (p50 {_ms(m['p50'])}, n={m['n']})", _ok(m["p95"] < TARGET_MS))
    _row(rows, f"Operating point: operating_table, {t['grid_size']}-point grid (p95)", label, f"< {TARGET_MS:g} ms",
         f"{_ms(t['p95'])} (p50 {_ms(t['p50'])})", _ok(t["p95"] < TARGET_MS))
    _row(rows, "  naive: scikit-learn metrics recomputed per move (p50)", label, "-",
         f"{_ms(nv['p50'])} = {r['naive_speedup_p50']:,.0f}x the curve; same counts: {r['counts_agree_with_sklearn']}",
         "INFO")
    _row(rows, "  OperatingCurve.from_scores (once per prediction set)", label, "-", _ms(r["curve_build_ms"]), "INFO")
    return r


def run_intervals(p: dict, rows: list) -> dict:
    from .intervals import TARGET_MS, bench_intervals

    _log("[intervals] 2,000 resamples of 2,000 images ...")
    r = bench_intervals(reps=2 if p is QUICK else 5)
    label = f"{r['n_images']:,} images, {r['n_patients']} patients"
    for key, name in (("summary_ms", "Patient-level card summary, 2,000 resamples (p50)"),
                      ("paired_auc_ms", "Paired AUC difference, 2,000 resamples (p50)")):
        _row(rows, name, label, f"< {TARGET_MS / 1000:g} s", _ms(r[key]["p50"]), _ok(r[key]["p50"] < TARGET_MS))
    _row(rows, "  rates at a new threshold, 2,000 resamples (p50)", label, "-", _ms(r["rates_at_threshold_ms"]["p50"]), "INFO")
    return r


def run_models(models: list, sections: set, p: dict, rows: list) -> dict:
    from core.models import store

    from .models import SINGLE_TARGET_MS, bench_batch, bench_single, member_ratio

    out = {}
    for task, mid in models:
        key = f"{task}/{mid}"
        test = test_split(task)
        if test is None or not len(test):
            out[key] = {"skipped": f"dataset for {task} not found under SECONDLOOK_DATA"}
            _row(rows, "Single image / batch", key, "-", out[key]["skipped"], "SKIP")
            continue
        _log(f"[models] {key}: loading ...")
        t0 = time.perf_counter()
        model = store.load_model(task, mid)
        res: dict = {"load_s": time.perf_counter() - t0}
        if "single" in sections:
            _log(f"[single] {key} ...")
            s = bench_single(task, mid, model, test, p["single_warmup"], p["single_reps"], p["naive_reps"])
            res["single"] = s
            tot, st = s["total"], s["stages"]
            _row(rows, "Single image: decode+prepare+predict+Grad-CAM (p50)", key, f"<= {SINGLE_TARGET_MS:g} ms",
                 f"{_ms(tot['p50'])} (p95 {_ms(tot['p95'])}; decode {st['decode']['p50']:.1f} / prep "
                 f"{st['prepare']['p50']:.1f} / predict {st['predict']['p50']:.1f} / cam {st['gradcam']['p50']:.1f})",
                 _ok(tot["p50"] <= SINGLE_TARGET_MS))
            cs = s["cold_stages_ms"]
            _row(rows, "  cold: first image after loading the model", key, "-",
                 f"{_ms(s['cold_first_image_ms'])} (predict {cs['predict']:.0f} / Grad-CAM {cs['gradcam']:.0f})", "INFO")
            app = s["app_score_bytes"]
            if "p50" in app:
                _row(rows, "  app's scoring.score_bytes (+guards, thumbnails) (p50)", key, "-",
                     f"{_ms(app['p50'])} (p95 {_ms(app['p95'])})", "INFO")
            _row(rows, "  naive: model.predict(x[None]) per image (p50)", key, "-",
                 f"{_ms(s['naive_model_predict']['p50'])} vs predict_tensors {_ms(s['fast_predict_tensors']['p50'])}"
                 f" = {s['naive_over_fast_p50']:.1f}x (eager model(x): {_ms(s['eager_model_call']['p50'])})", "INFO")
        if "batch" in sections:
            _log(f"[batch] {key}: {len(test)} test images ...")
            b = bench_batch(task, mid, model, test, p["batch_repeats"])
            res["batch"] = b
            tgt = b["target_images_per_s"]
            _row(rows, f"Batch: score_sources on the test split (n={b['n_images']})", key,
                 f">= {tgt:,.0f} img/s" if tgt else f"vs {b['member']} (below)",
                 f"{b['images_per_s']:,.0f} img/s (best {b['images_per_s_best']:,.0f}; first pass {b['first_pass_images_per_s']:,.0f})",
                 _ok(b["images_per_s"] >= tgt) if tgt else "INFO")
            _row(rows, "  model only, prepared tensors / decode+prepare only", key, "-",
                 f"{b['model_only_images_per_s']:,.0f} / {b['decode_prepare_images_per_s']:,.0f} img/s", "INFO")
            chk = b["matches_stored_test_predictions"]
            if chk is not None:
                _row(rows, f"  scores match stored test_predictions.csv (within {chk['tolerance']:g})", key, "0 differ",
                     f"{chk['n_different']} of {chk['n']} differ (max {chk['max_abs_diff']:.1e}; "
                     f"{chk['n_not_bitwise']} not bitwise)", _ok(chk["n_different"] == 0))
        out[key] = res
        del model
        gc.collect()
    if "batch" in sections:
        _fold_ensemble_ratios(models, out, p, rows, bench_batch, member_ratio)
    return out


def _fold_ensemble_ratios(models: list, out: dict, p: dict, rows: list, bench_batch, member_ratio) -> None:
    """Each fold ensemble's throughput as a ratio to its single member (measured here when it was not selected)."""
    from core.models import store

    for task, mid in models:
        b = out.get(f"{task}/{mid}", {}).get("batch")
        if not b or not b.get("member"):
            continue
        mkey = f"{task}/{b['member']}"
        member = out.get(mkey, {}).get("batch")
        if member is None and b["member"] in store.bundled_models(task):
            _log(f"[batch] {mkey}: the single member, for the ratio ...")
            member = bench_batch(task, b["member"], store.load_model(task, b["member"]), test_split(task),
                                 p["batch_repeats"])
        if member is None:
            continue
        r = member_ratio(b, member)
        out[f"{task}/{mid}"]["member_ratio"] = r
        k = store.read_card(task, mid).get("members_cv", {}).get("k", "k")
        _row(rows, "Batch: fold ensemble / its single member (cost of averaging)", f"{task}/{mid}", f"~1/{k}",
             f"{r['ratio']:.2f}x ({r['ensemble_images_per_s']:,.0f} vs {r['member_images_per_s']:,.0f} img/s)", "INFO")


def run_memory(models: list, rows: list) -> dict:
    from .memory_probe import TARGET_BYTES

    _log("[memory] fresh process, every model loaded + one Grad-CAM each ...")
    spec = ",".join(f"{t}/{m}" for t, m in models)
    cmd = [sys.executable, "-m", "benchmarks.memory_probe"] + (["--models", spec] if spec else [])
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        r = {"error": f"memory probe exited {proc.returncode}: {proc.stderr[-800:]}"}
        _row(rows, "Memory: all models + one Grad-CAM each (RSS)", f"{len(models)} models", "< 2 GB", r["error"][:80], "MISS")
        return r
    r = json.loads(lines[-1])
    rss = r["rss_after_gradcam_bytes"]
    _row(rows, "Memory: all models loaded + one Grad-CAM each (RSS)", f"{len(models)} models",
         f"< {TARGET_BYTES / 1e9:g} GB",
         f"{rss / 1e9:.2f} GB (TF+Keras imports alone {r['rss_after_imports_bytes'] / 1e9:.2f} GB; peak {r['peak_rss_bytes'] / 1e9:.2f})",
         _ok(rss < TARGET_BYTES))
    for key, c in r.get("cold_start", {}).items():
        _row(rows, "  cold start in a fresh process: load / first predict / first Grad-CAM", key, "-",
             f"{c['load_model_s']:.2f} / {c['first_predict_s']:.2f} / {c['first_gradcam_s']:.2f} s "
             f"(imports {r['import_tensorflow_keras_core_s']:.1f} s once)", "INFO")
    return r


def run_app(rows: list) -> dict:
    import statistics

    from .app_start import RERUN_TARGET_MS, TARGET_S, bench_app

    _log("[app] streamlit run app.py + headless Chromium ...")
    r = bench_app()
    if "skipped" in r:
        _row(rows, "App start", "", f"< {TARGET_S:g} s", r["skipped"], "SKIP")
        return r
    if "home_heading_s" in r:
        _row(rows, "App: first page served (Home h1 shown in Chromium)", "", f"< {TARGET_S:g} s",
             f"{r['home_heading_s']:.1f} s (healthy {r['health_s']:.1f} s; page complete {r.get('home_complete_s', float('nan')):.1f} s)",
             _ok(r["home_heading_s"] < TARGET_S))
        _row(rows, "  models loaded at start?", "", "-", "no: Home reads model cards only; models load on first use", "INFO")
    if "first_probability_s" in r:
        _row(rows, "App: first probability on Predict (model loaded)", r.get("scored_with", ""), f"< {TARGET_S:g} s",
             f"{r['first_probability_s']:.1f} s (click -> probability {r['predict_click_to_probability_s']:.1f} s)",
             _ok(r["first_probability_s"] < TARGET_S))
    elif "predict_skipped" in r:
        _row(rows, "App: first probability on Predict", "", f"< {TARGET_S:g} s", r["predict_skipped"], "SKIP")
    if r.get("slider_rerun_ms"):
        med = statistics.median(r["slider_rerun_ms"])
        _row(rows, "App: threshold-slider move re-renders Predict (server run, median of 6)", r.get("scored_with", ""),
             f"<= {RERUN_TARGET_MS:g} ms", f"{med:.0f} ms (moves {', '.join(f'{v:.0f}' for v in r['slider_rerun_ms'])})",
             _ok(med <= RERUN_TARGET_MS))
    if r.get("server_rss_after_probability_bytes"):
        _row(rows, "  app server RSS after Home / after first probability", "", "-",
             f"{(r.get('server_rss_after_home_bytes') or 0) / 1e9:.2f} / {r['server_rss_after_probability_bytes'] / 1e9:.2f} GB",
             "INFO")
    if "error" in r:
        _row(rows, "App start", "", f"< {TARGET_S:g} s", r["error"][:100], "MISS")
    return r


def run_state(rows: list, starts: int) -> dict:
    """Cold starts with window resizes during the first load: the sidebar must keep the validated point."""
    from .state import TARGET_FLIPS, bench_state

    _log(f"[state] {starts} cold starts of the app, window resized while Predict loads ...")
    r = bench_state(starts)
    if "skipped" in r:
        _row(rows, "Sidebar changes with no user action (cold starts + resizes)", "", f"{TARGET_FLIPS}", r["skipped"], "SKIP")
        return r
    _row(rows, f"Sidebar changes with no user action ({r['starts']} cold starts + resizes)", "", f"{TARGET_FLIPS}",
         f"{r['flips']} of {r['starts']}", _ok(r["flips"] <= TARGET_FLIPS))
    return r


def run_pages(rows: list, reps: int) -> dict:
    """Server-side draw time of the heavy pages (Model comparison), AppTest, after one warm-up draw."""
    from .pages import bench_pages

    _log("[pages] Model comparison draw time ...")
    out = bench_pages(reps=reps)
    for page, r in out.items():
        d = r["draw_ms"]
        _row(rows, f"Page drawn: {page} ({r['task']}, every model), p50", "", f"<= {r['target_ms'] / 1000:g} s",
             f"{d['p50'] / 1000:.2f} s (p95 {d['p95'] / 1000:.2f} s; first draw {r['first_draw_ms'] / 1000:.2f} s)",
             _ok(d["p50"] <= r["target_ms"]))
    return out


def run_routing(rows: list, n: int) -> dict:
    """Routing (#28): the single-image cost of recognising the kind and the population, and the routing rates."""
    from .routing import TARGET_RATIO, bench_overhead, routing_rates

    _log("[routing] single image routed vs single-task path; kind and population on every test split ...")
    out = {"overhead": bench_overhead(n), "rates": routing_rates()}
    for key, r in out["overhead"].items():
        _row(rows, "Single image, routing included, p50 vs single-task path", key, f"<= {TARGET_RATIO:g}x",
             f"{r['ratio_p50']:.2f}x ({r['routed']['p50']:.1f} vs {r['single_task']['p50']:.1f} ms)",
             _ok(r["ratio_p50"] <= TARGET_RATIO))
    floors = {"pneumonia": ("own_population", 0.99), "effusion": ("own_population", 0.95)}
    for name, r in out["rates"].items():
        if "skipped" in r:
            _row(rows, "Routing by kind", name, ">= 99%", r["skipped"], "SKIP")
            continue
        _row(rows, "Routing by kind (cell / field / radiograph), test split", name, ">= 99%",
             f"{r['routed_as_expected']:.2%} of {r['n']}", _ok(r["routed_as_expected"] >= 0.99))
        if name in floors:
            key, floor = floors[name]
            other = "adult" if name == "pneumonia" else "child"
            _row(rows, "Population check: own population, test split", name, f">= {floor:.0%}",
                 f"{r[key]:.2%} ({r[other]:.2%} called {other}, {r['unsure']:.2%} unsure)", _ok(r[key] >= floor))
    return out


def run_signin(rows: list, n: int) -> dict:
    """Sign-in round trip in a browser against the test identity provider (#30)."""
    from .signin import TARGET_MS, bench_signin

    _log(f"[signin] {n} sign-ins through the test OpenID Connect provider's form ...")
    r = bench_signin(n)
    name = "Sign-in round trip: Sign in -> provider form -> first page signed in (p50)"
    if "skipped" in r:
        _row(rows, name, "", f"<= {TARGET_MS / 1000:g} s", r["skipped"][:100], "SKIP")
        return r
    _row(rows, name, "", f"<= {TARGET_MS / 1000:g} s",
         f"{r['p50_ms']:.0f} ms (p90 {r['p90_ms']:.0f} ms, n={r['n']}; first after start {r['cold_ms']:.0f} ms)",
         _ok(r["p50_ms"] <= TARGET_MS))
    return r


def run_cell_review(rows: list, cells: int) -> dict:
    """Keyboard calls in the cell review (#29): key press -> the next queued cell shown, in Chromium."""
    from .cell_review import AIM_MS, TARGET_MS, bench_cell_review

    _log(f"[cellreview] {cells} queued cells confirmed or rejected by key in Chromium ...")
    r = bench_cell_review(cells)
    name = "Cell review: key (confirm / not infected) -> next queued cell shown (p50)"
    if "skipped" in r:
        _row(rows, name, "", f"<= {TARGET_MS:g} ms", r["skipped"][:100], "SKIP")
        return r
    _row(rows, name, f"{r['n_fields']} fields", f"<= {TARGET_MS:g} ms (aim {AIM_MS:g})",
         f"{_ms(r['p50_ms'])} (p95 {_ms(r['p95_ms'])}, n={r['n']}; panel run on the server {_ms(r['server_run_ms'])})",
         _ok(r["p50_ms"] <= TARGET_MS))
    _row(rows, f"  key {r['quick_dwell_ms']:.0f} ms after a cell shows, before the app is idle (p50)", "", "-",
         f"{_ms(r['quick_p50_ms'])} ({r['quick_keys_lost']} key(s) lost); idle {_ms(r['ready_after_label_ms'])} after a "
         "cell shows", "INFO")
    return r


def run_fields(rows: list, reps: int) -> dict:
    from core.fields.cuts import fields_available

    from .fields import CASE_TARGET_BYTES, FIELD_AIM_MS, FIELD_TARGET_MS, bench_fields

    if not fields_available():
        _row(rows, "Whole field: decode + find + score + outline (p50)", "", f"<= {FIELD_TARGET_MS:g} ms",
             "malaria_fields not found under SECONDLOOK_DATA", "SKIP")
        return {"skipped": "malaria_fields not found"}
    _log("[fields] whole-field screening ...")
    r = bench_fields(reps=reps)
    t = r["total"]
    _row(rows, "Whole field: decode + find + score + outline (p50)", f"malaria/{r['model']}",
         f"<= {FIELD_TARGET_MS:g} ms (aim {FIELD_AIM_MS:g})",
         f"{_ms(t['p50'])} (p95 {_ms(t['p95'])}; decode {r['decode']['p50']:.0f} / find+score {r['find_and_score']['p50']:.0f}"
         f" / outline {r['outline']['p50']:.0f})", _ok(t["p50"] <= FIELD_TARGET_MS))
    _row(rows, f"Whole field: memory of a {r['case_fields']}-field case (RSS added)", f"malaria/{r['model']}",
         f"<= {CASE_TARGET_BYTES / 2**20:g} MB", f"{r['case_rss_delta_bytes'] / 2**20:.0f} MB",
         _ok(r["case_rss_delta_bytes"] <= CASE_TARGET_BYTES))
    return r


# ------------------------------------------------------------------------------------------------ output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test of the harness)")
    ap.add_argument("--models", default=None, help="restrict to task/id,task/id (default: every bundled model)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--out", default=str(RESULTS_DIR / "latest.json"), help="JSON output (default: %(default)s)")
    ap.add_argument("--fail-on-miss", action="store_true", help="exit with status 1 when a target is missed")
    args = ap.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    params = QUICK if args.quick else FULL
    models = select_models(args.models)

    started = time.time()
    meta = machine_info()
    meta.update({"quick": args.quick, "params": params, "sections": sorted(sections), "models": [f"{t}/{m}" for t, m in models],
                 "load_average_start": load_average(), "busy_processes_start": busy_processes()})
    _log(f"benchmarks: {len(models)} bundled model(s): {', '.join(meta['models']) or 'none'}; "
         f"load average {meta['load_average_start']} on {meta['cpu_count']} CPUs")
    rows: list[dict] = []
    results: dict = {}
    if "threshold" in sections:
        results["threshold"] = run_threshold(params, rows)
    if "intervals" in sections:
        results["intervals"] = run_intervals(params, rows)
    if sections & {"single", "batch"}:
        if not models:
            _row(rows, "Single image / batch", "", "-", "no bundled model", "SKIP")
        results["models"] = run_models(models, sections, params, rows)
    if "memory" in sections:
        results["memory"] = run_memory(models, rows) if models else {"skipped": "no bundled model"}
    if "app" in sections:
        results["app"] = run_app(rows)
    if "fields" in sections:
        results["fields"] = run_fields(rows, 8 if args.quick else 20)
    if "state" in sections:
        results["state"] = run_state(rows, 3 if args.quick else 10)
    if "pages" in sections:
        results["pages"] = run_pages(rows, 2 if args.quick else 5)
    if "routing" in sections:
        results["routing"] = run_routing(rows, 15 if args.quick else 40)
    if "handoff" in sections:
        from .handoff import bench_handoff, rows_for

        _log("[handoff] PDF, SC + SR, Orthanc round trip, audit log ...")
        results["handoff"] = bench_handoff(args.quick)
        rows += rows_for(results["handoff"])
    if "scale" in sections:
        from .scale import run as run_scale

        _log("[scale] batch engines, Ray, corrupt folder, onnxruntime ...")
        results["scale"] = run_scale(rows, args.quick, models=models)
    if "signin" in sections:
        results["signin"] = run_signin(rows, 3 if args.quick else 10)
    if "cellreview" in sections:
        results["cellreview"] = run_cell_review(rows, 8 if args.quick else 20)
    meta["load_average_end"] = load_average()
    meta["busy_processes_end"] = busy_processes()
    meta["wall_seconds"] = time.time() - started

    cpus = meta["cpu_count"] or 1
    busy = max(meta["load_average_start"][:1] + meta["load_average_end"][:1] or [0]) > 0.5 * cpus
    header = (f"SecondLook benchmarks  {meta['date']}  {'QUICK ' if args.quick else ''}"
              f"{meta['cpu_count']} CPUs  TF {meta['tensorflow']}  load average start {meta['load_average_start']} "
              f"end {meta['load_average_end']}")
    print(header)
    if busy:
        others = ", ".join(f"{p['command'][:60]} ({p['cpu_percent']:.0f}%)" for p in meta["busy_processes_start"][:3])
        print(f"NOTE: the machine was busy (load > half the CPUs{'; ' + others if others else ''}): "
              "timings are contended, treat them as preliminary.")
    print(format_table(rows))
    misses = sum(r["result"] == "MISS" for r in rows)
    print(f"{sum(r['result'] == 'PASS' for r in rows)} PASS, {misses} MISS, {sum(r['result'] == 'SKIP' for r in rows)} SKIP")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(clean({"meta": meta, "results": results, "table": rows, "contended": busy}), indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if (args.fail_on_miss and misses) else 0


if __name__ == "__main__":
    raise SystemExit(main())
