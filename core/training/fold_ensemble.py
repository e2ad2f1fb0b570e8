"""A cross-validated recipe shipped as its k fold models with their logits averaged.

Why: a separately trained model takes its threshold and calibration from one small validation split (pneumonia:
787 images). The fold models' out-of-fold scores cover every training image, and they are this ensemble's own members' outputs, so the map and the operating point fitted on them describe
the model that is shipped. (Fitted on them, a map does not carry to a separately trained model: effusion
secondlook_cnn, validation ECE 0.138 -> 0.185.) The members' CV is the recipe's CV: model choice stays with the
recipes (`core.models.selection`); this is how the chosen one is shipped.

    python -m core.train --task pneumonia --model secondlook_cnn_folds      # assembles the fold models, trains nothing
                                                                            # (core.cards.records.build_fold_ensemble)

The card's `validation` block, `val_predictions.csv` and the threshold are the pooled out-of-fold predictions (each
image scored by the one member that did not train on it); the test split is scored once, by the ensemble.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from core.evaluation import calibration, metrics
from core.inference.calibrate import apply_calibration
from core.training.cv import cv_block, cv_dir, read_folds
from core.registry import InputSpec, ModelSpec, get_model_spec, get_task
from core.models.store import SCORE_TOLERANCE, model_dir, save_for_inference, sha256_file, write_card_file, write_predictions

CROSS_FITTED = "out-of-fold, cross-fitted (each fold mapped by the maps fitted on the other folds)"
MEMBER_CHECK_IMAGES = 8  # per fold: re-scored to prove the kept weights wrote the out-of-fold scores


class FoldEnsembleError(RuntimeError):
    """The recipe's cross-validation cannot be shipped as it is (incomplete, or weights that are not the fold's)."""


def load_members(task: str, recipe: str, k: int, root: str | Path | None = None, block: dict | None = None) -> list:
    """The k fold models of a complete cross-validation, in fold order (`block`: the recipe's cv_block, if read)."""
    import keras

    block = cv_block(task, recipe, root) if block is None else block
    if not block or not block["complete"] or block["k"] != k:
        raise FoldEnsembleError(f"{task}/{recipe}: a {k}-fold ensemble needs a complete {k}-fold CV; "
                                f"have {block and {'k': block['k'], 'folds_done': block['folds_done']}}")
    paths = [cv_dir(task, recipe, root) / f"fold{i}.keras" for i in range(k)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FoldEnsembleError(f"{task}/{recipe}: fold weights {missing} are missing (trained before fold weights were committed); "
                                f"retrain those folds with python -m core.train --task {task} --model {recipe} --fold I --folds {k}")
    return [keras.saving.load_model(p, safe_mode=True, compile=False) for p in paths]


def check_members(members: list, input_spec: InputSpec, oof: pd.DataFrame, files: dict[str, str],
                  n: int = MEMBER_CHECK_IMAGES) -> float:
    """Largest |re-score - stored out-of-fold score| over n images per fold; raises when a member is not its fold's model."""
    from core.inference.forward import score_sources

    worst = 0.0
    for i, member in enumerate(members):
        rows = oof[oof["fold"] == i].head(n)
        again = score_sources(member, input_spec, [files[p] for p in rows["path"]])
        worst = max(worst, float(np.abs(again - rows["raw"].to_numpy()).max()))
    if worst > SCORE_TOLERANCE:
        raise FoldEnsembleError(f"fold weights do not reproduce their out-of-fold scores (max difference {worst:.2e}): "
                                "a fold was retrained without its scores, or the other way round")
    return worst


def operating_point(task: str, oof: pd.DataFrame) -> tuple[dict, np.ndarray, float, dict]:
    """(calibration, calibrated scores, threshold, summary): the map chosen by cross-fitting on the raw out-of-fold
    scores (`calibration.choose_map`), then the task's rule."""
    cal, _ = calibration.choose_map(oof["y"].to_numpy(), oof["raw"].to_numpy(), oof["fold"].to_numpy())
    scores = apply_calibration(oof["raw"].to_numpy(), cal)
    rule = get_task(task).threshold_rule
    threshold = metrics.choose_threshold(rule, oof["y"].to_numpy(), scores)
    return cal, scores, threshold, metrics.summary(oof["y"].to_numpy(), scores, threshold)


def write_oof_records(task: str, spec: ModelSpec, oof: pd.DataFrame, card: dict, root: str | Path | None = None) -> dict:
    """Calibration, threshold and validation summary from the out-of-fold scores, into the card and val_predictions.csv."""
    cal, scores, threshold, summary = operating_point(task, oof)
    write_predictions(model_dir(task, spec.id, root) / "val_predictions.csv", oof["path"].tolist(), oof["label"].tolist(), scores)
    card.update({
        "threshold": threshold, "threshold_rule": get_task(task).threshold_rule,
        "threshold_chosen_on": "validation: the pooled out-of-fold predictions of the members (val_predictions.csv)",
        "validation": summary, "calibration": cal,
        "calibration_check": {
            "out-of-fold (fitted here, so in-sample)": calibration.effect(oof["y"].to_numpy(), oof["raw"].to_numpy(), cal),
            CROSS_FITTED: calibration.cross_fitted(oof["y"].to_numpy(), oof["raw"].to_numpy(), oof["fold"].to_numpy()),
        },
    })
    return card


def record(task: str, spec: ModelSpec, members: list, oof: pd.DataFrame, root: str | Path | None = None, *,
           member_check: float | None = None, n_groups: int | None = None, block: dict | None = None) -> dict:
    """model.keras, val_predictions.csv and card.json of the fold ensemble (no test split touched); `member_check` is
    check_members' result, `n_groups` the patients (or sessions) the out-of-fold images come from, `block` the
    recipe's cv_block if already read."""
    import keras
    import tensorflow as tf

    from core.models.networks import ensemble

    recipe = get_model_spec(task, spec.fold_ensemble_of)
    folds = read_folds(task, recipe.id, root)
    block = cv_block(task, recipe.id, root) if block is None else block
    out = model_dir(task, spec.id, root)
    out.mkdir(parents=True, exist_ok=True)
    model = ensemble(members, spec.id)
    save_for_inference(model, out / "model.keras")
    t = get_task(task)
    card = {
        "task": task, "model_id": spec.id, "title": spec.title, "baseline": False,
        "description": spec.description, "deviations": spec.deviations,
        "labels": {"negative": t.negative, "positive": t.positive},
        "architecture": f"{len(members)} x {recipe.id}", "parameters": int(model.count_params()),
        "input": spec.input.as_dict(), "preprocessing": f"as {recipe.id}",
        "training": {
            **recipe.train.as_dict(), "fold_ensemble_of": recipe.id, "members": len(members),
            "epochs_run": [r["epochs_run"] for r in folds], "best_epoch": [r.get("best_epoch") for r in folds],
            "member_val_auc": block["fold_auc"], "seed": folds[0].get("seed"), "limit": 0,
            "wall_time_seconds": block["wall_time_seconds"],
            "wall_time_note": "the k fold trainings, as their records give them (each on its own run)",
            "machine": f"{platform.machine()} {os.cpu_count()} CPU cores (assembly)",
            "tensorflow": tf.__version__, "keras": keras.__version__,
            **({"member_check_max_difference": member_check} if member_check is not None else {}),
        },
        "data": {
            "cv_seed": block["cv_seed"], "grouped_by": block["grouped_by"], "k": block["k"],
            "validation": f"out-of-fold: {block['k']}-fold CV of train grouped by {block['grouped_by']}; each image "
                          "scored by the member that did not train on it",
            "n_train": int(len(oof)), "n_val": int(len(oof)),
            **({"n_train_groups": n_groups, "n_val_groups": n_groups} if n_groups is not None else {}),
        },
        "members_cv": block,
        "sha256": sha256_file(out / "model.keras"), "file_bytes": (out / "model.keras").stat().st_size,
    }
    write_oof_records(task, spec, oof, card, root)
    write_card_file(out / "card.json", card)
    return card
