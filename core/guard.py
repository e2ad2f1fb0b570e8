"""Input-guard maintenance: measure the modality guard, measure or fit the feature-space OOD statistics.

    python -m core.guard measure [--split test]
    python -m core.guard measure-ood
    python -m core.guard fit-ood --task effusion [--model secondlook_cnn]
"""
from __future__ import annotations

import argparse
import json
import logging

from core.training.guards import fit_and_save_ood, measure_modality_guard, measure_ood
from core.models.store import bundled_models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.guard", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="modality-guard warning rates on the real datasets")
    m.add_argument("--split", default="test")
    sub.add_parser("measure-ood", help="OOD flag rates of every bundled model on each task's test images")
    f = sub.add_parser("fit-ood", help="fit and cache OOD statistics for trained models")
    f.add_argument("--task", required=True)
    f.add_argument("--model", help="model id (default: every bundled model of the task)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.cmd == "measure":
        print(json.dumps(measure_modality_guard(a.split), indent=2))
        return 0
    if a.cmd == "measure-ood":
        for row in measure_ood():
            print(json.dumps(row))
        return 0
    for model_id in [a.model] if a.model else bundled_models(a.task):
        print(fit_and_save_ood(a.task, model_id))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
