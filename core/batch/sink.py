"""Where engine outcomes become rows: the run summary, the row sink (ledger + duplicates), the error text, chunking.

Shared by the job and both engines, so neither engine imports the job that picks it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from core.batch._core import RowContext
from core.batch.ledger import Ledger, Scored
from core.batch.output import RowWriter

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
    withheld: int = 0
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    def line(self) -> str:
        rate = self.rows_written / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.out}: {self.rows_written} rows written ({self.scored} scored, {self.duplicates} duplicates, "
                f"{self.errors} unreadable, {self.withheld} not assessed; {self.skipped} already in the file) in {self.seconds:.1f} s "
                f"({rate:,.0f} files/s, engine {self.engine})")


class RowSink:
    """Turns engine outcomes into rows: records them in the ledger and resolves duplicates once their first is known."""

    def __init__(self, ctx: RowContext, ledger: Ledger, writer: RowWriter, summary: Summary, bar) -> None:
        self.ctx, self.ledger, self.writer, self.summary, self.bar = ctx, ledger, writer, summary, bar
        self._waiting: dict[str, list[str]] = defaultdict(list)  # sha256 -> duplicate files waiting for its result

    def _row(self, file: str, sha: str | None, p: float | None, err: str | None, withheld: str | None,
             population: str | None = None) -> dict:
        """`p` is the calibrated probability (the ledger keeps those, so a resumed run's duplicates match)."""
        if err is not None:
            return self.ctx.row(file, sha, error=err)
        return self.ctx.row(file, sha, probability=p, decision=self.ctx.decision(p, withheld), population=population)

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
        outcomes = list(outcomes)
        shown = iter(self.ctx.calibrate_many([o.probability for o in outcomes if o.error is None]))
        rows, dups = [], 0
        for o in outcomes:
            outcome = (None if o.error is not None else next(shown), o.error, o.withheld,
                       None if o.error is not None else o.population)
            self.ledger.record(o.sha256, outcome)
            rows.append(self._row(o.file, o.sha256, *outcome))
            self.summary.errors += o.error is not None
            self.summary.withheld += o.error is None and o.withheld is not None
            for f in self._waiting.pop(o.sha256, []) if o.sha256 else []:
                rows.append(self._row(f, o.sha256, *outcome))
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


def chunks(seq: list, n: int) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
