"""Measure the cell finder against the malaria_fields boxes.

    python -m core.fields.finder_eval --sessions S2,S3 [--out file.json] [--limit N]

Recall = share of annotated (non-difficult) boxes matched one-to-one by a found cell at IoU >= 0.5;
infected recall the same over infected boxes. CIs resample whole fields (seeded bootstrap).
Time is finding per field (image decode excluded; the learned finder includes the classical pass it starts from), wall clock and CPU time of this process
(one OpenCV thread), so a loaded shared machine does not hide the real per-core cost.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from core.fields.annotations import load_fields, parse_sessions
from core.fields.matching import bootstrap_ci, field_detection, pooled_recall


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def evaluate_finder(split_or_sessions: str | list[str] | tuple[str, ...] = "S2,S3",
                    limit: int | None = None, n_boot: int = 2000, seed: int = 0, finder: str = "learned") -> dict:
    """Per-field and pooled recall (annotated, infected) with field-bootstrap 95% CIs, and timing.

    `finder`: "learned" (the bundled detector's boxes, when there is one) or "classical" (core.fields.finder alone).
    """
    from core.fields.screen import bundled_detector, locate_cells

    sessions = parse_sessions(split_or_sessions)
    fields = load_fields(sessions)
    if limit:
        fields = fields[:limit]
    cv2.setNumThreads(1)  # measure one core, as the target says
    per_field = []
    times = []
    cpu_times = []
    for fa in fields:
        rgb = read_rgb(fa.image_path)
        t0, c0 = time.perf_counter(), time.process_time()
        boxes, res = locate_cells(rgb, finder)
        times.append((time.perf_counter() - t0) * 1000)
        cpu_times.append((time.process_time() - c0) * 1000)
        row = field_detection(fa.boxes, fa.infected, fa.difficult, boxes, types=fa.types)
        row.update(path=fa.path, session=fa.session, ms=round(times[-1], 1),
                   n_boxes=int(len(fa.boxes)), flags=list(res.flags),
                   clumped_share=round(res.clumped_share, 3), n_dropped_wbc=res.n_dropped_wbc,
                   foreground_share=round(float(res.foreground.mean()), 3) if res.foreground.size else 0.0)
        per_field.append(row)
    overall = pooled_recall(per_field)
    ci = bootstrap_ci(per_field, n_boot=n_boot, seed=seed)
    t = np.asarray(times) if times else np.zeros(1)
    summary = {
        "sessions": list(sessions),
        "finder": finder if finder == "classical" or bundled_detector() is not None else "classical (no detector)",
        "n_fields": len(per_field),
        "annotated_recall": overall["annotated_recall"],
        "annotated_recall_ci95": ci.get("annotated_recall"),
        "infected_recall": overall["infected_recall"],
        "infected_recall_ci95": ci.get("infected_recall"),
        "n_annotated": sum(r["n_annotated"] for r in per_field),
        "n_infected": sum(r["n_infected"] for r in per_field),
        "mean_found_per_field": float(np.mean([r["n_found"] for r in per_field])) if per_field else 0.0,
        "mean_boxes_per_field": float(np.mean([r["n_boxes"] for r in per_field])) if per_field else 0.0,
        "mean_unmatched_found_per_field": float(np.mean([r["n_found_unmatched"] for r in per_field]))
        if per_field else 0.0,
        "fields_flagged": sum(1 for r in per_field if r["flags"]),
        "recall_by_type": _by_type(per_field),
        "ms_p50": float(np.percentile(t, 50)),
        "ms_p90": float(np.percentile(t, 90)),
        "ms_max": float(t.max()),
        # CPU time of this process: what one core costs, even when other jobs share the machine
        "cpu_ms_p50": float(np.percentile(cpu_times, 50)) if cpu_times else 0.0,
        "cpu_ms_p90": float(np.percentile(cpu_times, 90)) if cpu_times else 0.0,
    }
    return {"summary": summary, "per_field": per_field}


def _by_type(per_field: list[dict]) -> dict:
    """{cell type: {"n", "found", "recall"}} pooled over fields (life-cycle stages, uninfected, difficult)."""
    tot: dict[str, list[int]] = {}
    for r in per_field:
        for t, (n, f) in r.get("by_type", {}).items():
            a = tot.setdefault(t, [0, 0])
            a[0] += n
            a[1] += f
    return {t: {"n": n, "found": f, "recall": f / n if n else None} for t, (n, f) in sorted(tot.items())}


def record_on_card(summary: dict) -> None:
    """The learned finder's test figures on its card, each scoring of the test session counted as a look."""
    from core.fields.detector import DETECTOR_DIR

    path = DETECTOR_DIR / "card.json"
    card = json.loads(path.read_text())
    if summary.get("finder") != "learned" or summary["sessions"] != ["S1"]:
        raise SystemExit("--record is for the learned finder on the test session S1 (--sessions S1)")
    card["test"] = {k: summary[k] for k in ("sessions", "n_fields", "annotated_recall", "annotated_recall_ci95",
                                            "infected_recall", "infected_recall_ci95", "n_annotated", "n_infected",
                                            "mean_found_per_field", "recall_by_type")}
    card["test_looks"] = card.get("test_looks", []) + [f"finder_eval --sessions S1 (look {len(card.get('test_looks', [])) + 1})"]
    path.write_text(json.dumps(card, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="S2,S3", help="train, test, or sessions like S2,S3")
    ap.add_argument("--out", type=Path, help="write the full per-field result as JSON here")
    ap.add_argument("--limit", type=int, default=None, help="first N fields only (quick look)")
    ap.add_argument("--finder", choices=("learned", "classical"), default="learned")
    ap.add_argument("--record", action="store_true",
                    help="write the summary into the detector's card as its test record (counts as a test look)")
    args = ap.parse_args(argv)
    result = evaluate_finder(args.sessions, limit=args.limit, finder=args.finder)
    if args.record:
        record_on_card(result["summary"])
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    json.dump(result["summary"], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
