"""Patient-grouped k-fold cross-validation on a task's `train` split: one fold per run, then one card block.

    train_fold(task, model, fold=i, folds=k)  -> models/<task>/<id>/cv/fold<i>.json + fold<i>_oof.csv
    aggregate_cv(task, model)                 -> the card's `cv` block (every fold's AUC, mean, sd, SE, pooled OOF AUC)

A fold trains on the other folds' patients (early stopping on its own held-out patients, as the bundled run stops on
validation) and records the held-out fold's raw scores: out-of-fold predictions, for model choice
(`core.models.selection`), thresholds and calibration. The fold's weights are kept and committed beside them, for
a fold ensemble (uncommitted weights were once lost with a machine, and a fold ensemble needs all k). A recipe
that lost its task's CV and that no other recipe fine-tunes from has them removed again (models/ has a size budget);
its fold records and out-of-fold scores stay. The test split is never touched.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.data import CV_SEED, grouped_kfold, load_task_manifest, patient_column
from core.evaluation import metrics
from core.inference.forward import predict_tensors
from core.registry import get_model_spec, get_task
from core.models.store import model_dir, read_card, save_for_inference, write_card, write_predictions
from core.training.fit import fit_model, load_training_data

CV_DIR = "cv"


def cv_dir(task: str, model_id: str, root: str | Path | None = None) -> Path:
    return model_dir(task, model_id, root) / CV_DIR


def fold_frames(task: str, fold: int, folds: int, seed: int = CV_SEED,
                manifest: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows) of one fold of the task's `train` split."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    t = get_task(task)
    df = manifest if manifest is not None else load_task_manifest(task)
    train = df[df["split"] == "train"].reset_index(drop=True)
    fold_of = grouped_kfold(train, t, folds, seed)
    return train[fold_of != fold].reset_index(drop=True), train[fold_of == fold].reset_index(drop=True)


def train_fold(task: str, model_id: str, fold: int, folds: int, epochs: int | None = None, limit: int = 0,
               seed: int = 42, out_dir: str | Path | None = None, cv_seed: int = CV_SEED) -> dict:
    """Train on every fold but `fold`, score `fold`; write its record and out-of-fold scores. Returns the record.

    Into `out_dir` (default models/<task>/<id>/cv/); for a bundled model the card's `cv` block is then refreshed.
    """
    import keras

    t, spec = get_task(task), get_model_spec(task, model_id)
    n_epochs = epochs or spec.train.epochs
    keras.utils.set_random_seed(seed)
    t0 = time.time()
    tr, va = fold_frames(task, fold, folds, cv_seed)
    init = fold_init(task, spec.train.init_from, fold, folds, cv_seed, limit) if spec.train.init_from else None
    data = load_training_data(t, spec, limit, seed, split=(tr, va))
    fit = fit_model(spec, data, n_epochs, seed, init)
    raw = predict_tensors(fit.model, data.x_val)
    seconds = time.time() - t0
    col = patient_column(t)
    record = {
        "task": task, "model_id": model_id, "fold": fold, "folds": folds, "cv_seed": cv_seed, "seed": seed,
        "grouped_by": col, "limit": limit,
        "n_train": len(data.train), "n_val": len(data.val),
        "n_val_patients": int(data.val[col].nunique()), "n_train_patients": int(data.train[col].nunique()),
        "val_auc": metrics.roc_auc(data.y_val, raw),
        "epochs_requested": n_epochs,
        "epochs_run": [len(h["loss"]) for h in fit.histories],
        "best_epoch": fit.best_epochs,
        "parameters": int(fit.model.count_params()),
        "wall_time_seconds": round(seconds, 1),
    }
    out = Path(out_dir) if out_dir is not None else cv_dir(task, model_id)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / f"fold{fold}_oof.csv", data.val["path"].tolist(), data.val["label"].tolist(), raw)
    # The fold model itself, for a fold ensemble: the one model whose calibration and operating point the pooled
    # out-of-fold scores describe. A map fitted on them does not carry to the separately trained bundled model
    # (effusion/secondlook_cnn: validation ECE 0.138 -> 0.185, card `test_looks`). Committed with the fold record.
    save_for_inference(fit.model, out / f"fold{fold}.keras")
    (out / f"fold{fold}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"[{task}/{model_id}] fold {fold + 1}/{folds}: held-out AUC {record['val_auc']:.4f} on "
          f"{record['n_val']} images ({record['n_val_patients']} patients), {seconds:.0f}s", flush=True)
    if out_dir is None and read_card(task, model_id):
        aggregate_cv(task, model_id)
    return record


def fold_init(task: str, source: str, fold: int, folds: int, cv_seed: int = CV_SEED, limit: int = 0):
    """The model a fine-tuning recipe's fold starts from: its source recipe's model of the same fold, which never saw
    this fold's patients (the bundled source trained on all of train, so starting from it would leak the fold)."""
    import keras

    rec = next((r for r in read_folds(task, source) if r["fold"] == fold), None)
    path = cv_dir(task, source) / f"fold{fold}.keras"
    if rec is None or rec["folds"] != folds or rec["cv_seed"] != cv_seed or rec["limit"] != limit or not path.is_file():
        raise FileNotFoundError(f"{task}: fold {fold} of a {folds}-fold CV fine-tunes {source}'s fold {fold}; train it first "
                                f"(python -m core.train --task {task} --model {source} --fold {fold} --folds {folds})")
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def read_folds(task: str, model_id: str, root: str | Path | None = None) -> list[dict]:
    d = cv_dir(task, model_id, root)
    return sorted((json.loads(p.read_text()) for p in d.glob("fold*.json")), key=lambda r: r["fold"]) if d.is_dir() else []


