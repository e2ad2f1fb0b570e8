"""Audit trail: one SQLite row per scoring, so anyone can say later which model said what about which image.

A row holds the UTC time, the image's sha256 (never pixels, never a file name: names can carry patient data),
task, model id and checksum, threshold, site profile, probability, decision or the reason it was withheld, and
the surface that scored it (app, cli, batch, handoff).

The file is `SECONDLOOK_AUDIT`, else `audit.sqlite` in `SECONDLOOK_HOME` (core.config.data_file: a per-user data
folder by default, never the repository; readable by this user only).
It runs in WAL mode with a busy timeout, so several processes appending at once wait for each other instead
of failing: each `record` is a single INSERT in autocommit mode (atomic on its own). Connections are kept per
thread and process (Streamlit runs each session in its own thread; a forked worker must not reuse its parent's).
"""
from __future__ import annotations

import io
import math
import os
import re
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from core import sqlfilters
from core.config import data_file, private_db

SURFACES = ("app", "cli", "batch", "handoff")
BUSY_TIMEOUT_MS = 30_000
COLUMNS = ["id", "created_at", "image_sha256", "task", "model_id", "model_sha256", "threshold", "site_profile",
           "probability", "decision", "withheld_reason", "surface"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    task TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_sha256 TEXT,
    threshold REAL,
    site_profile TEXT,
    probability REAL,
    decision TEXT,
    withheld_reason TEXT,
    surface TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (created_at);
CREATE INDEX IF NOT EXISTS audit_image ON audit (image_sha256);
"""
_SHA = re.compile(r"^[0-9a-f]{64}$")
_local = threading.local()


class AuditError(RuntimeError):
    """The audit log could not be written or read; the message says where and why."""


def db_path() -> Path:
    """`SECONDLOOK_AUDIT`, else `audit.sqlite` in `SECONDLOOK_HOME` (next to `SECONDLOOK_REVIEWS` when only that is set)."""
    return data_file("audit.sqlite", "SECONDLOOK_AUDIT", beside="SECONDLOOK_REVIEWS")


def _open(path: Path) -> sqlite3.Connection:
    private_db(path)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True)
    con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    _to_wal(con)
    con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed row survives a crash of the process
    con.executescript(_SCHEMA)
    private_db(path)  # the -wal/-shm files SQLite just made
    return con


def _to_wal(con: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out other writers as the busy timeout would.

    SQLite does not call the busy handler for a journal-mode change: a second process opening a fresh log while
    the first one writes got "database is locked" at once (measured: 1 in 20 two-writer starts lost a writer).
    """
    deadline, pause = time.monotonic() + BUSY_TIMEOUT_MS / 1000, 0.005
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.25)


