"""Model records: score a split, check it is not degenerate, write predictions and the card's test metrics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.data import load_task_manifest, read_manifest, split_train_val
from core.evaluation import calibration, metrics
from core.cards.patient_cards import add_patient_level
from core.inference.calibrate import apply_calibration
from core.inference.forward import score_sources
from core.registry import get_model_spec, get_task
from core.models.store import (
    load_model,
    model_dir,
    read_card,
    write_card,
    write_predictions,
)

DEGENERATE_MAX_ONE_CLASS = 0.95
DEGENERATE_MIN_AUC = 0.6


class DegenerateModelError(RuntimeError):
    """A model that calls almost everything one class, or ranks no better than chance."""


def check_not_degenerate(y: np.ndarray, scores: np.ndarray, threshold: float, what: str) -> None:
    share_pos = float(np.mean(scores >= threshold))
    auc = metrics.roc_auc(y, scores)
    if max(share_pos, 1 - share_pos) >= DEGENERATE_MAX_ONE_CLASS:
        raise DegenerateModelError(f"{what}: {max(share_pos, 1 - share_pos):.1%} of images fall in one class at threshold {threshold:.4f}")
    if not auc >= DEGENERATE_MIN_AUC:
        raise DegenerateModelError(f"{what}: AUC {auc:.3f} is below {DEGENERATE_MIN_AUC}")


def evaluate_frame(task: str, model_id: str, frame: pd.DataFrame, model=None, threshold: float | None = None,
                   raw_scores: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Score every row of a manifest frame (`file`, `y`) and summarise at the card's threshold.

    Scores are the shown probabilities: the raw model output mapped by the card's calibration (the one map in
    `core.inference.calibrate`). `raw_scores` skips the forward pass when the caller already has them.
    """
    spec = get_model_spec(task, model_id)
    card = read_card(task, model_id)
    thr = card["threshold"] if threshold is None else threshold
    if raw_scores is None:
        raw_scores = score_sources(model or load_model(task, model_id), spec.input, frame["file"].tolist())
    scores = apply_calibration(raw_scores, card.get("calibration"))
    y = frame["y"].to_numpy()
    return scores, metrics.summary(y, scores, thr)


def evaluate_bundled(task: str, model_id: str, split: str = "test", update_card: bool = False, model=None) -> dict:
    """Evaluate on the task's own dataset split; on test, write test_predictions.csv and check for degeneracy.

    With a calibrated card, `update_card` also records test ECE and Brier before and after the calibration map.
    """
    df = load_task_manifest(task)
    df = df[df["split"] == split].reset_index(drop=True)
    spec = get_model_spec(task, model_id)
    raw = score_sources(model or load_model(task, model_id), spec.input, df["file"].tolist())
    scores, summ = evaluate_frame(task, model_id, df, raw_scores=raw)
    if split == "test":
        write_predictions(model_dir(task, model_id) / "test_predictions.csv", df["path"].tolist(), df["label"].tolist(), scores)
        card = read_card(task, model_id)
        extra = {}
        if "patient_id_known" in df.columns:
            known = df["patient_id_known"].str.lower() == "true"
            extra["test_patient_id_known"] = metrics.summary(df.y[known].to_numpy(), scores[known.to_numpy()], card["threshold"])
        if card.get("calibration"):
            check = dict(card.get("calibration_check") or {})
            check["test"] = calibration.effect(df["y"].to_numpy(), raw, card["calibration"])
            extra["calibration_check"] = check
        if update_card:
            card["test"] = summ
            card.update(extra)
            write_card(task, model_id, card)
        check_not_degenerate(df["y"].to_numpy(), scores, card["threshold"], f"{task}/{model_id} on test")
    return summ


def refresh_records(task: str, model_id: str) -> dict:
    """Re-score validation and test with the current inference path, refit the calibration and re-derive the
    operating point.

    For when the inference path changes numerically (e.g. a new graph optimisation moves scores by float rounding),
    or the calibration is (re)introduced: Platt scaling is fitted on the raw *validation* scores, the threshold is
    chosen again by the card's rule on the calibrated validation scores, then test is re-evaluated at it, exactly
    as training does. Returns {"threshold_before", "threshold", "validation_auc", "calibration", "test": summary}.
    A fold ensemble's validation is its members' stored out-of-fold scores (`_refresh_fold_ensemble`).
    """
    if get_model_spec(task, model_id).fold_ensemble_of:
        return _refresh_fold_ensemble(task, model_id)
    t = get_task(task)
    model = load_model(task, model_id)
    card = read_card(task, model_id)
    _, va = split_train_val(load_task_manifest(task), t)
    raw_val = score_sources(model, get_model_spec(task, model_id).input, va["file"].tolist())
    y_val = va["y"].to_numpy()
    cal = calibration.fit_platt(y_val, raw_val, calibration.VALIDATION)
    val_scores = apply_calibration(raw_val, cal)
    rule = card.get("threshold_rule", t.threshold_rule)
    threshold = metrics.choose_threshold(rule, y_val, val_scores)
    write_predictions(model_dir(task, model_id) / "val_predictions.csv", va["path"].tolist(), va["label"].tolist(), val_scores)
    before = card["threshold"]
    card["threshold"] = threshold
    card["calibration"] = cal
    card["calibration_check"] = {"validation (fitted here, so in-sample)": calibration.effect(y_val, raw_val, cal)}
    card["validation"] = metrics.summary(y_val, val_scores, threshold)
    return _score_test_at(task, model_id, card, before, model)


