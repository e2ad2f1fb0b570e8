"""Who is using SecondLook and what their role lets them do.

A user comes from a signed-in identity token (OIDC claims), or is the account running the app in local single-user
mode or a command. Roles come from a claim of the token when the provider sends one (`roles`, else `groups`; the
claim name can be set with `SECONDLOOK_ROLE_CLAIM`), else from a small local table a site admin edits
(`python -m core.users grant EMAIL ROLE`), else the user is signed in with the least-privileged role, `viewer`, which
may do nothing but read Home, and the record says why.

What a role may do is one table (`ALLOWED`); the app hides what a role may not do and refuses it on the server with
`require`, so a crafted rerun cannot do it either.
"""
from __future__ import annotations

import getpass
import os
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.config import data_file, private_db

ROLES: dict[str, str] = {
    "clinician": "scores chest X-rays, confirms or disagrees, downloads and sends reports",
    "technician": "the same for blood smears: cell crops and whole fields, and the cell review",
    "site_admin": "builds, saves and applies site profiles, configures the PACS, monitoring, research mode",
    "auditor": "reads and exports the audit log, monitoring",
    "viewer": "signed in without a role: Home only",
}
WORK_ROLES = ("clinician", "technician", "site_admin", "auditor")
LEAST = "viewer"
ALLOWED: dict[str, frozenset[str]] = {  # action -> roles that may do it
    "score_xray": frozenset({"clinician"}),
    "score_smear": frozenset({"technician"}),
    "confirm": frozenset({"clinician", "technician"}),
    "report": frozenset({"clinician", "technician"}),  # PDF, DICOM SR, send to the PACS
    "site_profiles": frozenset({"site_admin"}),  # build, save, apply
    "pacs_config": frozenset({"site_admin"}),
    "audit": frozenset({"auditor"}),  # read and export
    "monitor": frozenset({"site_admin", "auditor"}),
    "research": frozenset({"site_admin"}),
}
ACTIONS = tuple(ALLOWED)
SOURCES = ("token", "table", "default", "local")


class PermissionDenied(PermissionError):
    """A user tried an action their role does not allow; the message names both."""


@dataclass(frozen=True)
class User:
    sub: str  # the token's subject, or "local:<account>"
    email: str = ""
    name: str = ""
    roles: tuple[str, ...] = ()
    source: str = "local"  # where the roles came from: token, table, default (none found), local
    note: str = ""  # why, when the roles are not the token's own

    @property
    def label(self) -> str:
        """How records and reports name the user: the e-mail, else the name, else the subject."""
        return self.email or self.name or self.sub

    @property
    def role(self) -> str:
        return ",".join(self.roles) or LEAST

    def can(self, action: str) -> bool:
        if action not in ALLOWED:
            raise ValueError(f"unknown action {action!r}; one of {ACTIONS}")
        return bool(ALLOWED[action] & set(self.roles))


def local_user(account: str | None = None) -> User:
    """The person at this computer (local single-user mode, a command): every role, named by the OS account."""
    try:
        name = account or getpass.getuser()
    except Exception:  # no account name (some containers)
        name = "unknown"
    return User(sub=f"local:{name}", name=name, roles=WORK_ROLES, source="local")


def require(user: User, action: str) -> None:
    """Raise PermissionDenied unless `user` may do `action`."""
    if not user.can(action):
        who = ", ".join(sorted(ALLOWED[action]))
        raise PermissionDenied(f"{user.label} ({user.role}) may not {action.replace('_', ' ')}: that is for {who}")


def normalise_role(value: str) -> str | None:
    """'Site Admin', 'site-admin', 'secondlook:site_admin', 'SecondLook-Clinician' -> a known role, else None."""
    v = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    for prefix in ("secondlook:", "secondlook_", "secondlook/"):
        if v.startswith(prefix):
            v = v[len(prefix):]
    return v if v in ROLES else None


def _claim_roles(claims: Mapping, claim: str | None) -> tuple[bool, tuple[str, ...]]:
    """(the claim was present, the known roles in it)."""
    names = [claim] if claim else ["roles", "groups"]
    for name in names:
        if name in claims and claims[name] is not None:
            raw = claims[name]
            items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, Iterable) else []
            roles = []
            for r in items:
                n = normalise_role(r)
                if n and n != LEAST and n not in roles:
                    roles.append(n)
            return True, tuple(roles)
    return False, ()


