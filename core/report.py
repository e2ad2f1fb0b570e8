"""The generated markdown tables, from the model cards and field records: `python -m core.report`.

Prints docs/evaluation.md's results tables (every bundled model on test and external sets, whole-field screening).
`--write` writes them into docs/evaluation.md in place and `--readme` writes the README's "What ships" table into
README.md (each table found by its header row), so neither file's tables are edited by hand; the tests check that
the files show what this makes.
"""
from __future__ import annotations

import argparse
import sys

from core.config import REPO_ROOT
from core.cards.report import evaluation_tables, readme_tables, write_tables


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="write the results tables into docs/evaluation.md instead of printing them")
    p.add_argument("--readme", action="store_true", help="write the \"What ships\" table into README.md")
    a = p.parse_args(argv)
    if not (a.write or a.readme):
        print("\n\n".join(evaluation_tables()))
        return 0
    for wanted, path, tables in ((a.write, REPO_ROOT / "docs" / "evaluation.md", evaluation_tables),
                                 (a.readme, REPO_ROOT / "README.md", readme_tables)):
        if wanted:
            made = tables()
            write_tables(path, made)
            print(f"wrote {len(made)} table(s) into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
