"""Train a registered model from its task's manifest.

    python -m core.train --task pneumonia --model secondlook_cnn [--limit 300 --epochs 2]

Writes models/<task>/<id>/model.keras, val_predictions.csv and card.json, then evaluates on the
test split (core.evaluate) to add test metrics and test_predictions.csv to the card.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.models.training import train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--limit", type=int, default=0, help="train on about N images (smoke run)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, help="write to this folder instead of models/<task>/<id> (no test evaluation)")
    p.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    a = p.parse_args(argv)
    train(a.task, a.model, a.epochs, a.limit, a.seed, evaluate_test=not a.no_test, out_dir=a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
