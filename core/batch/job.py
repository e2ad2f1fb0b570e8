"""One batch run: expand the inputs, read what the output already holds, let an engine score the rest, write rows.

The engines (`local`, `ray`) only turn file paths into `Scored` outcomes; everything that decides which rows are
written (resume, duplicates, provenance, the row fields) is here, so both engines write the same file.
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ._core import RowContext, row_context
from .inputs import expand_inputs
from .ledger import Ledger, Scored
from .output import RowWriter, check_provenance, output_format, read_rows

UNEXPECTED = "unexpected error while scoring this file: {}"


@dataclass
class Summary:
    """What a run did, for the closing line and for tests/benchmarks."""

    out: str
    engine: str
    files: int = 0
    rows_written: int = 0
    scored: int = 0
    duplicates: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    def line(self) -> str:
        rate = self.rows_written / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.out}: {self.rows_written} rows written ({self.scored} scored, {self.duplicates} duplicates, "
                f"{self.errors} unreadable; {self.skipped} already in the file) in {self.seconds:.1f} s "
                f"({rate:,.0f} files/s, engine {self.engine})")


def progress_bar(total: int, enabled: bool | None = None):
    """tqdm with rate and ETA on a terminal; silent in logs and pipes."""
    import shutil

    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    size = shutil.get_terminal_size((100, 24))  # a pty without a size (script, some CI) reports 0 x 0: tqdm hides
    return tqdm(total=total, unit="file", disable=not enabled, ncols=max(size.columns, 40), nrows=max(size.lines, 2),
                smoothing=0.1)


class RowSink:
    """Turns engine outcomes into rows: records them in the ledger and resolves duplicates once their first is known."""

    def __init__(self, ctx: RowContext, ledger: Ledger, writer: RowWriter, summary: Summary, bar) -> None:
        self.ctx, self.ledger, self.writer, self.summary, self.bar = ctx, ledger, writer, summary, bar
        self._waiting: dict[str, list[str]] = defaultdict(list)  # sha256 -> duplicate files waiting for its result

    def _row(self, file: str, sha: str | None, p: float | None, err: str | None) -> dict:
        return self.ctx.row(file, sha, probability=p, error=err) if err is None else self.ctx.row(file, sha, error=err)

    def skipped(self, n: int = 1) -> None:
        self.summary.skipped += n
        self.bar.update(n)

    def duplicate(self, file: str, sha: str) -> None:
        """A file whose bytes were seen before: written now if that result is known, else once it is."""
        known = self.ledger.result(sha)
        if known is None:
            self._waiting[sha].append(file)
            return
        self._emit([self._row(file, sha, *known)], duplicates=1)

    def scored(self, outcomes: Iterable[Scored]) -> None:
        rows, dups = [], 0
        for o in outcomes:
            self.ledger.record(o.sha256, o.probability, o.error)
            rows.append(self._row(o.file, o.sha256, o.probability, o.error))
            self.summary.errors += o.error is not None
            for f in self._waiting.pop(o.sha256, []) if o.sha256 else []:
                rows.append(self._row(f, o.sha256, o.probability, o.error))
                dups += 1
        self._emit(rows, duplicates=dups)

    def _emit(self, rows: list[dict], duplicates: int) -> None:
        self.writer.write(rows)
        self.summary.rows_written += len(rows)
        self.summary.duplicates += duplicates
        self.summary.scored += len(rows) - duplicates
        self.bar.update(len(rows))

    def close(self) -> None:
        for sha, files in self._waiting.items():  # cannot happen with the engines here; never lose a row if it does
            self._emit([self.ctx.row(f, sha, error=UNEXPECTED.format("its duplicate was never scored")) for f in files], 0)
        self._waiting.clear()


Engine = Callable[[list[str], Ledger, RowSink], None]


def run_batch(task: str, inputs: list[str], out: str, model_id: str | None = None, threshold: float | None = None,
              engine: str = "local", progress: bool | None = None, **engine_options) -> Summary:
    """Score every file the inputs name into `out` (CSV or Parquet), resuming whatever `out` already holds.

    Raises ValueError subclasses (with a message for the user) for misuse: unknown task/model, an INPUT that expands
    to nothing, an output from another scorer. Unreadable files are rows, never exceptions.
    """
    from ._core import get_task

    output_format(out)  # wrong suffix: refuse before any work
    model_id = model_id or get_task(task).default_model
    ctx = row_context(task, model_id, threshold)
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
        from .local import run_local

        return run_local
    if name == "ray":
        from .ray_engine import run_ray

        return run_ray
    raise ValueError(f"unknown engine {name!r}; choose 'local' or 'ray'.")


def chunks(seq: list, n: int) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
