"""Score image files from the command line: one JSON line per file.

    python -m core.predict --task pneumonia [--model secondlook_cnn] FILE...

A file that cannot be read gets `"ok": false` and a readable `error`; it never stops the others.
Every scored file appends a row to the audit log (`core.audit`). The exit code is 0 unless the command itself
is misused (unknown task or model, no files: 2) or the audit log could not be written (1).
"""
from __future__ import annotations

import argparse
import json
import sys

from core import audit
from core.inference.calibrate import calibrated
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare
from core.io.images import InputError, read_image
from core.models.registry import get_task
from core.models.selection import default_model
from core.models.store import load_model, read_card


def predict_file(model, task: str, model_id: str, path: str, threshold: float) -> dict:
    spec = get_task(task).model(model_id)
    try:
        x = prepare(read_image(path), spec.input)
    except InputError as exc:
        return {"file": path, "ok": False, "error": str(exc)}
    p = calibrated(task, model_id, float(predict_tensors(model, x[None])[0]))  # the card's calibration map
    t = get_task(task)
    return {
        "file": path,
        "ok": True,
        "probability": p,
        "decision": t.positive if p >= threshold else t.negative,
        "threshold": threshold,
        "task": task,
        "model": model_id,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--model")
    p.add_argument("--threshold", type=float, help="operating point (default: the model card's)")
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    try:
        task = get_task(a.task)
        model_id = a.model or default_model(a.task)
        task.model(model_id)
    except KeyError as exc:
        p.error(str(exc.args[0]))
    model = load_model(a.task, model_id)
    threshold = a.threshold if a.threshold is not None else float(read_card(a.task, model_id)["threshold"])
    model_sha, audit_failed = read_card(a.task, model_id).get("sha256"), False
    for f in a.files:
        try:
            row = predict_file(model, a.task, model_id, f, threshold)
        except Exception as exc:  # a batch must never die on one file
            row = {"file": f, "ok": False, "error": f"unexpected error while scoring this file: {exc}"}
        print(json.dumps(row), flush=True)
        audit_failed |= row["ok"] and not audit.record_file(f, row, model_sha, "cli")
    return 1 if audit_failed else 0


if __name__ == "__main__":
    sys.exit(main())
