"""Print the README's results table from the model cards: `python -m core.report`."""
from __future__ import annotations

import sys

from core.evaluation.report import results_table


def main(argv: list[str] | None = None) -> int:
    print(results_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
