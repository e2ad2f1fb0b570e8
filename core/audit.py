"""Audit trail: one SQLite row per scoring, so anyone can say later which model said what about which image.

A row holds the UTC time, the image's sha256 (never pixels, never a file name: names can carry patient data),
task, model id and checksum, threshold, site profile, probability, decision or the reason it was withheld, the
surface that scored it (app, cli, batch, handoff), the "unusual" caution a decision kept, and who: the signed-in
user's token subject, e-mail and role, or the account that ran the command. A second table, `events`, keeps what is
not a scoring: sign-ins (with where the roles came from), refused actions, exports of this log, site profiles saved,
applied or deleted, a case's confirmed result.

The file is `SECONDLOOK_AUDIT`, else `audit.sqlite` in `SECONDLOOK_HOME` (core.config.data_file: a per-user data
folder by default, never the repository; readable by this user only).
Opened through core.sqlwal: WAL mode with a busy timeout, one INSERT per record, so concurrent writers never lose
a row.
"""
from __future__ import annotations

import io
import math
import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from core import sqlfilters, sqlwal, users
from core.config import data_file
from core.sqlwal import BUSY_TIMEOUT_MS  # noqa: F401  (tests read it here)

SURFACES = ("app", "cli", "batch", "handoff")
COLUMNS = ["id", "created_at", "image_sha256", "task", "model_id", "model_sha256", "threshold", "site_profile",
           "probability", "decision", "withheld_reason", "surface", "user_sub", "user_email", "user_role", "caution"]
EVENT_COLUMNS = ["id", "created_at", "kind", "user_sub", "user_email", "user_role", "detail"]
EVENTS = ("sign_in", "refused", "audit_export", "profile_saved", "profile_applied", "profile_deleted", "case_confirmed")

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
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_sub TEXT NOT NULL,
    user_email TEXT,
    user_role TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""
# columns later versions added; an older log gains them when opened (its old rows keep NULL there)
_ADDED = {"audit": {"user_sub": "TEXT", "user_email": "TEXT", "user_role": "TEXT", "caution": "TEXT"}}
_SHA = re.compile(r"^[0-9a-f]{64}$")


class AuditError(RuntimeError):
    """The audit log could not be written or read; the message says where and why."""


def db_path() -> Path:
    """`SECONDLOOK_AUDIT`, else `audit.sqlite` in `SECONDLOOK_HOME` (next to `SECONDLOOK_REVIEWS` when only that is set)."""
    return data_file("audit.sqlite", "SECONDLOOK_AUDIT", beside="SECONDLOOK_REVIEWS")


def _connection(db: str | Path | None) -> sqlite3.Connection:
    path = Path(db).expanduser() if db is not None else db_path()
    try:
        return sqlwal.connection(path, _SCHEMA, _ADDED)
    except (sqlite3.Error, OSError) as exc:
        raise AuditError(f"cannot open the audit log {path}: {exc}") from exc


def close_all() -> None:
    """Close this thread's cached connections (tests moving SECONDLOOK_AUDIT around use it)."""
    sqlwal.close_all()


def _who(user: users.User | None) -> tuple[str, str | None, str]:
    u = user if user is not None else users.local_user()
    return u.sub, u.email or None, u.role


def event(kind: str, user: users.User | None, detail: str = "", db: str | Path | None = None) -> int:
    """Append one event that is not a scoring: a sign-in (with where its roles came from), a refused action, an
    export of this log, a site profile saved, applied or deleted."""
    if kind not in EVENTS:
        raise ValueError(f"audit: unknown event {kind!r}; one of {EVENTS}")
    row = (datetime.now(timezone.utc).isoformat(timespec="microseconds"), kind, *_who(user), str(detail or ""))
    try:
        cur = _connection(db).execute(
            "INSERT INTO events (created_at, kind, user_sub, user_email, user_role, detail) VALUES (?,?,?,?,?,?)", row)
    except sqlite3.Error as exc:
        raise AuditError(f"could not write to the audit log: {exc}") from exc
    return int(cur.lastrowid)


def events(*, kind: str | None = None, user: str | None = None, since=None, until=None, limit: int | None = None,
           db: str | Path | None = None) -> list[dict]:
    """Matching events, newest first; `user` matches the subject or the e-mail."""
    clauses, args = sqlfilters.equal_clauses({"kind": kind or None})
    sqlfilters.user_and_time(user, since, until, clauses, args)
    return _select("events", EVENT_COLUMNS, sqlfilters.where(clauses), args, limit, db)


