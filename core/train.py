"""Train a registered model from its task's manifest.

    python -m core.train --task pneumonia --model secondlook_cnn [--limit 300 --epochs 2]
    python -m core.train --task effusion --model seed_lenet --fold 0 --folds 5     # one cross-validation fold
    python -m core.train --task pneumonia --model secondlook_cnn_folds            # a fold ensemble: assembled, not trained

Writes models/<task>/<id>/model.keras, val_predictions.csv and card.json, then evaluates on the
test split (core.evaluate) to add test metrics and test_predictions.csv to the card. With --fold/--folds it
trains on the other patient-grouped folds of `train` and writes models/<task>/<id>/cv/fold<i>.json and
fold<i>_oof.csv and the fold's weights fold<i>.keras, then refreshes the card's `cv` block
(core.training.cv). A fold ensemble (core.training.fold_ensemble) puts a complete CV's fold models together.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.training.cv import train_fold
from core.registry import get_model_spec
from core.training.fit import train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--limit", type=int, default=0, help="train on about N images (smoke run)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, help="write to this folder instead of models/<task>/<id> (no test evaluation)")
    p.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    p.add_argument("--fold", type=int, help="cross-validation: train on the other folds, score this one (0-based)")
    p.add_argument("--folds", type=int, help="cross-validation: number of patient-grouped folds (k)")
    a = p.parse_args(argv)
    if (a.fold is None) != (a.folds is None):
        p.error("--fold and --folds go together")
    if get_model_spec(a.task, a.model).fold_ensemble_of:
        if a.fold is not None or a.limit or a.epochs or a.out:
            p.error(f"{a.model} is a fold ensemble: it is assembled from its recipe's fold models, not trained")
        from core.cards.records import build_fold_ensemble

        print({"test": build_fold_ensemble(a.task, a.model)}, flush=True)
        return 0
    if a.fold is not None:
        if not 0 <= a.fold < a.folds:
            p.error(f"--fold must be in 0..{a.folds - 1}")
        train_fold(a.task, a.model, a.fold, a.folds, a.epochs, a.limit, a.seed, out_dir=a.out)
        if a.out is None:  # the bundled recipe's folds: once all are in, its second-site check (model choice)
            from core.training.site_check import record_site_check

            record_site_check(a.task, a.model)
        return 0
    train(a.task, a.model, a.epochs, a.limit, a.seed, out_dir=a.out)
    if not a.no_test and a.out is None:  # a bundled model: its one scoring of the test split (and external set)
        from core.cards.external import external_summary
        from core.cards.records import score_test_once
        from core.models.store import read_card

        print(f"test: {score_test_once(a.task, a.model)}", flush=True)
        print(f"external: {external_summary(read_card(a.task, a.model).get('external'))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