def _score_test_at(task: str, model_id: str, card: dict, before: float, model=None) -> dict:
    """Write the re-derived card, evaluate test at its threshold, add the patient-level blocks (refresh_records' result)."""
    write_card(task, model_id, card)
    test = evaluate_bundled(task, model_id, update_card=True, model=model)
    add_patient_level(task, model_id)
    return {"threshold_before": before, "threshold": card["threshold"], "validation_auc": card["validation"]["auc"],
            "calibration": card["calibration"], "test": test}


def _refresh_fold_ensemble(task: str, model_id: str) -> dict:
    """Calibration and threshold again from the members' stored out-of-fold scores, then test at that threshold."""
    from core.training import cv, fold_ensemble

    spec = get_model_spec(task, model_id)
    card = read_card(task, model_id)
    before = card["threshold"]
    fold_ensemble.write_oof_records(task, spec, cv.pooled_oof(task, spec.fold_ensemble_of), card)
    return _score_test_at(task, model_id, card, before)


def build_fold_ensemble(task: str, model_id: str) -> dict:
    """A fold ensemble's whole record: assemble its recipe's fold models (checked against their out-of-fold scores),
    card and validation from those scores, then the one test scoring, the patient-level and external blocks and the
    OOD statistics. Returns the test summary."""
    from core.data import group_keys
    from core.training.guards import fit_and_save_ood
    from core.training import cv, fold_ensemble

    spec = get_model_spec(task, model_id)
    if not spec.fold_ensemble_of:
        raise fold_ensemble.FoldEnsembleError(f"{task}/{model_id} is not a fold ensemble")
    block = cv.cv_block(task, spec.fold_ensemble_of)  # read once: completeness, the card's members_cv
    members = fold_ensemble.load_members(task, spec.fold_ensemble_of, spec.members, block=block)
    oof = cv.pooled_oof(task, spec.fold_ensemble_of)
    man = load_task_manifest(task).set_index("path")
    worst = fold_ensemble.check_members(members, spec.input, oof, man["file"].to_dict())
    groups = int(group_keys(man.loc[oof["path"]].reset_index(), get_task(task)).nunique())
    fold_ensemble.record(task, spec, members, oof, member_check=worst, n_groups=groups, block=block)
    test = score_test_once(task, model_id)
    fit_and_save_ood(task, model_id)
    return test


def score_test_once(task: str, model_id: str) -> dict:
    """A bundled model's one look at the test split and what the card keeps of it: test metrics and predictions,
    the patient-level blocks and the external results (a test look of its own for malaria). Returns the test summary."""
    from core.cards.external import add_external

    test = evaluate_bundled(task, model_id, update_card=True)
    add_patient_level(task, model_id)
    add_external(task, model_id)
    return test


def evaluate_split(task: str, model_id: str, manifest: Path | None = None, split: str | None = None,
                   threshold: float | None = None, update_records: bool = False) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Score a manifest (or the task's own split, default test) and summarise. Nothing is written unless
    `update_records`: then the own test split at the card's threshold goes through `evaluate_bundled`, so its
    predictions file and card stay the one record (scoring on another CPU moves float32 scores by ~1e-7, so a
    look must not dirty the checkout)."""
    task_spec = get_task(task)
    if manifest:
        df = read_manifest(manifest, task_spec)
        if split:
            df = df[df["split"] == split].reset_index(drop=True)
        own_test = False
    else:
        split = split or "test"
        df = load_task_manifest(task)
        df = df[df["split"] == split].reset_index(drop=True)
        own_test = split == "test" and threshold is None
    if own_test and update_records:
        summ = evaluate_bundled(task, model_id, update_card=True)
        scores = pd.read_csv(model_dir(task, model_id) / "test_predictions.csv")["score"].to_numpy()
    else:
        scores, summ = evaluate_frame(task, model_id, df, threshold=threshold)
    return df, scores, summ


def headline(summ: dict) -> dict:
    """The summary fields a command prints."""
    keys = ("n", "n_positive", "auc", "auc_ci", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "threshold", "tp", "fp", "fn", "tn")
    return {k: summ[k] for k in keys if k in summ}


def model_records(task: str, model_id: str, refresh: bool) -> dict:
    """One model's records for a sweep over models: re-scored and re-derived (`refresh_records`, patient-level
    blocks included), or only the patient-level blocks from the stored predictions (no model loaded)."""
    if refresh:
        res = refresh_records(task, model_id)
        return {"threshold_before": res["threshold_before"], "validation_auc": res["validation_auc"], **headline(res["test"])}
    return {k: {m: v[m] for m in ("n_patients", "auc", "auc_ci")} for k, v in add_patient_level(task, model_id).items()}