def _select(table: str, columns: list[str], where: str, args: list, limit: int | None, db) -> list[dict]:
    q = f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY id DESC"
    if limit is not None:
        q += f" LIMIT {int(limit)}"
    try:
        cur = _connection(db).execute(q, args)
    except sqlite3.Error as exc:
        raise AuditError(f"could not read the audit log: {exc}") from exc
    return [dict(zip(columns, r)) for r in cur.fetchall()]


def users_seen(db: str | Path | None = None) -> list[str]:
    """Every user label (e-mail, else subject) in the log, for the page's filter."""
    q = ("SELECT DISTINCT COALESCE(user_email, user_sub) FROM audit WHERE user_sub IS NOT NULL UNION "
         "SELECT DISTINCT COALESCE(user_email, user_sub) FROM events ORDER BY 1")
    return [r[0] for r in _connection(db).execute(q).fetchall()]


def _opt_float(name: str, v: float | None, lo: float | None = None, hi: float | None = None) -> float | None:
    if v is None:
        return None
    f = float(v)
    if math.isnan(f) or (lo is not None and f < lo) or (hi is not None and f > hi):
        raise ValueError(f"audit: {name} {v!r} is not a number in [{lo}, {hi}]")
    return f


def record(*, image_sha256: str, task: str, model_id: str, model_sha256: str | None, threshold: float | None,
           probability: float | None, decision: str | None = None, withheld_reason: str | None = None,
           site_profile: str | None = None, surface: str, user: users.User | None = None,
           caution: str | None = None, db: str | Path | None = None) -> int:
    """Append one scoring; returns the row id. Raises ValueError on a malformed row, AuditError on I/O.

    `user`: who scored it; a command without one is the account running it (users.local_user()). `caution`: the
    "unusual for this model" note a decision kept, so monitoring can count how often it appears."""
    if not _SHA.match(str(image_sha256)):
        raise ValueError("audit: image_sha256 must be 64 lower-case hex digits (the checksum, never pixels)")
    if surface not in SURFACES:
        raise ValueError(f"audit: unknown surface {surface!r}; one of {SURFACES}")
    if not task or not model_id:
        raise ValueError("audit: task and model_id are required")
    row = (datetime.now(timezone.utc).isoformat(timespec="microseconds"), image_sha256, task, model_id,
           model_sha256 or None, _opt_float("threshold", threshold, 0.0, 1.0),
           site_profile or None, _opt_float("probability", probability, 0.0, 1.0),
           decision or None, withheld_reason or None, surface, *_who(user), caution or None)
    con = _connection(db)
    try:
        cur = con.execute(
            "INSERT INTO audit (created_at, image_sha256, task, model_id, model_sha256, threshold, site_profile,"
            " probability, decision, withheld_reason, surface, user_sub, user_email, user_role, caution)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
    except sqlite3.Error as exc:
        raise AuditError(f"could not write to the audit log: {exc}") from exc
    return int(cur.lastrowid)


def _where(filters: dict) -> tuple[str, list]:
    clauses, args = sqlfilters.equal_clauses({c: filters.get(c) or None  # an empty filter means all
                                   for c in ("task", "model_id", "surface", "site_profile", "image_sha256", "decision")})
    sqlfilters.user_and_time(filters.get("user"), filters.get("since"), filters.get("until"), clauses, args)
    if filters.get("withheld") is True:
        clauses.append("withheld_reason IS NOT NULL")
    return sqlfilters.where(clauses), args


def rows(*, task: str | None = None, model_id: str | None = None, surface: str | None = None,
         site_profile: str | None = None, image_sha256: str | None = None, decision: str | None = None,
         since=None, until=None, withheld: bool | None = None, user: str | None = None, limit: int | None = None,
         db: str | Path | None = None) -> list[dict]:
    """Matching rows, newest first. `since`/`until`: datetime (UTC if naive) or ISO text; `until` is exclusive;
    `user`: a subject or an e-mail."""
    where, args = _where(dict(task=task, model_id=model_id, surface=surface, site_profile=site_profile,
                              image_sha256=image_sha256, decision=decision, since=since, until=until, withheld=withheld,
                              user=user))
    return _select("audit", COLUMNS, where, args, limit, db)


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


def record_file(path: str, row: dict, model_sha256: str | None, surface: str, db: str | Path | None = None,
                user: users.User | None = None) -> bool:
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
               withheld_reason=row.get("withheld"), site_profile=row.get("site"), surface=surface, user=user,
               caution=row.get("caution"), db=db)
        return True
    except (AuditError, OSError, ValueError) as exc:
        print(f"audit: {path}: {exc}", file=sys.stderr)
        return False
