"""Print the README's results tables from the model cards and field records: `python -m core.report`.

`--readme` writes them into README.md in place (each table found by its header row), so the README is never
edited by hand; the tests check that it shows what this prints."""
from __future__ import annotations

import argparse
import sys

from core.config import REPO_ROOT
from core.evaluation.report import external_table, results_table
from core.fields.records import record_table


def tables() -> list[str]:
    return [results_table(), external_table(), record_table()]


def replace_table(text: str, table: str) -> str:
    """`text` with the table that has `table`'s header row replaced by `table` (ValueError when it has none)."""
    lines, header = text.split("\n"), table.split("\n")[0]
    if header not in lines:
        raise ValueError(f"README has no table with the header {header[:60]!r}...")
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + table.split("\n") + lines[end:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", action="store_true", help="write the tables into README.md instead of printing them")
    a = p.parse_args(argv)
    if not a.readme:
        print("\n\n".join(tables()))
        return 0
    path = REPO_ROOT / "README.md"
    text = path.read_text()
    for t in tables():
        text = replace_table(text, t)
    path.write_text(text)
    print(f"wrote {len(tables())} tables into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
