"""Print the README's results tables from the model cards and field records: `python -m core.report`."""
from __future__ import annotations

import sys

from core.evaluation.report import external_table, results_table
from core.fields.records import record_table


def main(argv: list[str] | None = None) -> int:
    print(results_table())
    print()
    print(external_table())
    print()
    print(record_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
