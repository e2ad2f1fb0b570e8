"""Export a bundled model for serving.

    python -m core.export --task T --model M --format savedmodel DIR   # DIR/1/ for TensorFlow Serving
    python -m core.export --task T --model M --format onnx DIR         # DIR/model.onnx

Both take `pixels` [batch, size, size, channels], values 0..255 at model size, and return `probability` (after the
card's calibration, identity when it has none) and `logit`. DIR/secondlook_signature.json spells out the contract.
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m core.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--model", help="model id (default: the task's default model)")
    p.add_argument("--format", required=True, choices=("savedmodel", "onnx"))
    p.add_argument("--version", type=int, default=1, help="SavedModel version folder (TensorFlow Serving), %(default)s")
    p.add_argument("dir")
    a = p.parse_args(argv)
    from core.export._core import get_task
    from core.export.writers import export
    from core.models.selection import default_model

    try:
        model_id = a.model or default_model(a.task)
        get_task(a.task).model(model_id)
    except KeyError as exc:
        p.error(str(exc.args[0]))
    try:
        path = export(a.task, model_id, a.format, a.dir, a.version)
    except (ValueError, OSError) as exc:
        print(f"core.export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
