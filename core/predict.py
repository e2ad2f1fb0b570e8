"""Score image files from the command line: one JSON line per file.

    python -m core.predict FILE...                        # routed: each file to the task(s) of its kind
    python -m core.predict --task pneumonia [--model secondlook_cnn] [--site NAME] FILE...

Each line has the columns of `core.inference.rows` (the same as `core.batch`): file, sha256, ok, error, probability,
decision, withheld, caution, threshold, task, model, model_sha256, population. A file that cannot be read gets
`"ok": false` and a readable `error`; it never stops the others. A file of the wrong kind for the task (modality
check), or a chest film of another population than the task's models were trained on (pneumonia: children aged 1-5;
effusion: adults; the DICOM age, else the age-group check), gets `"decision": null`, `"withheld": "<reason>"` and
`"probability": null` (the raw output only as `"score_out_of_scope"`). Without --task (or `--task auto`) each file is
routed by kind (`"routed": true, "kind"`): a radiograph gets one line per chest task, a cell crop the malaria cell
model's, a whole smear field one field line (`core.fields`, field model at its field operating point, with
`"task": "malaria"`, `"n_cells"`, `"n_infected"`, `"parasitemia"`). `--site NAME` uses that site
profile's threshold and calibration (`"site": NAME`, `"calibrated_probability"`). Every scored file appends a row
to the audit log (core.audit). The exit code is 0 unless the command is misused (unknown task, model or site
profile, no files) or the audit log cannot be written (1).
"""
from __future__ import annotations

import argparse
import json
import sys

from core import audit
from core.inference import population as pop
from core.inference.decision import input_checks
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare
from core.inference.routing import auto_rows
from core.inference.rows import row_context
from core.io.images import InputError, read_image_with_info
from core.registry import get_task
from core.models.selection import default_model
from core.models.store import load_model, sha256_file
from core.site.apply import load_site, with_site


def predict_file(model, task: str, model_id: str, path: str, threshold: float, site=None, pixels=None,
                 tags: dict | None = None, population: pop.Population | None = None) -> dict:
    """One row (core.inference.rows); the decision follows `core.inference.decision.decide` after the input checks
    (`input_verdict`: kind of picture, and a chest film's population from its DICOM age or the image check)."""
    ctx = row_context(task, model_id, threshold)
    if site is not None:
        ctx = with_site(ctx, site, threshold)
    try:
        sha = sha256_file(path)
    except OSError:
        sha = None  # read_image below says why the file cannot be read
    try:
        if pixels is None:
            dec = read_image_with_info(path)
            pixels, tags = dec.pixels, dec.phi
        x = prepare(pixels, get_task(task).model(model_id).input)
    except InputError as exc:
        return ctx.row(path, sha, error=str(exc))
    p = ctx.calibrate(float(predict_tensors(model, x[None])[0]))  # the card's calibration map
    verdict, film = input_checks(pixels, task, tags, population)
    row = ctx.row(path, sha, probability=p, decision=ctx.decision(p, verdict),
                  population=film.describe() if film is not None else None)
    return row | ({"site_threshold_changed": site.changes_threshold} if site is not None else {})


def screen_one_field(path: str, pixels) -> dict:
    """A routed smear field: screened cell by cell with the field model at its field operating point (the line
    `python -m core.fields` prints for it, cells left out)."""
    from core.fields.records import TASK, field_model, field_threshold
    from core.fields.screen import screen_field
    from core.models.store import load_model as load

    mid = field_model()
    threshold, source = field_threshold(mid)
    try:
        res = screen_field(pixels, load(TASK, mid), get_task(TASK).model(mid), path).result(threshold, mid)
    except InputError as exc:
        return {"file": path, "ok": False, "error": str(exc), "task": TASK, "model": mid}
    except Exception as exc:  # one file never stops the others
        return {"file": path, "ok": False, "task": TASK, "model": mid,
                "error": f"unexpected error while screening this file: {type(exc).__name__}: {exc}"}
    res.pop("cells", None)
    return {**res, "task": TASK, "threshold_source": source}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="auto", help="a task; default (or 'auto'): route each file by its kind")
    p.add_argument("--model")
    p.add_argument("--threshold", type=float, help="operating point (default: the model card's)")
    p.add_argument("--site", help="a site profile (python -m core.site): its threshold and calibration")
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    if a.task == "auto":
        if a.model or a.site or a.threshold is not None:
            p.error("--task auto uses each task's default model and shipped operating point")
        audit_failed = False
        for row in auto_rows(a.files, predict_file, screen_one_field):
            print(json.dumps(row), flush=True)
            if row.get("ok") and row.get("model_sha256"):
                audit_failed |= not audit.record_file(row["file"], row, row["model_sha256"], "cli")
        return 1 if audit_failed else 0
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
