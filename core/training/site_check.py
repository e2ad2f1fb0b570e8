"""Second-site check of a cross-validated recipe: does its operating point travel to another lab's cells?

Why: the malaria candidates are within a few thousandths of each other in patient-grouped CV and have the same size,
so the one-SE rule alone would fall back to registry order; yet the NIH-only recipes' shipped threshold lost a fifth of
its sensitivity on another lab's field cells. The tie-break is therefore the recipe's fold models, averaged as they
would ship, at the operating point their out-of-fold scores give, on the task's second-site *validation* cells
(malaria: the annotated cells of the IML fields' validation session S3; never the test session S1). Decided on
2026-12-02, before the two-site recipe's cross-validation was run.

Caveat, written on the card as `seen_in_training`: the two-site recipe trains on the same lab's session S2 and stops
early on S3's cells, so its figure here is optimistic; the other recipes have never seen that lab.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.evaluation import metrics
from core.models.store import SITE_CHECK

SITE_CSV = "second_site.csv"  # per-cell calibrated scores, in the recipe's cv folder
SECOND_SITE = {"malaria": "malaria_fields"}  # task -> dataset whose validation session is the second-site check


def site_scores(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Sensitivity, specificity, their mean and the AUC of calibrated scores at one threshold (plain arrays in)."""
    r = metrics.rates(metrics.confusion_at(y, scores, threshold))
    return {"n": int(np.size(y)), "n_positive": int(np.sum(y)), "threshold": float(threshold),
            "auc": metrics.roc_auc(y, scores), **{k: r[k] for k in ("sensitivity", "specificity", "balanced_accuracy")}}


def second_site_check(task: str, model_id: str, block: dict, root: str | Path | None = None) -> dict | None:
    """The recipe's fold models on the second site's validation cells (None for a task without one or an incomplete
    CV). Needs the dataset and the fold weights."""
    if task not in SECOND_SITE or not block or not block["complete"]:
        return None
    from core.fields import cuts as fc
    from core.inference.calibrate import apply_calibration
    from core.inference.forward import predict_tensors
    from core.inference.preprocess import prepare
    from core.training.cv import cv_dir, pooled_oof
    from core.training.fold_ensemble import load_members, operating_point
    from core.models.networks import ensemble
    from core.registry import get_model_spec

    cal, _, threshold, _ = operating_point(task, pooled_oof(task, model_id, root))
    spec = get_model_spec(task, model_id)
    crops, y, boxes = fc.session_crops(fc.STOP_SESSIONS, cut=spec.input.field_cut, stain=spec.input.field_stain)
    x = np.stack([prepare(c, spec.input) for c in crops])
    model = ensemble(load_members(task, model_id, block["k"], root, block), f"{model_id}_site_check")
    scores = apply_calibration(predict_tensors(model, x), cal)
    # per-cell scores beside the fold records, so a test can re-derive the figures without re-scoring 13k cells
    boxes.assign(infected=y.astype(np.int8), score=scores).to_csv(cv_dir(task, model_id, root) / SITE_CSV, index=False)
    return {"dataset": SECOND_SITE[task], "sessions": list(fc.STOP_SESSIONS), "n_fields": int(boxes["path"].nunique()),
            "scored_by": f"the {block['k']} fold models, logits averaged, calibration (chosen by cross-fitting) and threshold "
                         "from their out-of-fold scores",
            "seen_in_training": seen_in_training(spec), **site_scores(y, scores, threshold)}


def seen_in_training(spec) -> str:
    """What the recipe's training saw of the check's lab: the disclosure that makes its figure readable."""
    if not spec.train.second_site:
        return "nothing: the recipe has never seen this lab"
    from core.fields import cuts as fc

    return (f"cells of sessions {', '.join(fc.TRAIN_SESSIONS)} in training and of {', '.join(fc.STOP_SESSIONS)} "
            "(the check's own cells) for early stopping: optimistic")


def record_site_check(task: str, model_id: str, root: str | Path | None = None) -> dict | None:
    """Write (or, while the CV is incomplete, drop) the card's second-site check; after each fold (`core.train`).

    Kept out of `core.training.cv`: the check scores the fold ensemble, a layer above the fold records."""
    from core.training.cv import cv_block
    from core.models.store import read_card, write_card

    card = read_card(task, model_id, root)
    if not card:
        return None
    check = second_site_check(task, model_id, cv_block(task, model_id, root), root)
    if check is None:
        card.pop(SITE_CHECK, None)
    else:
        card[SITE_CHECK] = check
    write_card(task, model_id, card, root)
    return check