def cv_block(task: str, model_id: str, root: str | Path | None = None) -> dict | None:
    """Summary of the fold records on disk (None without any): complete only with every fold of one k, full data."""
    recs = read_folds(task, model_id, root)
    if not recs:
        return None
    k = recs[0]["folds"]
    if any(r["folds"] != k or r["cv_seed"] != recs[0]["cv_seed"] for r in recs):
        raise ValueError(f"{task}/{model_id}: fold records from different k or fold seeds in {cv_dir(task, model_id, root)}")
    aucs = np.array([r["val_auc"] for r in recs], dtype=np.float64)
    complete = sorted(r["fold"] for r in recs) == list(range(k)) and all(r["limit"] == 0 for r in recs)
    block = {
        "k": k, "grouped_by": recs[0]["grouped_by"], "cv_seed": recs[0]["cv_seed"],
        "folds_done": [r["fold"] for r in recs], "complete": bool(complete),
        "fold_auc": aucs.tolist(), "mean_auc": float(aucs.mean()),
        "sd_auc": float(aucs.std(ddof=1)) if aucs.size > 1 else None,  # None, not NaN: cards are strict JSON
        "se_auc": float(aucs.std(ddof=1) / np.sqrt(aucs.size)) if aucs.size > 1 else None,
        "wall_time_seconds": float(sum(r["wall_time_seconds"] for r in recs)),
        "epochs_run": [r["epochs_run"] for r in recs],
        "limit": max(r["limit"] for r in recs),
    }
    oof = pooled_oof(task, model_id, root, recs)
    block["n_oof"] = int(len(oof))
    block["pooled_oof_auc"] = metrics.roc_auc(oof["y"].to_numpy(), oof["raw"].to_numpy())
    return block


def pooled_oof(task: str, model_id: str, root: str | Path | None = None, recs: list[dict] | None = None) -> pd.DataFrame:
    """Every fold's out-of-fold scores (raw network outputs), the one reader of them: path, label, raw, fold, y."""
    d = cv_dir(task, model_id, root)
    recs = read_folds(task, model_id, root) if recs is None else recs
    oof = pd.concat([pd.read_csv(d / f"fold{r['fold']}_oof.csv", dtype={"path": str, "label": str}).assign(fold=r["fold"])
                     for r in recs], ignore_index=True).rename(columns={"score": "raw"})
    if oof["path"].duplicated().any():
        raise ValueError(f"{task}/{model_id}: an image is out-of-fold in two folds")
    oof["y"] = (oof["label"] == get_task(task).positive).astype(np.int8)
    return oof


def aggregate_cv(task: str, model_id: str, root: str | Path | None = None) -> dict | None:
    """Write the `cv` block into the model's card (the card must exist); returns it."""
    block = cv_block(task, model_id, root)
    card = read_card(task, model_id, root)
    if not card:
        raise FileNotFoundError(f"{task}/{model_id}: no card to write the cv block into")
    if block is None:
        card.pop("cv", None)
    else:
        card["cv"] = block
    write_card(task, model_id, card, root)
    return block
