"""Score image files from the command line: one JSON line per file.

    python -m core.predict --task pneumonia [--model secondlook_cnn] FILE...

A file that cannot be read gets `"ok": false` and a readable `error`; it never stops the others.
The exit code is 0 unless the command itself is misused (unknown task or model, no files).
"""
from __future__ import annotations

import argparse
import json
import sys


from core.io.images import InputError, read_image
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare
from core.inference.rows import RowContext, row_context
from core.models.store import load_model, sha256_file
from core.models.registry import InputSpec, get_task


def predict_file(model, ctx: RowContext, spec: InputSpec, path: str) -> dict:
    """The result row of one file (core.inference.rows, shared with core.batch)."""
    try:
        sha = sha256_file(path)
    except OSError:
        sha = None  # read_image below says why the file cannot be read
    try:
        x = prepare(read_image(path), spec)
    except InputError as exc:
        return ctx.row(path, sha, error=str(exc))
    return ctx.row(path, sha, probability=float(predict_tensors(model, x[None])[0]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--model")
    p.add_argument("--threshold", type=float, help="operating point (default: the model card's)")
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    try:
        task = get_task(a.task)
        model_id = a.model or task.default_model
        task.model(model_id)
    except KeyError as exc:
        p.error(str(exc.args[0]))
    model = load_model(a.task, model_id)
    ctx = row_context(a.task, model_id, a.threshold)
    spec = task.model(model_id).input
    for f in a.files:
        try:
            row = predict_file(model, ctx, spec, f)
        except Exception as exc:  # a batch must never die on one file
            row = ctx.row(f, None, error=f"unexpected error while scoring this file: {exc}")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
