"""Score a manifest with a model and print metrics; the last line of output is one JSON object.

    python -m core.evaluate --task pneumonia --model secondlook_cnn [--manifest PATH] [--split test] [--out scores.csv]

    python -m core.evaluate --task malaria --model secondlook_long --patient-intervals   # no model needed
    python -m core.evaluate --all --refresh        # every bundled model of every task (or of --task)
    python -m core.evaluate --all --external       # the cards' external results (core.cards.external)

Without --manifest it uses the task's dataset. It writes nothing to models/ unless asked: with --update-records, the
task's own test split also rewrites models/<task>/<id>/test_predictions.csv and the card's test metrics.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cards.patient_cards import add_patient_level
from core.cards.external import add_external_brief
from core.cards.records import evaluate_split, headline, model_records, refresh_records
from core.registry import TASKS
from core.models.selection import default_model
from core.models.store import bundled_models, write_predictions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task")
    p.add_argument("--model")
    p.add_argument("--all", action="store_true", help="every bundled model (of --task, or of every task): with --refresh or --patient-intervals")
    p.add_argument("--external", action="store_true",
                   help="record the card's external results (effusion: verified NIH test images; malaria: field cells)")
    p.add_argument("--patient-intervals", action="store_true",
                   help="add patient-level (cluster bootstrap) CIs to the card from the stored predictions and the manifest; no model is loaded")
    p.add_argument("--manifest", type=Path, help="CSV with path,label (paths relative to its folder)")
    p.add_argument("--split", help="keep only rows with this split (default: test for the task's dataset, all rows for --manifest)")
    p.add_argument("--out", type=Path, help="write per-image scores (path,label,score) here")
    p.add_argument("--threshold", type=float, help="operating point (default: the model card's)")
    p.add_argument("--update-records", "--update-card", dest="update_records", action="store_true",
                   help="on the own test split: rewrite test_predictions.csv and the card's test metrics")
    p.add_argument("--refresh", action="store_true",
                   help="re-score validation and test with the current inference code, re-choose the threshold on validation, update the card")
    a = p.parse_args(argv)
    if a.all:
        if not (a.refresh or a.patient_intervals or a.external) or a.model:
            p.error("--all goes with --refresh, --patient-intervals or --external, without --model")
        for task in [a.task] if a.task else list(TASKS):
            for mid in bundled_models(task):
                rec = add_external_brief(task, mid) if a.external else model_records(task, mid, a.refresh)
                print(json.dumps({"task": task, "model": mid, **rec}, default=float), flush=True)
        return 0
    if not a.task:
        p.error("--task is required (or --all)")
    model_id = a.model or default_model(a.task)
    if a.external:
        print(json.dumps({"task": a.task, "model": model_id, **add_external_brief(a.task, model_id)}, default=float))
        return 0
    if a.patient_intervals and not a.refresh:
        blocks = add_patient_level(a.task, model_id)
        print(json.dumps({"task": a.task, "model": model_id, **blocks}, default=float))
        return 0
    if a.refresh:
        res = refresh_records(a.task, model_id)
        print(json.dumps({"task": a.task, "model": model_id, "threshold_before": res["threshold_before"],
                          "validation_auc": res["validation_auc"], **headline(res["test"])}, default=float))
        return 0
    df, scores, summ = evaluate_split(a.task, model_id, a.manifest, a.split, a.threshold, a.update_records)
    if a.out:
        write_predictions(a.out, df["path"].tolist(), df["label"].tolist(), scores)
    print(json.dumps({"task": a.task, "model": model_id, **headline(summ)}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
