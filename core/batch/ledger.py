"""What a run already knows, by sha256: results from earlier runs (resume) and from this run (duplicates)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

# (probability shown, error, withheld, population): probability or error is None; a withheld file keeps its
# out-of-scope score; population is a chest film's `Population.describe()` (None for other tasks and for errors)
Outcome = tuple[float | None, str | None, str | None, str | None]
Triage = Literal["skip", "duplicate", "new"]


@dataclass(frozen=True)
class Scored:
    """One file's outcome as an engine reports it (before it becomes a row)."""

    file: str
    sha256: str | None
    probability: float | None  # the network's raw output (the row shows it calibrated)
    error: str | None
    withheld: str | None = None  # the modality check's reason: no decision for this file
    population: str | None = None  # a chest film's population and how it was told (the row's `population`)


class Ledger:
    """Decides, per file, whether to skip it, copy an earlier result, or score it; thread-safe.

    A file whose (path, sha256) is already in the output is skipped (resume). A file whose content was scored before,
    in an earlier run or earlier in this one, is a duplicate: it gets its own row with the first one's result, so
    identical bytes are decoded and scored once.
    """

    def __init__(self, existing_rows: list[dict]) -> None:
        self._lock = threading.Lock()
        self._done = {(r["file"], r["sha256"]) for r in existing_rows}
        self._results: dict[str, Outcome] = {
            r["sha256"]: (r["probability"] if r["probability"] is not None else r["score_out_of_scope"], r["error"],
                          r["withheld"], r.get("population"))
            for r in existing_rows if r["sha256"]
        }
        self._claimed: set[str] = set()

    def triage(self, file: str, sha256: str | None) -> Triage:
        with self._lock:
            if (file, sha256) in self._done:
                return "skip"
            self._done.add((file, sha256))
            if sha256 is None:
                return "new"  # unreadable: nothing to deduplicate on
            if sha256 in self._results or sha256 in self._claimed:
                return "duplicate"
            self._claimed.add(sha256)
            return "new"

    def __getstate__(self) -> dict:  # picklable (the Ray engine hands a copy to its ledger actor); the lock is not
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def triage_many(self, files: list[str], shas: list[str | None]) -> list[Triage]:
        return [self.triage(f, s) for f, s in zip(files, shas)]

    def record(self, sha256: str | None, outcome: Outcome) -> None:
        if sha256 is not None:
            with self._lock:
                self._results[sha256] = outcome

    def result(self, sha256: str) -> Outcome | None:
        with self._lock:
            return self._results.get(sha256)