def _connection(db: str | Path | None) -> sqlite3.Connection:
    path = Path(db).expanduser() if db is not None else db_path()
    cache = getattr(_local, "cons", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():
        cache, _local.pid = {}, os.getpid()  # never reuse a connection inherited through fork
        _local.cons = cache
    key = str(path.resolve())
    con = cache.get(key)
    if con is None:
        try:
            con = cache[key] = _open(path)
        except (sqlite3.Error, OSError) as exc:
            raise AuditError(f"cannot open the audit log {path}: {exc}") from exc
    return con


def close_all() -> None:
    """Close this thread's cached connections (tests moving SECONDLOOK_AUDIT around use it)."""
    for con in (getattr(_local, "cons", None) or {}).values():
        con.close()
    _local.cons = {}


def _opt_float(name: str, v: float | None, lo: float | None = None, hi: float | None = None) -> float | None:
    if v is None:
        return None
    f = float(v)
    if math.isnan(f) or (lo is not None and f < lo) or (hi is not None and f > hi):
        raise ValueError(f"audit: {name} {v!r} is not a number in [{lo}, {hi}]")
    return f


def record(*, image_sha256: str, task: str, model_id: str, model_sha256: str | None, threshold: float | None,
           probability: float | None, decision: str | None = None, withheld_reason: str | None = None,
           site_profile: str | None = None, surface: str, db: str | Path | None = None) -> int:
    """Append one scoring; returns the row id. Raises ValueError on a malformed row, AuditError on I/O."""
    if not _SHA.match(str(image_sha256)):
        raise ValueError("audit: image_sha256 must be 64 lower-case hex digits (the checksum, never pixels)")
    if surface not in SURFACES:
        raise ValueError(f"audit: unknown surface {surface!r}; one of {SURFACES}")
    if not task or not model_id:
        raise ValueError("audit: task and model_id are required")
    row = (datetime.now(timezone.utc).isoformat(timespec="microseconds"), image_sha256, task, model_id,
           model_sha256 or None, _opt_float("threshold", threshold, 0.0, 1.0),
           site_profile or None, _opt_float("probability", probability, 0.0, 1.0),
           decision or None, withheld_reason or None, surface)
    con = _connection(db)
    try:
        cur = con.execute(
            "INSERT INTO audit (created_at, image_sha256, task, model_id, model_sha256, threshold, site_profile,"
            " probability, decision, withheld_reason, surface) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
    except sqlite3.Error as exc:
        raise AuditError(f"could not write to the audit log: {exc}") from exc
    return int(cur.lastrowid)


def _where(filters: dict) -> tuple[str, list]:
    clauses, args = sqlfilters.equal_clauses({c: filters.get(c) or None  # an empty filter means all
                                   for c in ("task", "model_id", "surface", "site_profile", "image_sha256", "decision")})
    if filters.get("since"):
        clauses.append("created_at >= ?")
        args.append(_iso(filters["since"]))
    if filters.get("until"):
        clauses.append("created_at < ?")
        args.append(_iso(filters["until"]))
    if filters.get("withheld") is True:
        clauses.append("withheld_reason IS NOT NULL")
    return sqlfilters.where(clauses), args


def _iso(v) -> str:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat(timespec="microseconds")
    return str(v)  # a date or an ISO string: compared as text, which sorts like time for ISO-8601 UTC


def rows(*, task: str | None = None, model_id: str | None = None, surface: str | None = None,
         site_profile: str | None = None, image_sha256: str | None = None, decision: str | None = None,
         since=None, until=None, withheld: bool | None = None, limit: int | None = None,
         db: str | Path | None = None) -> list[dict]:
    """Matching rows, newest first. `since`/`until`: datetime (UTC if naive) or ISO text; `until` is exclusive."""
    where, args = _where(dict(task=task, model_id=model_id, surface=surface, site_profile=site_profile,
                              image_sha256=image_sha256, decision=decision, since=since, until=until, withheld=withheld))
    q = f"SELECT {', '.join(COLUMNS)} FROM audit{where} ORDER BY id DESC"
    if limit is not None:
        q += f" LIMIT {int(limit)}"
    try:
        cur = _connection(db).execute(q, args)
    except sqlite3.Error as exc:
        raise AuditError(f"could not read the audit log: {exc}") from exc
    return [dict(zip(COLUMNS, r)) for r in cur.fetchall()]


def to_frame(**filters) -> pd.DataFrame:
    """`rows(**filters)` as a DataFrame with the fixed column order (empty frame keeps the columns)."""
    return pd.DataFrame(rows(**filters), columns=COLUMNS)


def count(db: str | Path | None = None) -> int:
    return int(_connection(db).execute("SELECT COUNT(*) FROM audit").fetchone()[0])


def export_csv(**filters) -> bytes:
    """CSV of the matching rows (probabilities and thresholds with 8 decimals, like the worklist CSV)."""
    buf = io.StringIO()
    to_frame(**filters).to_csv(buf, index=False, float_format="%.8f")
    return buf.getvalue().encode("utf-8")


def record_file(path: str, row: dict, model_sha256: str | None, surface: str, db: str | Path | None = None) -> bool:
    """Audit one scored file of a command-line run (`row` as `core.predict.predict_file` returns it).

    Returns False (after saying why on stderr) when the log cannot be written, so the run can finish its other
    files and still exit non-zero.
    """
    import hashlib
    import sys

    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        record(image_sha256=digest, task=row["task"], model_id=row["model"], model_sha256=model_sha256,
               threshold=row["threshold"], probability=row["probability"], decision=row["decision"],
               withheld_reason=row.get("withheld"), site_profile=row.get("site"), surface=surface, db=db)
        return True
    except (AuditError, OSError, ValueError) as exc:
        print(f"audit: {path}: {exc}", file=sys.stderr)
        return False
