"""Print the README's results tables from the model cards and field records: `python -m core.report`.

`--readme` writes them into README.md in place (each table found by its header row), so the README is never
edited by hand; the tests check that it shows what this prints."""
from __future__ import annotations

import argparse
import sys

from core.config import REPO_ROOT
from core.cards.report import readme_tables, replace_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", action="store_true", help="write the tables into README.md instead of printing them")
    a = p.parse_args(argv)
    tables = readme_tables()
    if not a.readme:
        print("\n\n".join(tables))
        return 0
    path = REPO_ROOT / "README.md"
    text = path.read_text()
    for t in tables:
        text = replace_table(text, t)
    path.write_text(text)
    print(f"wrote {len(tables)} tables into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
