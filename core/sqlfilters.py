"""The WHERE clause of the app's small SQLite stores (audit log, reviews, site profiles): one way to filter."""
from __future__ import annotations


def equal_clauses(filters: dict[str, object]) -> tuple[list[str], list]:
    """(["col = ?", ...], [value, ...]) for every filter that is not None; column names come from our code only."""
    cols = [c for c, v in filters.items() if v is not None]
    return [f"{c} = ?" for c in cols], [filters[c] for c in cols]


def where(clauses: list[str]) -> str:
    """' WHERE a AND b' ('' without clauses)."""
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""
