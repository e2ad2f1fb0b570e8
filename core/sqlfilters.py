"""The WHERE clause of the app's small SQLite stores (audit log, reviews, site profiles): one way to filter."""
from __future__ import annotations

from datetime import datetime, timezone


def equal_clauses(filters: dict[str, object]) -> tuple[list[str], list]:
    """(["col = ?", ...], [value, ...]) for every filter that is not None; column names come from our code only."""
    cols = [c for c, v in filters.items() if v is not None]
    return [f"{c} = ?" for c in cols], [filters[c] for c in cols]


def where(clauses: list[str]) -> str:
    """' WHERE a AND b' ('' without clauses)."""
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def iso(v) -> str:
    """A time as stored: ISO-8601 UTC text (a naive datetime is taken as UTC; text is kept as given)."""
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat(timespec="microseconds")
    return str(v)  # a date or an ISO string: compared as text, which sorts like time for ISO-8601 UTC


def user_and_time(user: str | None, since, until, clauses: list[str], args: list) -> None:
    """Add the user (a token subject or an e-mail) and a [since, until) window of `created_at` to a filter."""
    if user:
        clauses.append("(user_sub = ? OR user_email = ?)")
        args += [user, user.strip().lower()]
    if since:
        clauses.append("created_at >= ?")
        args.append(iso(since))
    if until:
        clauses.append("created_at < ?")
        args.append(iso(until))