def from_claims(claims: Mapping, *, role_claim: str | None = None, db: str | Path | None = None) -> User:
    """The user an identity token describes. Roles: the token's claim, else the local table, else `viewer`."""
    sub = str(claims.get("sub") or "").strip()
    email = str(claims.get("email") or "").strip().lower()
    if claims.get("email_verified") is False:
        email_for_table = ""  # an unverified address must not pick up someone else's role
    else:
        email_for_table = email
    name = str(claims.get("name") or claims.get("preferred_username") or "").strip()
    if not sub:
        sub = f"email:{email}" if email else "unknown"
    claim = role_claim or os.environ.get("SECONDLOOK_ROLE_CLAIM", "").strip() or None
    present, roles = _claim_roles(claims, claim)
    if roles:
        return User(sub, email, name, roles, "token")
    table = table_roles([sub, email_for_table] if email_for_table else [sub], db=db)
    if table:
        note = "roles from the local table" + (" (the token's role claim named no SecondLook role)" if present else "")
        return User(sub, email, name, table, "table", note)
    why = ("the token's role claim named no SecondLook role" if present
           else "the token carried no role claim") + " and the local table has no entry: least-privileged role"
    return User(sub, email, name, (LEAST,), "default", why)


# ------------------------------------------------------------------ the local role table ------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS roles (
    who TEXT NOT NULL,          -- a token subject or a lower-case e-mail
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (who, role)
);
"""


def db_path() -> Path:
    """`SECONDLOOK_USERS`, else `users.sqlite` in `SECONDLOOK_HOME`."""
    return data_file("users.sqlite", "SECONDLOOK_USERS")


def _connect(db: str | Path | None) -> sqlite3.Connection:
    p = private_db(Path(db).expanduser() if db is not None else db_path())
    con = sqlite3.connect(p, timeout=30)
    con.executescript(_SCHEMA)
    return con


def _key(who: str) -> str:
    """A table key: an e-mail in lower case, a token subject as it is."""
    return who.strip().lower() if "@" in who else who.strip()


def table_roles(who: Iterable[str], db: str | Path | None = None) -> tuple[str, ...]:
    keys = [_key(w) for w in who if w and w.strip()]
    if not keys or not (Path(db).expanduser() if db is not None else db_path()).is_file():
        return ()  # no table yet: looking creates none
    with closing(_connect(db)) as con:
        got = con.execute(f"SELECT DISTINCT role FROM roles WHERE who IN ({','.join('?' * len(keys))}) ORDER BY role",
                          keys).fetchall()
    return tuple(r for (r,) in got if r in WORK_ROLES)


def grant(who: str, role: str, *, by: str, db: str | Path | None = None) -> None:
    r = normalise_role(role)
    if r is None or r == LEAST:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(WORK_ROLES)}")
    w = _key(who)
    if not w:
        raise ValueError("grant: give an e-mail address or a token subject")
    with closing(_connect(db)) as con, con:
        con.execute("INSERT OR REPLACE INTO roles (who, role, granted_by, granted_at) VALUES (?,?,?,?)",
                    (w, r, by, datetime.now(timezone.utc).isoformat(timespec="seconds")))


def revoke(who: str, role: str | None = None, *, db: str | Path | None = None) -> int:
    w = _key(who)
    with closing(_connect(db)) as con, con:
        if role is None:
            cur = con.execute("DELETE FROM roles WHERE who = ?", (w,))
        else:
            cur = con.execute("DELETE FROM roles WHERE who = ? AND role = ?", (w, normalise_role(role) or role))
        return cur.rowcount


def table(db: str | Path | None = None) -> list[dict]:
    with closing(_connect(db)) as con:
        rows = con.execute("SELECT who, role, granted_by, granted_at FROM roles ORDER BY who, role").fetchall()
    return [dict(zip(("who", "role", "granted_by", "granted_at"), r)) for r in rows]
