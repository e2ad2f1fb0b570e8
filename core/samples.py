"""Re-make the bundled demo samples in sample_images/ from the datasets, by the rule in core.data.samples.

    python -m core.samples --bundle [--task T] [--out sample_images]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.data.samples import SAMPLES_DIR, write_bundle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="store_true", required=True, help="re-make the bundled set by the rule")
    p.add_argument("--out", type=Path, default=SAMPLES_DIR)
    p.add_argument("--task", action="append", help="only this task (repeatable)")
    a = p.parse_args(argv)
    return 0 if write_bundle(a.out, a.task) else 1


if __name__ == "__main__":
    sys.exit(main())
