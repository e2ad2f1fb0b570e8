"""Score an archive of images into one CSV or Parquet file, one row per file (the fields of core.predict's JSON).

    python -m core.batch --task malaria cells/ more/*.png manifest.csv --out results.csv
    python -m core.batch --task pneumonia --engine ray --ray-address ray://head:10001 /archive --out scores.parquet
    python -m core.batch --task malaria --site lab1 cells/ --out lab1.csv     # the site profile's point
    python -m core.batch --task auto archive/ --out rows.csv     # routed: rows.pneumonia.csv, rows.effusion.csv, ...

INPUT: files, folders (recursive; image and DICOM suffixes), globs (quote them; ** allowed) or manifest CSVs with a
`path` column (relative to the CSV). Re-running with the same --out resumes: files already in it (same path and
sha256) are skipped and new rows appended. Files with identical bytes are scored once and each gets its row. An
unreadable file gets a row with its error and never stops the run; a file of the wrong kind for the task (the modality
check), or a chest film of another population than the task's models were trained on, gets a row with no decision and
the reason in `withheld`. `--task auto` routes every file by kind (core.batch.routed): one output per task, whole
smear fields screened into OUT.fields.csv. Exit status 0 unless the command is misused.
"""
from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="a task, or 'auto' to route every file by its kind")
    p.add_argument("--model", help="model id (default: the task's default model)")
    p.add_argument("--threshold", type=float, help="operating point (default: the site's, else the model card's)")
    p.add_argument("--site", help="a site profile (python -m core.site): its threshold and calibration, named on each row")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, help="FILE.csv or FILE.parquet (appended to when it exists)")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="join this Ray cluster (e.g. auto, ray://head:10001); default: start Ray here")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray started without --ray-address (%(default)s)")
    p.add_argument("--ray-actors", type=int, help="scoring actors (default: half the cluster's CPUs, at least 1)")
    p.add_argument("--batch-size", type=int, default=128)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = build_parser()
    a = p.parse_args(argv)
    from core.batch.job import run_batch

    opts = {"batch_size": a.batch_size}
    if a.engine == "ray":
        opts.update(address=a.ray_address, num_cpus=a.ray_cpus, actors=a.ray_actors)
    elif a.ray_address or a.ray_actors:
        p.error("--ray-address/--ray-actors need --engine ray")
    if a.task == "auto":
        if a.model or a.site or a.threshold is not None:
            p.error("--task auto uses each task's validated default model and operating point")
        from core.batch.routed import run_auto

        try:
            for s in run_auto(a.inputs, a.out, engine=a.engine, **opts):
                print(s.line() if hasattr(s, "line") else s, file=sys.stderr)
        except (ValueError, ConnectionError) as exc:
            print(f"core.batch: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        summary = run_batch(a.task, a.inputs, a.out, a.model, a.threshold, engine=a.engine, site=a.site, **opts)
    except KeyError as exc:  # unknown task or model id
        p.error(str(exc.args[0]) if exc.args else str(exc))
    except (ValueError, ConnectionError) as exc:
        print(f"core.batch: {exc}", file=sys.stderr)
        return 2
    print(summary.line(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
