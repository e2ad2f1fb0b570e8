"""Score image files from the command line: one JSON line per file.

    python -m core.predict --task pneumonia [--model secondlook_cnn] [--site NAME] FILE...
    python -m core.predict --task auto FILE...

Each line has the columns of `core.inference.rows` (the same as `core.batch`): file, sha256, ok, error, probability,
decision, withheld, caution, threshold, task, model, model_sha256. A file that cannot be read gets `"ok": false` and
a readable `error`; it never stops the others. A file of the wrong kind for the task (modality check) gets
`"decision": null`, `"withheld": "<reason>"` and `"probability": null` (the raw output only as
`"score_out_of_scope"`). `--task auto` picks the task by modality (`"routed": true`); a radiograph is scored by both
chest tasks, one line each, labelled with the population the model was trained on. `--site NAME` uses that site
profile's threshold and calibration (`"site": NAME`, `"calibrated_probability"`). Every scored file appends a row
to the audit log (core.audit). The exit code is 0 unless the command is misused (unknown task, model or site
profile, no files) or the audit log cannot be written (1).
"""
from __future__ import annotations

import argparse
import json
import sys

from core import audit
from core.inference.decision import modality_verdict
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare
from core.inference.routing import auto_rows
from core.inference.rows import row_context
from core.io.images import InputError, read_image
from core.registry import get_task
from core.models.selection import default_model
from core.models.store import load_model, sha256_file
from core.site.apply import load_site, with_site


def predict_file(model, task: str, model_id: str, path: str, threshold: float, site=None, pixels=None) -> dict:
    """One row (core.inference.rows); the decision follows `core.inference.decision.decide`."""
    ctx = row_context(task, model_id, threshold)
    if site is not None:
        ctx = with_site(ctx, site, threshold)
    try:
        sha = sha256_file(path)
    except OSError:
        sha = None  # read_image below says why the file cannot be read
    try:
        pixels = read_image(path) if pixels is None else pixels
        x = prepare(pixels, get_task(task).model(model_id).input)
    except InputError as exc:
        return ctx.row(path, sha, error=str(exc))
    p = ctx.calibrate(float(predict_tensors(model, x[None])[0]))  # the card's calibration map
    row = ctx.row(path, sha, probability=p, decision=ctx.decision(p, modality_verdict(pixels, task)))
    return row | ({"site_threshold_changed": site.changes_threshold} if site is not None else {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="a task, or 'auto' to pick it by modality")
    p.add_argument("--model")
    p.add_argument("--threshold", type=float, help="operating point (default: the model card's)")
    p.add_argument("--site", help="a site profile (python -m core.site): its threshold and calibration")
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    if a.task == "auto":
        if a.model or a.site or a.threshold is not None:
            p.error("--task auto uses each task's default model and shipped operating point")
        for row in auto_rows(a.files, predict_file):
            print(json.dumps(row), flush=True)
        return 0
    try:
        task = get_task(a.task)
        model_id = a.model or default_model(a.task)
        task.model(model_id)
    except KeyError as exc:
        p.error(str(exc.args[0]))
    site = None
    if a.site:
        try:
            site = load_site(a.site, a.task, model_id)
        except ValueError as exc:
            p.error(str(exc))
    model = load_model(a.task, model_id)
    ctx = row_context(a.task, model_id, a.threshold)
    if site is not None:
        ctx = with_site(ctx, site, a.threshold)
    audit_failed = False
    for f in a.files:
        try:
            row = predict_file(model, a.task, model_id, f, ctx.threshold, site)
        except Exception as exc:  # a batch must never die on one file
            row = ctx.row(f, None, error=f"unexpected error while scoring this file: {exc}")
        print(json.dumps(row), flush=True)
        audit_failed |= row["ok"] and not audit.record_file(f, row, ctx.model_sha256, "cli")
    return 1 if audit_failed else 0


if __name__ == "__main__":
    sys.exit(main())
