"""Site profiles: a named local operating point and recalibration for one model file, kept in SQLite.

The database is `sites.sqlite` in `SECONDLOOK_HOME` (core.config.data_file: a per-user data folder by default, never
the repository; readable by this user only); `SECONDLOOK_SITES` moves it. Never inside `models/`. A profile names
the model file it was measured on by sha256 and is refused for any other file (`check_model`). Profiles export to
and import from JSON. Saving is one transaction: a profile is stored whole or not at all.
"""
from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core import sqlfilters, sqlwal
from core.config import data_file, private_db

FORMAT = "secondlook-site-profile/1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS site_profiles (
    name TEXT NOT NULL,
    task TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    n INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    threshold REAL NOT NULL,
    shipped_threshold REAL NOT NULL,
    calibration TEXT,
    metrics TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_by_role TEXT NOT NULL DEFAULT '',
    created_by_sub TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (name, task, model_id)
);
CREATE TABLE IF NOT EXISTS applied (   -- the profile every user of this installation scores with (a site admin's choice)
    task TEXT NOT NULL,
    model_id TEXT NOT NULL,
    name TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (task, model_id)
);
"""
_ADDED = {c: "TEXT NOT NULL DEFAULT ''" for c in ("created_by", "created_by_role", "created_by_sub")}  # since sign-in


class ProfileError(ValueError):
    """A profile cannot be saved, found, imported or used as asked (the message says which and why)."""


@dataclass
class SiteProfile:
    name: str
    task: str
    model_id: str
    model_sha256: str
    n: int
    threshold: float  # the site operating point on the model's raw score (the shipped one when too few cases)
    shipped_threshold: float
    calibration: dict | None  # {"method": "platt_logit", "a", "b"} or None
    metrics: dict  # the validation report (core.site.validate.evaluate_site)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    note: str = ""
    created_by: str = ""  # who saved it (e-mail, else account); "" for profiles saved before sign-in existed
    created_by_role: str = ""
    created_by_sub: str = ""  # the identity token's subject (or local:<account>)

    @property
    def changes_threshold(self) -> bool:
        return abs(self.threshold - self.shipped_threshold) > 1e-12

    def to_json(self) -> dict:
        return {"format": FORMAT, **asdict(self)}


def db_path() -> Path:
    """`SECONDLOOK_SITES`, else `sites.sqlite` in `SECONDLOOK_HOME` (next to `SECONDLOOK_REVIEWS` when only that is set)."""
    return data_file("sites.sqlite", "SECONDLOOK_SITES", beside="SECONDLOOK_REVIEWS")


def _connect(db: str | Path | None = None) -> sqlite3.Connection:
    p = private_db(Path(db) if db is not None else db_path())
    con = sqlite3.connect(p, timeout=10)
    con.executescript(_SCHEMA)
    sqlwal.add_columns(con, "site_profiles", _ADDED)  # a file from before sign-in gains the columns
    return con


def _clean(o):
    """JSON-safe copy: NaN/inf -> None (SQLite TEXT and JSON files both stay strict JSON)."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        return _clean(o.item())
    return o


def _validate(p: SiteProfile) -> None:
    from core.registry import get_task

    problems = []
    if not str(p.name).strip():
        problems.append("the profile needs a name")
    try:
        get_task(p.task).model(p.model_id)
    except KeyError as exc:
        problems.append(str(exc.args[0]))
    if not (isinstance(p.model_sha256, str) and len(p.model_sha256) == 64):
        problems.append("model_sha256 must be the model file's 64-hex-digit checksum")
    for key in ("threshold", "shipped_threshold"):
        v = getattr(p, key)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            problems.append(f"{key} must be a probability in [0, 1], got {v!r}")
    if p.calibration is not None and not all(isinstance(p.calibration.get(k), (int, float)) for k in ("a", "b")):
        problems.append("calibration must have numeric 'a' and 'b'")
    if not isinstance(p.n, int) or p.n <= 0:
        problems.append(f"n must be a positive number of cases, got {p.n!r}")
    if problems:
        raise ProfileError(f"profile '{p.name}': " + "; ".join(problems))


def save(p: SiteProfile, db: str | Path | None = None, replace: bool = True) -> SiteProfile:
    """Store a profile (one transaction). With `replace=False` an existing profile of that name is an error."""
    _validate(p)
    row = (p.name.strip(), p.task, p.model_id, p.model_sha256, int(p.n), p.created_at, float(p.threshold),
           float(p.shipped_threshold), json.dumps(_clean(p.calibration)) if p.calibration else None,
           json.dumps(_clean(p.metrics), allow_nan=False), p.note, p.created_by or "", p.created_by_role or "",
           p.created_by_sub or "")
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    try:
        with closing(_connect(db)) as con, con:
            con.execute(f"{verb} INTO site_profiles (name, task, model_id, model_sha256, n, created_at, threshold, "
                        "shipped_threshold, calibration, metrics, note, created_by, created_by_role, created_by_sub) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        row)
    except sqlite3.IntegrityError:
        raise ProfileError(f"a profile '{p.name}' for {p.task}/{p.model_id} already exists; choose another name or replace it") from None
    return p


def _from_row(r: tuple) -> SiteProfile:
    name, task, model_id, sha, n, created, thr, shipped, cal, met, note, by, role, sub = r
    return SiteProfile(name, task, model_id, sha, int(n), float(thr), float(shipped), json.loads(cal) if cal else None,
                       json.loads(met), created, note, by or "", role or "", sub or "")


_COLS = ("name, task, model_id, model_sha256, n, created_at, threshold, shipped_threshold, calibration, metrics, note, "
         "created_by, created_by_role, created_by_sub")


def list_profiles(task: str | None = None, model_id: str | None = None, db: str | Path | None = None) -> list[SiteProfile]:
    if not (Path(db) if db is not None else db_path()).is_file():
        return []  # reading never creates the database
    clauses, args = sqlfilters.equal_clauses({"task": task, "model_id": model_id})
    q = f"SELECT {_COLS} FROM site_profiles{sqlfilters.where(clauses)}"
    with closing(_connect(db)) as con:
        return [_from_row(r) for r in con.execute(q + " ORDER BY name, task, model_id", args).fetchall()]


def get(name: str, task: str, model_id: str | None = None, db: str | Path | None = None) -> SiteProfile:
    """The profile `name` for a task's model. Without `model_id`: the task's default model's, else the only one."""
    found = [p for p in list_profiles(task, db=db) if p.name == name]
    if model_id is not None:
        hit = [p for p in found if p.model_id == model_id]
        if hit:
            return hit[0]
        others = f" (it exists for {', '.join(p.model_id for p in found)})" if found else ""
        raise ProfileError(f"no site profile '{name}' for {task}/{model_id}{others}; build it with "
                           f"python -m core.site --task {task} --model {model_id} --manifest CSV --name {name}")
    if not found:
        raise ProfileError(f"no site profile '{name}' for task {task}; build it with python -m core.site --task {task} --manifest CSV --name {name}")
    if len(found) == 1:
        return found[0]
    from core.models.selection import default_model

    dm = default_model(task)
    hit = [p for p in found if p.model_id == dm]
    if hit:
        return hit[0]
    raise ProfileError(f"site profile '{name}' exists for several {task} models ({', '.join(p.model_id for p in found)}); name one with --model")


def delete(name: str, task: str, model_id: str, db: str | Path | None = None) -> None:
    with closing(_connect(db)) as con, con:
        con.execute("DELETE FROM site_profiles WHERE name = ? AND task = ? AND model_id = ?", (name, task, model_id))
        con.execute("DELETE FROM applied WHERE name = ? AND task = ? AND model_id = ?", (name, task, model_id))


def apply_for_everyone(name: str | None, task: str, model_id: str, *, by: str, db: str | Path | None = None) -> None:
    """Make `name` the profile every user scores this model with (None: the shipped operating point again)."""
    with closing(_connect(db)) as con, con:
        if name is None:
            con.execute("DELETE FROM applied WHERE task = ? AND model_id = ?", (task, model_id))
            return
        if not con.execute("SELECT 1 FROM site_profiles WHERE name = ? AND task = ? AND model_id = ?",
                           (name, task, model_id)).fetchone():
            raise ProfileError(f"no site profile '{name}' for {task}/{model_id}")
        con.execute("INSERT OR REPLACE INTO applied (task, model_id, name, applied_by, applied_at) VALUES (?,?,?,?,?)",
                    (task, model_id, name, by, datetime.now(timezone.utc).isoformat(timespec="seconds")))


def applied(task: str, model_id: str, db: str | Path | None = None) -> dict | None:
    """{"name", "applied_by", "applied_at"} of the profile applied for everyone, else None."""
    if not (Path(db) if db is not None else db_path()).is_file():
        return None
    with closing(_connect(db)) as con:
        r = con.execute("SELECT name, applied_by, applied_at FROM applied WHERE task = ? AND model_id = ?",
                        (task, model_id)).fetchone()
    return dict(zip(("name", "applied_by", "applied_at"), r)) if r else None


def check_model(p: SiteProfile, sha256: str) -> None:
    """Refuse a profile measured on another model file: its threshold and calibration belong to that file."""
    if p.model_sha256 != sha256:
        raise ProfileError(
            f"site profile '{p.name}' was measured on {p.task}/{p.model_id} with model file {p.model_sha256[:12]}…, but the "
            f"model file is now {str(sha256)[:12]}…. Its threshold and calibration do not apply to this file; rebuild the profile."
        )


def current_sha256(task: str, model_id: str) -> str:
    from core.models.store import read_card

    return str(read_card(task, model_id).get("sha256", ""))


def export_json(p: SiteProfile) -> bytes:
    return json.dumps(_clean(p.to_json()), indent=2, allow_nan=False).encode("utf-8")


def import_json(data: bytes | str, db: str | Path | None = None, sha256: str | None = None, replace: bool = False) -> SiteProfile:
    """Read an exported profile, check it (format, fields, model file) and save it; nothing is saved on any error.

    `sha256` is the local model file's checksum (default: the bundled model's card).
    """
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"not a site profile: the file is not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ProfileError(f"not a site profile: expected \"format\": \"{FORMAT}\"")
    want = {"name", "task", "model_id", "model_sha256", "n", "threshold", "shipped_threshold", "calibration", "metrics"}
    missing = sorted(want - set(obj))
    if missing:
        raise ProfileError(f"site profile is missing {', '.join(missing)}")
    fields_ = {k: obj[k] for k in (*want, "created_at", "note", "created_by", "created_by_role", "created_by_sub") if k in obj}
    p = SiteProfile(**fields_)
    _validate(p)
    check_model(p, sha256 if sha256 is not None else current_sha256(p.task, p.model_id))
    return save(p, db, replace=replace)
