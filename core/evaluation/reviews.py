"""Misclassified-case review: which test images a model gets wrong at an operating point, and reviewer tags.

Tags live in a local SQLite file: `SECONDLOOK_REVIEWS`, else `reviews.sqlite` in `SECONDLOOK_HOME`
(core.config.data_file: a per-user data folder by default, never the repository; readable by this user only).
One row per tag event; the latest tag of a case is what the app shows, the full history is exported.
"""
from __future__ import annotations

import io
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from core import sqlfilters, sqlwal
from core.config import data_file, private_db

TAGS: dict[str, str] = {
    "label_wrong": "Label looks wrong",
    "model_error": "Model error",
    "image_quality": "Image quality",
}
ERROR_TYPES = {"fn": "False negative (missed)", "fp": "False positive (false alarm)"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    task TEXT NOT NULL,
    model_id TEXT NOT NULL,
    path TEXT NOT NULL,
    true_label TEXT,
    error_type TEXT,
    probability REAL,
    threshold REAL,
    tag TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    reviewer TEXT NOT NULL DEFAULT '',
    reviewer_sub TEXT NOT NULL DEFAULT '',
    reviewer_role TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reviews_case ON reviews (task, path);
"""
COLUMNS = ["id", "created_at", "task", "model_id", "path", "true_label", "error_type", "probability", "threshold",
           "tag", "note", "reviewer", "reviewer_sub", "reviewer_role"]
_ADDED = {c: "TEXT NOT NULL DEFAULT ''" for c in ("reviewer_sub", "reviewer_role")}  # since sign-in


def db_path() -> Path:
    return data_file("reviews.sqlite", "SECONDLOOK_REVIEWS")


def _connect(path: str | Path | None = None) -> sqlite3.Connection:
    p = private_db(Path(path) if path is not None else db_path())
    con = sqlite3.connect(p, timeout=10)
    con.executescript(_SCHEMA)
    sqlwal.add_columns(con, "reviews", _ADDED)  # a file from before sign-in gains the columns
    return con


def add_review(task: str, model_id: str, path: str, tag: str, note: str = "", *, true_label: str | None = None,
               error_type: str | None = None, probability: float | None = None, threshold: float | None = None,
               reviewer: str = "", reviewer_sub: str = "", reviewer_role: str = "",
               db: str | Path | None = None) -> int:
    """Store one tag; returns its id. `tag` is a key of TAGS. `reviewer`: who (e-mail or name), with the identity
    token's subject and role when signed in."""
    if tag not in TAGS:
        raise ValueError(f"unknown tag {tag!r}; choose one of {list(TAGS)}")
    if error_type is not None and error_type not in ERROR_TYPES:
        raise ValueError(f"unknown error type {error_type!r}; choose one of {list(ERROR_TYPES)}")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with closing(_connect(db)) as con, con:
        cur = con.execute(
            "INSERT INTO reviews (created_at, task, model_id, path, true_label, error_type, probability, threshold, tag, note,"
            " reviewer, reviewer_sub, reviewer_role) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (now, task, model_id, path, true_label, error_type,
             None if probability is None else float(probability), None if threshold is None else float(threshold),
             tag, (note or "").strip(), (reviewer or "").strip(), reviewer_sub or "", reviewer_role or ""),
        )
        return int(cur.lastrowid)


def delete_review(review_id: int, db: str | Path | None = None) -> None:
    with closing(_connect(db)) as con, con:
        con.execute("DELETE FROM reviews WHERE id = ?", (int(review_id),))


def list_reviews(task: str | None = None, model_id: str | None = None, db: str | Path | None = None) -> pd.DataFrame:
    """All tag events, newest first."""
    clauses, args = sqlfilters.equal_clauses({"task": task, "model_id": model_id})
    q = f"SELECT * FROM reviews{sqlfilters.where(clauses)} ORDER BY id DESC"
    with closing(_connect(db)) as con:
        df = pd.read_sql_query(q, con, params=args)
    return df[COLUMNS] if not df.empty else pd.DataFrame(columns=COLUMNS)


def latest_tags(task: str, db: str | Path | None = None) -> dict[str, dict]:
    """path -> newest tag row for that case (any model: a wrong label is wrong for every model)."""
    df = list_reviews(task, db=db)
    out: dict[str, dict] = {}
    for row in df.to_dict("records"):  # newest first
        out.setdefault(row["path"], row)
    return out


def export_csv(task: str | None = None, db: str | Path | None = None) -> bytes:
    df = list_reviews(task, db=db)
    df = df.assign(tag_label=df["tag"].map(TAGS))
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


def misclassified(test: pd.DataFrame, threshold: float, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """False negatives and false positives of a prediction frame (path, label, score, y) at `threshold`.

    Adds `error` ('fn'/'fp') and `confidence` (how far on the wrong side, 0..1: 1 - score for a missed case,
    score for a false alarm) and sorts the most confident mistakes first. `extra` (e.g. the manifest with `file`,
    `subtype`) is merged on `path`.
    """
    df = test.copy()
    flagged = df["score"].to_numpy() >= threshold
    y = df["y"].to_numpy().astype(bool)
    df["error"] = np.where(y & ~flagged, "fn", np.where(~y & flagged, "fp", ""))
    df = df[df["error"] != ""].copy()
    df["confidence"] = np.where(df["error"] == "fn", 1 - df["score"], df["score"])
    if extra is not None and not df.empty:
        cols = [c for c in extra.columns if c not in ("label", "y", "score") or c == "path"]
        df = df.merge(extra[cols].drop_duplicates("path"), on="path", how="left")
    return df.sort_values(["confidence", "path"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
