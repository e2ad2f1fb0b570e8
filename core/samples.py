"""Copy a few TEST-split images per task and class into sample_images/ for offline demos.

    python -m core.samples [--per-class 3] [--out sample_images] [--task T]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.data.samples import SAMPLES_DIR, write_samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-class", type=int, default=3)
    p.add_argument("--out", type=Path, default=SAMPLES_DIR)
    p.add_argument("--task", action="append", help="only this task (repeatable)")
    a = p.parse_args(argv)
    written = write_samples(a.out, a.per_class, a.task)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
