"""Whole-field screening speed and memory: one field end to end, and a 20-field case held in memory.

Uses validation fields (session S3 of `train`), never the test session."""
from __future__ import annotations

import time

import numpy as np

FIELD_TARGET_MS = 500.0  # one field: decode, find, score, outlined picture (p50, 2 cores)
FIELD_AIM_MS = 250.0
CASE_FIELDS = 20
CASE_TARGET_BYTES = 300 * 2**20


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def bench_fields(model_id: str | None = None, reps: int = 20, warmup: int = 2, case_fields: int = CASE_FIELDS) -> dict:
    import cv2

    from core.fields.cuts import STOP_SESSIONS, read_fields
    from core.fields.records import TASK, field_model, field_threshold
    from core.fields.screen import screen_field
    from core.inference import scoring
    from core.io import read_image
    from core.registry import get_model_spec
    from core.models.store import load_model

    model_id = model_id or field_model()
    spec = get_model_spec(TASK, model_id)
    model = load_model(TASK, model_id)
    thr, _ = field_threshold(model_id)
    fields, _ = read_fields()
    files = fields[fields["session"].isin(STOP_SESSIONS)]["file"].tolist()
    blobs = [open(f, "rb").read() for f in files[: max(reps + warmup, case_fields)]]

    stages = {k: [] for k in ("decode", "find_and_score", "outline", "total")}
    for i, data in enumerate(blobs[: reps + warmup]):
        t0 = time.perf_counter()
        px = read_image(data, "field.jpg")
        t1 = time.perf_counter()
        s = screen_field(px, model, spec, "field", keep_crops=True)
        t2 = time.perf_counter()
        img = px.copy()
        for (x, y, w, h), p in zip(s.boxes.tolist(), s.probabilities.tolist()):
            cv2.rectangle(img, (x, y), (x + w, y + h), (230, 30, 30) if p >= thr else (60, 170, 90), 2)
        scoring.jpeg_bytes(scoring.display_image(img, 1280), quality=88)
        t3 = time.perf_counter()
        if i >= warmup:
            for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                stages[k].append(1000 * v)
    out = {"model": model_id, "n_fields": reps,
           **{k: {"p50": float(np.median(v)), "p95": float(np.percentile(v, 95))} for k, v in stages.items()}}

    before = _rss()
    case = []
    for data in blobs[:case_fields]:  # what the app keeps for a case: screens with crops + outlined pictures
        px = read_image(data, "field.jpg")
        s = screen_field(px, model, spec, "field", keep_crops=True)
        case.append((s, scoring.jpeg_bytes(scoring.display_image(px, 1280), quality=88)))
    out["case_rss_delta_bytes"] = _rss() - before
    out["case_fields"] = len(case)
    return out
