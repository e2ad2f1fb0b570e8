"""The batch output file (CSV or Parquet): reading what a previous run wrote, and appending rows safely.

A CSV is appended to and flushed after every chunk, so a run that is killed keeps every finished chunk (a torn last
line is dropped on the next read). Parquet cannot be appended to in place: the old rows and the new ones are
written to `FILE.partial` and moved over FILE when the run ends, also when it ends with an exception.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from core.batch._core import COLUMNS, PROVENANCE, RowContext

FORMATS = {".csv": "csv", ".parquet": "parquet"}


class OutputError(ValueError):
    """An output file that must not be written to (another task/model, not a batch output, wrong suffix)."""


def output_format(path: str | Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: the output must end with .csv or .parquet.")
    return fmt


FLOAT_COLUMNS = ("probability", "score_out_of_scope", "threshold", "calibrated_probability")


def _schema():
    import pyarrow as pa

    types = {"ok": pa.bool_(), **{c: pa.float64() for c in FLOAT_COLUMNS}}
    return pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])


def _from_text(col: str, v: str):
    if col == "ok":
        return v == "True"
    if v == "":
        return None
    return float(v) if col in FLOAT_COLUMNS else v


def _read_csv(path: Path) -> list[dict]:
    with open(path, "r+", newline="", encoding="utf-8") as f:
        text = f.read()
        if text and not text.endswith("\n"):  # torn last line of a killed run: drop it
            text = text[: text.rfind("\n") + 1]
            f.seek(0)
            f.truncate()
            f.write(text)
    lines = text.splitlines()
    if not lines:
        return []
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise OutputError(
            f"{path} is not a core.batch output (its columns are {reader.fieldnames}, expected {list(COLUMNS)}); "
            "choose another --out."
        )
    return [{c: _from_text(c, r[c]) for c in COLUMNS} for r in reader]


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types on a damaged file
        raise OutputError(f"{path} cannot be read as Parquet ({exc}); choose another --out.") from None
    if tuple(table.column_names) != COLUMNS:
        raise OutputError(
            f"{path} is not a core.batch output (its columns are {table.column_names}, expected {list(COLUMNS)}); "
            "choose another --out."
        )
    return table.to_pylist()


def read_rows(path: str | Path) -> list[dict]:
    """The rows already in an output file ([] when there is none yet)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return []
    return _read_csv(path) if output_format(path) == "csv" else _read_parquet(path)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-12)
    return a == b


def check_provenance(path: str | Path, rows: list[dict], ctx: RowContext) -> None:
    """Refuse to mix: every row already in the file must come from this task, model file and threshold."""
    want = {k: getattr(ctx, k) for k in PROVENANCE}
    for r in rows:
        bad = [k for k in PROVENANCE if not _same(r[k], want[k])]
        if bad:
            have = ", ".join(f"{k}={r[k]!r}" for k in PROVENANCE)
            ours = ", ".join(f"{k}={want[k]!r}" for k in PROVENANCE)
            raise OutputError(
                f"{path} already holds results from another scorer ({have}); this run is {ours}. "
                "Results of different tasks, models or thresholds are never mixed in one file: choose another --out."
            )


class RowWriter:
    """Appends rows to the output; use as a context manager so Parquet is finalised however the run ends."""

    def __init__(self, path: str | Path, existing: list[dict]) -> None:
        self.path = Path(path)
        self.format = output_format(path)
        self._existing = existing
        self._f = self._csv = self._pq = None

    def __enter__(self) -> "RowWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "csv":
            new = not self.path.is_file() or self.path.stat().st_size == 0
            self._f = open(self.path, "a", newline="", encoding="utf-8")
            self._csv = csv.writer(self._f)
            if new:
                self._csv.writerow(COLUMNS)
                self._f.flush()
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._partial = self.path.with_name(self.path.name + ".partial")
            self._pq = pq.ParquetWriter(self._partial, _schema())
            if self._existing:
                self._pq.write_table(pa.Table.from_pylist(self._existing, schema=_schema()))
        return self

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self._csv is not None:
            self._csv.writerows(["" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in COLUMNS]
                                for r in rows)
            self._f.flush()
        else:
            import pyarrow as pa

            self._pq.write_table(pa.Table.from_pylist(rows, schema=_schema()))

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()
        if self._pq is not None:
            self._pq.close()
            os.replace(self._partial, self.path)
