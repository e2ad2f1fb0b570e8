"""What a reader concluded about a result SecondLook gave: agree or disagree, their own call, an optional note.

Two kinds of row:
- `image`: a clinician's (or technician's) call on an X-ray or a cell crop, beside the model's decision;
- `cell`: a technician's call on one cell of a smear field in the cell review (`cell` is the cell's index in the
  field, `case_id` groups the fields of one patient's slide; a cell the model did not queue and the technician
  marked infected has decision "not proposed").

Every row keeps the file's sha256 (never pixels, never a name), the task, model id and checksum, the operating point,
the site profile, the user (token subject, e-mail, role) and the time. A confirmation is refused, with the reason,
when the result it confirms was produced by another model version or under another operating point than the one
in force: a reader must confirm what they were shown.

The file is `SECONDLOOK_CONFIRMATIONS`, else `confirmations.sqlite` in `SECONDLOOK_HOME`; opened through
core.sqlwal (many users confirming at once lose nothing).
"""
from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from core import sqlfilters, sqlwal, users
from core.config import data_file
from core.registry import get_task

KINDS = ("image", "cell")
NOT_PROPOSED = "not proposed"
THRESHOLD_TOL = 1e-9
COLUMNS = ["id", "created_at", "kind", "image_sha256", "cell", "case_id", "task", "model_id", "model_sha256",
           "threshold", "probability", "decision", "reader_call", "agree", "note", "site_profile", "user_sub",
           "user_email", "user_role"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    cell INTEGER,
    case_id TEXT,
    task TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    threshold REAL NOT NULL,
    probability REAL,
    decision TEXT,
    reader_call TEXT NOT NULL,
    agree INTEGER,
    note TEXT NOT NULL DEFAULT '',
    site_profile TEXT,
    user_sub TEXT NOT NULL,
    user_email TEXT,
    user_role TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS confirmations_image ON confirmations (task, image_sha256);
CREATE INDEX IF NOT EXISTS confirmations_case ON confirmations (case_id);
"""
_SHA = re.compile(r"^[0-9a-f]{64}$")


class Refused(ValueError):
    """A confirmation that cannot be kept; the message says why and what to do."""


@dataclass(frozen=True)
class Scored:
    """What the reader was shown: the result and what produced it."""
    image_sha256: str
    task: str
    model_id: str
    model_sha256: str
    threshold: float
    probability: float | None
    decision: str | None  # the model's call; None when it was withheld
    site_profile: str | None = None


def db_path() -> Path:
    return data_file("confirmations.sqlite", "SECONDLOOK_CONFIRMATIONS", beside="SECONDLOOK_AUDIT")


def _connection(db: str | Path | None) -> sqlite3.Connection:
    return sqlwal.connection(Path(db).expanduser() if db is not None else db_path(), _SCHEMA)


def refusal(scored: Scored, current_model_sha256: str | None, current_threshold: float | None) -> str | None:
    """Why `scored` may not be confirmed now (another model version, another operating point), else None."""
    if not current_model_sha256:
        return f"the model {scored.model_id} is not loaded now, so what was shown cannot be checked; score the file again"
    if scored.model_sha256 != current_model_sha256:
        return (f"this result came from another version of {scored.model_id} (checksum {scored.model_sha256[:12]}…, "
                f"now {current_model_sha256[:12]}…); score the file again before confirming")
    if current_threshold is None or not math.isclose(float(scored.threshold), float(current_threshold),
                                                      rel_tol=0, abs_tol=THRESHOLD_TOL):
        now = "unknown" if current_threshold is None else f"{float(current_threshold):.4f}"
        return (f"this result was shown at threshold {float(scored.threshold):.4f} and the operating point is now "
                f"{now}; confirm the result as it is shown now")
    return None


def _call(task: str, kind: str, reader_call: str) -> str:
    labels = get_task(task).labels
    if reader_call not in labels:
        raise Refused(f"the reader's call must be one of {labels}, not {reader_call!r}")
    if kind == "cell" and get_task(task).modality != "smear":
        raise Refused("cell confirmations are for smear fields")
    return reader_call


def record(scored: Scored, *, reader_call: str, user: users.User, current_model_sha256: str | None,
           current_threshold: float | None, note: str = "", kind: str = "image", cell: int | None = None,
           case_id: str | None = None, db: str | Path | None = None) -> int:
    """Keep one confirmation; returns its id. Raises Refused (with the reason) or users.PermissionDenied."""
    users.require(user, "confirm")
    if kind not in KINDS:
        raise Refused(f"unknown kind {kind!r}; one of {KINDS}")
    if not _SHA.match(str(scored.image_sha256)):
        raise Refused("the file's sha256 must be 64 lower-case hex digits (a checksum, never pixels)")
    if kind == "cell" and (cell is None or int(cell) < 0):
        raise Refused("a cell confirmation needs the cell's index in its field")
    why = refusal(scored, current_model_sha256, current_threshold)
    if why:
        raise Refused(why)
    call = _call(scored.task, kind, reader_call)
    p = scored.probability
    if p is not None and (math.isnan(float(p)) or not 0.0 <= float(p) <= 1.0):
        raise Refused(f"probability {p!r} is not in [0, 1]")
    agree = None if scored.decision in (None, NOT_PROPOSED) else int(call == scored.decision)
    if scored.decision == NOT_PROPOSED:
        agree = int(call != get_task(scored.task).positive)  # marking an unqueued cell infected disagrees
    row = (datetime.now(timezone.utc).isoformat(timespec="microseconds"), kind, scored.image_sha256,
           None if cell is None else int(cell), case_id or None, scored.task, scored.model_id, scored.model_sha256,
           float(scored.threshold), None if p is None else float(p), scored.decision, call, agree,
           str(note or "")[:2000], scored.site_profile or None, user.sub, user.email or None, user.role)
    cur = _connection(db).execute(
        f"INSERT INTO confirmations ({', '.join(COLUMNS[1:])}) VALUES ({','.join('?' * (len(COLUMNS) - 1))})", row)
    return int(cur.lastrowid)


def rows(*, task: str | None = None, kind: str | None = None, model_id: str | None = None,
         site_profile: str | None = None, image_sha256: str | None = None, case_id: str | None = None,
         user: str | None = None, since=None, until=None, db: str | Path | None = None) -> list[dict]:
    """Matching confirmations, oldest first."""
    clauses, args = sqlfilters.equal_clauses(dict(task=task, kind=kind, model_id=model_id, site_profile=site_profile,
                                                  image_sha256=image_sha256, case_id=case_id))
    sqlfilters.user_and_time(user, since, until, clauses, args)
    cur = _connection(db).execute(f"SELECT {', '.join(COLUMNS)} FROM confirmations{sqlfilters.where(clauses)} "
                                  "ORDER BY id", args)
    return [dict(zip(COLUMNS, r)) for r in cur.fetchall()]


def to_frame(**filters) -> pd.DataFrame:
    return pd.DataFrame(rows(**filters), columns=COLUMNS)


def latest(frame: pd.DataFrame) -> pd.DataFrame:
    """The last word on each image (image rows) or cell (cell rows): a reader may change their mind."""
    if frame.empty:
        return frame
    key = ["kind", "task", "image_sha256", frame["cell"].fillna(-1).astype(int).rename("_cell")]
    return frame.loc[frame.groupby(key)["id"].idxmax()].sort_values("id").reset_index(drop=True)


def agreement(frame: pd.DataFrame) -> dict:
    """AI–reader agreement over the latest word on each result that had a decision: n, agreed, rate (None if 0)."""
    last = latest(frame)
    judged = last[last["agree"].notna()] if not last.empty else last
    n = int(len(judged))
    agreed = int(judged["agree"].sum()) if n else 0
    return {"n": n, "agreed": agreed, "rate": agreed / n if n else None}


def site_labels(task: str, model_id: str, model_sha256: str, *, site_profile: str | None = None,
                db: str | Path | None = None) -> pd.DataFrame:
    """Reader-confirmed cases for site validation: one row per image (the latest call), with the model's recorded
    probability. Only rows scored by exactly this model version count (another version's scores say nothing about
    this one). Columns: image_sha256, label (1 = the reader called it positive), probability, source.
    These are readers' calls, not ground truth: `source` is "reader-confirmed"."""
    f = to_frame(task=task, kind="image", model_id=model_id, site_profile=site_profile, db=db)
    f = latest(f[f["model_sha256"] == model_sha256]) if not f.empty else f
    f = f[f["probability"].notna()] if not f.empty else f
    pos = get_task(task).positive
    return pd.DataFrame({
        "image_sha256": f["image_sha256"].to_numpy() if len(f) else np.array([], dtype=object),
        "label": (f["reader_call"] == pos).astype(int).to_numpy() if len(f) else np.array([], dtype=int),
        "probability": f["probability"].astype(float).to_numpy() if len(f) else np.array([], dtype=float),
        "source": "reader-confirmed",
    })
