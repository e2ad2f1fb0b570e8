"""One batch run: expand the inputs, read what the output already holds, let an engine score the rest, write rows.

The engines (`local`, `ray`) only turn file paths into `Scored` outcomes; everything that decides which rows are
written (resume, duplicates, provenance, the row fields) is here, so both engines write the same file.
"""
from __future__ import annotations

import sys
import time

from core.batch._core import load_site, row_context, with_site
from core.batch.inputs import expand_inputs
from core.batch.ledger import Ledger
from core.batch.output import RowWriter, check_provenance, output_format, read_rows
from core.batch.sink import UNEXPECTED, RowSink, Summary, chunks  # noqa: F401  (chunks, UNEXPECTED: engines' API)




def progress_bar(total: int, enabled: bool | None = None):
    """tqdm with rate and ETA on a terminal; silent in logs and pipes."""
    import shutil

    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    size = shutil.get_terminal_size((100, 24))  # a pty without a size (script, some CI) reports 0 x 0: tqdm hides
    return tqdm(total=total, unit="file", disable=not enabled, ncols=max(size.columns, 40), nrows=max(size.lines, 2),
                smoothing=0.1)


def run_batch(task: str, inputs: list[str], out: str, model_id: str | None = None, threshold: float | None = None,
              engine: str = "local", progress: bool | None = None, site: str | None = None, **engine_options) -> Summary:
    """Score every file the inputs name into `out` (CSV or Parquet), resuming whatever `out` already holds.

    With `site` (a saved profile's name) rows use its operating point and recalibration and name it.
    Raises ValueError subclasses (with a message for the user) for misuse: unknown task/model/site, an INPUT that
    expands to nothing, an output from another scorer. Unreadable files are rows, never exceptions.
    """
    from core.models.selection import default_model

    output_format(out)  # wrong suffix: refuse before any work
    model_id = model_id or default_model(task)
    ctx = row_context(task, model_id, threshold)
    if site:
        ctx = with_site(ctx, load_site(site, task, model_id), threshold)
    files = expand_inputs(inputs)
    existing = read_rows(out)
    check_provenance(out, existing, ctx)
    run = _engine(engine)
    summary = Summary(out=str(out), engine=engine, files=len(files))
    ledger = Ledger(existing)
    t0 = time.perf_counter()
    with RowWriter(out, existing) as writer, progress_bar(len(files), progress) as bar:
        sink = RowSink(ctx, ledger, writer, summary, bar)
        run(files, ledger, sink, ctx=ctx, timings=summary.timings, **engine_options)
        sink.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _engine(name: str):
    if name == "local":
        from core.batch.local import run_local

        return run_local
    if name == "ray":
        from core.batch.ray_engine import run_ray

        return run_ray
    raise ValueError(f"unknown engine {name!r}; choose 'local' or 'ray'.")
