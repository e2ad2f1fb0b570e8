"""Training a registered model, in the steps a reader can follow: data, model and fit, operating point, record.

    load_training_data -> fit_model -> choose_operating_point -> write_record      (train() runs all four)

Validation is carved out of `train` by patient (core.data.splits); early stopping and the threshold use it only.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.data import SPLIT_SEED, group_keys, load_arrays, load_task_manifest, manifest_sha256, split_train_val
from core.evaluation import calibration, metrics
from core.inference.calibrate import apply_calibration
from core.inference.forward import predict_tensors
from core.training.augment import augmenter, contrast_jitter, intensity_then_standardize, stain_jitter
from core.registry import InputSpec, ModelSpec, TaskSpec, get_model_spec, get_task
from core.models.store import model_dir, save_for_inference, sha256_file, write_card_file, write_predictions


@dataclass
class TrainingData:
    """Prepared arrays for one training run (train without its validation groups, and validation)."""

    train: pd.DataFrame
    val: pd.DataFrame
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    weights: np.ndarray | None  # per-image class weights, when the recipe asks for them
    pretrain: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (x, y, weights) of another task's train split
    x_stop: np.ndarray | None = None  # early-stopping set when it is more than validation (a second site's cells)
    y_stop: np.ndarray | None = None
    notes: dict | None = None


@dataclass
class FitResult:
    model: object  # the trained keras.Model (an ensemble model for members > 1)
    histories: list[dict]
    best_epochs: list[int]
    member_val_auc: list[float]
    seconds: float


def _dataset(x, y, batch: int, augment, seed: int, standardized: bool, weights=None, strong: bool = False,
             stain: bool = False):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if weights is None else (x, y, weights))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch)
    if augment is not None:
        def aug(*t):
            xa = augment(t[0], training=True)
            if strong:
                xa = intensity_then_standardize(xa)
            elif standardized:
                xa = contrast_jitter(xa)
            if stain:
                xa = stain_jitter(xa)
            return (xa, *t[1:])

        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(2)


def _optimizer(cfg, steps: int):
    import keras

    lr = cfg.learning_rate
    if cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=max(steps, 1), alpha=0.02)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    if cfg.weight_decay:
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    return keras.optimizers.Adam(lr)


def _subsample(df, n: int, seed: int):
    """About n rows with the label mix kept (smoke runs)."""
    if n <= 0 or n >= len(df):
        return df
    frac = n / len(df)
    parts = [g.sample(max(1, round(frac * len(g))), random_state=seed) for _, g in df.groupby("y")]
    return pd.concat(parts).reset_index(drop=True)


def _strong(spec: ModelSpec) -> bool:
    return spec.train.augment == "xray_strong"


def _train_input(spec: ModelSpec) -> InputSpec:
    """Strong X-ray augmentation works on [0, 1] pixels and standardizes afterwards, exactly as prepare() would."""
    if _strong(spec) and spec.input.normalize != "standardize":
        raise ValueError("xray_strong augmentation standardizes after augmenting; use a standardize input spec")
    return InputSpec(spec.input.size, spec.input.channels, "unit") if _strong(spec) else spec.input


def _class_weights(y: np.ndarray) -> np.ndarray:
    pos = y.mean()
    return np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)).astype(np.float32)


def load_training_data(task: TaskSpec, spec: ModelSpec, limit: int = 0, seed: int = 42,
                       split: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> TrainingData:
    """Step 1: the task's train split without its validation groups, and validation, as prepared arrays.

    `split` replaces the fixed train/validation carve-out (a cross-validation fold: the other folds, this fold).
    """
    tr_df, va_df = split if split is not None else split_train_val(load_task_manifest(task.name), task)
    assert not set(group_keys(tr_df, task)) & set(group_keys(va_df, task)), "validation leaks groups"
    if limit:
        tr_df = _subsample(tr_df, limit, seed)
        va_df = _subsample(va_df, max(limit // 4, 40), seed)
    print(f"[{task.name}/{spec.id}] train {len(tr_df)} images ({tr_df.y.mean():.2f} positive), "
          f"val {len(va_df)} ({va_df.y.mean():.2f} positive); loading…", flush=True)
    t0 = time.time()
    train_spec = _train_input(spec)
    x_tr = load_arrays(tr_df.file.tolist(), train_spec)
    x_va = load_arrays(va_df.file.tolist(), spec.input)
    y_tr = tr_df.y.to_numpy(np.float32)
    y_va = va_df.y.to_numpy(np.float32)
    print(f"loaded in {time.time() - t0:.0f}s: {x_tr.shape}", flush=True)
    pretrain = None
    if spec.train.pretrain_task:
        # Learn chest-X-ray features on a larger task's TRAINING split first (never its test split), then fine-tune.
        ptask = get_task(spec.train.pretrain_task)
        p_tr, _ = split_train_val(load_task_manifest(ptask.name), ptask)
        if limit:
            p_tr = _subsample(p_tr, limit, seed)
        print(f"pretraining data: {ptask.name} train split without its validation groups, {len(p_tr)} images", flush=True)
        y_p = p_tr.y.to_numpy(np.float32)
        pretrain = (load_arrays(p_tr.file.tolist(), train_spec), y_p, _class_weights(y_p))
    data = TrainingData(tr_df, va_df, x_tr, y_tr, x_va, y_va, None, pretrain)
    if spec.train.second_site:
        _add_second_site(data, spec, seed)
    if spec.train.class_weight:
        data.weights = _class_weights(data.y_train)
    return data


def _add_second_site(data: TrainingData, spec: ModelSpec, seed: int) -> None:
    """Cells cut from the training fields join the training data and the early-stopping set (never validation's
    threshold or the card's validation summary, which stay on the task's own validation patients)."""
    from core.fields import cuts as fc
    from core.inference.preprocess import prepare

    if spec.train.second_site != fc.FIELDS:
        raise ValueError(f"unknown second site {spec.train.second_site!r}")
    t0 = time.time()
    cfg = spec.train
    repeat = cfg.site_positive_repeat or fc.POSITIVE_REPEAT
    cut, stain = spec.input.field_cut, spec.input.field_stain
    sessions, stop_sessions = fc.sessions_of(cfg)
    x_f, y_f, _ = fc.session_crops(sessions, cfg.site_negatives or fc.TRAIN_NEGATIVES, seed, cut=cut, stain=stain)
    x_f = np.stack([prepare(c, spec.input) for c in x_f])
    x_s, y_s = data.x_val[:0], data.y_val[:0]
    if stop_sessions:
        x_s, y_s, _ = fc.session_crops(stop_sessions, cut=cut, stain=stain)
        x_s = np.stack([prepare(c, spec.input) for c in x_s])
    pos = np.flatnonzero(y_f == 1)
    rep = np.concatenate([np.arange(len(y_f))] + [pos] * (repeat - 1))
    x_h = np.zeros((0, *x_f.shape[1:]), x_f.dtype)
    if spec.train.hard_negatives:  # white cells, platelets, debris, clumps the finder cuts: half the false alarms
        from core.fields.screen import screening_boxes

        hard = fc.hard_negative_crops(sessions, locate=lambda rgb: screening_boxes(rgb)[0], cut=cut,
                                      stain=stain)[0]
        x_h = np.stack([prepare(c, spec.input) for c in hard])
    data.x_train = np.concatenate([data.x_train, x_f[rep], x_h])
    data.y_train = np.concatenate([data.y_train, y_f[rep], np.zeros(len(x_h), data.y_train.dtype)])
    data.x_stop = np.concatenate([data.x_val, x_s])
    data.y_stop = np.concatenate([data.y_val, y_s])
    data.notes = {"second_site": fc.FIELDS, "train_sessions": list(sessions), "stop_sessions": list(stop_sessions),
                  "train_cells": int(len(y_f)), "train_infected": int(y_f.sum()), "positive_repeat": repeat,
                  "stop_cells": int(len(y_s)), "stop_infected": int(y_s.sum())}
    if spec.train.hard_negatives:
        data.notes["hard_negatives"] = int(len(x_h))
    print(f"second site: +{len(rep)} training crops ({int(y_f.sum())} infected x{repeat}), "
          f"+{len(x_h)} hard negatives, +{len(y_s)} early-stopping crops, {time.time() - t0:.0f}s", flush=True)


def _fit_member(spec: ModelSpec, data: TrainingData, n_epochs: int, seed: int, init=None):
    """One network: build, optional pretraining, fit with early stopping on validation."""
    import keras

    from core.models.networks import build

    cfg = spec.train
    standardized = spec.input.normalize == "standardize"
    net = build(spec)
    if cfg.init_from:  # fine-tune: the source was trained on the same task's train split without these validation groups
        from core.models.store import load_model

        net.set_weights((init if init is not None else load_model(spec.task, cfg.init_from)).get_weights())
    if data.pretrain is not None:
        x_p, y_p, w_p = data.pretrain
        net.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=cfg.weight_decay), loss=keras.losses.BinaryCrossentropy())
        ds_p = _dataset(x_p, y_p, cfg.batch_size, augmenter(cfg.augment, spec.input.normalize), seed, standardized, w_p, _strong(spec))
        net.fit(ds_p, epochs=cfg.pretrain_epochs, verbose=2)
    steps = n_epochs * int(np.ceil(len(data.x_train) / cfg.batch_size))
    net.compile(
        optimizer=_optimizer(cfg, steps),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.AUC(name="auc")],
    )
    ds = _dataset(data.x_train, data.y_train, cfg.batch_size, augmenter(cfg.augment, spec.input.normalize), seed,
                  standardized, data.weights, _strong(spec), cfg.augment == "cell_stain")
    stop = (data.x_val, data.y_val) if data.x_stop is None else (data.x_stop, data.y_stop)
    if cfg.early_stopping == "none":  # a refit: the recipe's whole schedule, the last weights kept
        h = net.fit(ds, validation_data=stop, epochs=n_epochs, verbose=2)
        return net, h.history, len(h.history["loss"])
    monitor, mode = ("val_auc", "max") if cfg.early_stopping == "val_auc" else ("val_loss", "min")
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience, restore_best_weights=True)
    h = net.fit(ds, validation_data=stop, epochs=n_epochs, callbacks=[stopper], verbose=2)
    best = int(stopper.best_epoch) + 1 if getattr(stopper, "best_epoch", None) is not None else len(h.history["loss"])
    return net, h.history, best


def fit_model(spec: ModelSpec, data: TrainingData, n_epochs: int, seed: int = 42, init=None) -> FitResult:
    """Step 2: every member of the model (one network, or an ensemble of independently seeded ones). `init`: the
    model a fine-tuning recipe starts from, when not its `init_from` bundled model (a CV fold: that recipe's same fold)."""
    import keras

    from core.models.networks import ensemble

    t0 = time.time()
    members, histories, best_epochs, member_val_auc = [], [], [], []
    for k in range(spec.members):
        member_seed = seed + 1000 * k
        keras.utils.set_random_seed(member_seed)
        if spec.members > 1:
            print(f"member {k + 1}/{spec.members} (seed {member_seed})", flush=True)
        net, history, best = _fit_member(spec, data, n_epochs, member_seed, init)
        members.append(net)
        histories.append(history)
        best_epochs.append(best)
        member_val_auc.append(metrics.roc_auc(data.y_val, predict_tensors(net, data.x_val)))
    model = members[0] if spec.members == 1 else ensemble(members, spec.id)
    return FitResult(model, histories, best_epochs, member_val_auc, time.time() - t0)


def choose_operating_point(task: TaskSpec, y_val: np.ndarray, val_scores: np.ndarray) -> tuple[float, dict]:
    """Step 3: the threshold by the task's rule on validation scores, and the validation summary there."""
    threshold = metrics.choose_threshold(task.threshold_rule, y_val, val_scores)
    return threshold, metrics.summary(y_val, val_scores, threshold)


def write_record(task: TaskSpec, spec: ModelSpec, data: TrainingData, fit: FitResult, val_scores: np.ndarray,
                 threshold: float, val_summary: dict, out: Path, *, n_epochs: int, seed: int, limit: int,
                 wall_seconds: float) -> dict:
    """Step 4: model file, validation predictions and the card, into `out`."""
    import keras
    import tensorflow as tf

    cfg = spec.train
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / "model.keras"
    save_for_inference(fit.model, mpath)
    write_predictions(out / "val_predictions.csv", data.val.path.tolist(), data.val.label.tolist(), val_scores)
    single = spec.members == 1
    card = {
        "task": task.name,
        "model_id": spec.id,
        "title": spec.title,
        "baseline": spec.baseline,
        "description": spec.description,
        "deviations": spec.deviations,
        "labels": {"negative": task.negative, "positive": task.positive},
        "architecture": spec.id,
        "parameters": int(fit.model.count_params()),
        "input": spec.input.as_dict(),
        "preprocessing": (
            "decode (core.io.read_image) -> "
            + ("grayscale" if spec.input.channels == 1 else "RGB")
            + f" -> resize to {spec.input.size}x{spec.input.size} (cv2 INTER_AREA) -> "
            + ("scale to [0,1]" if spec.input.normalize == "unit" else "per-image z-score")
        ),
        "training": {
            **cfg.as_dict(),
            "epochs_requested": n_epochs,
            "epochs_run": len(fit.histories[0]["loss"]) if single else [len(h["loss"]) for h in fit.histories],
            "best_epoch": fit.best_epochs[0] if single else fit.best_epochs,
            "members": spec.members,
            "pretrained_on": f"{cfg.pretrain_task} train split, {cfg.pretrain_epochs} epochs" if cfg.pretrain_task else None,
            "member_val_auc": fit.member_val_auc if not single else None,
            "seed": seed,
            "limit": limit,
            "wall_time_seconds": round(wall_seconds, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} CPU cores",
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "history": [{k: [round(float(v), 5) for v in vals] for k, vals in h.items()} for h in fit.histories],
        },
        "data": {
            "manifest_sha256": manifest_sha256(task.name),
            "split_seed": SPLIT_SEED,
            "validation": f"{int(task.val_fraction * 100)}% of train groups by {'+'.join(task.group_column)}, stratified by label",
            "n_train": len(data.train),
            "n_val": len(data.val),
            "n_train_groups": int(group_keys(data.train, task).nunique()),
            "n_val_groups": int(group_keys(data.val, task).nunique()),
            **({"second_site": data.notes} if data.notes else {}),
        },
        "threshold": threshold,
        "threshold_rule": task.threshold_rule,
        "threshold_chosen_on": "validation predictions (val_predictions.csv)",
        "validation": val_summary,
        "sha256": sha256_file(mpath),
        "file_bytes": mpath.stat().st_size,
    }
    write_card_file(out / "card.json", card)
    return card


def train(task_name: str, model_id: str, epochs: int | None = None, limit: int = 0, seed: int = 42,
          out_dir: Path | None = None) -> dict:
    """All four steps. The one scoring of the test split is the caller's (`core.train`), not training's."""
    import keras

    task = get_task(task_name)
    spec = get_model_spec(task_name, model_id)
    n_epochs = epochs or spec.train.epochs
    keras.utils.set_random_seed(seed)
    t0 = time.time()
    data = load_training_data(task, spec, limit, seed)
    fit = fit_model(spec, data, n_epochs, seed)
    train_seconds = time.time() - t0
    raw_val = predict_tensors(fit.model, data.x_val)
    try:  # shown probabilities are calibrated on validation
        cal, why_not = calibration.fit_platt(data.y_val, raw_val, calibration.VALIDATION), None
    except calibration.CalibrationError as exc:  # e.g. a 1-epoch smoke run: keep the raw score and say why
        cal, why_not = None, str(exc)
    val_scores = apply_calibration(raw_val, cal)
    threshold, val_summary = choose_operating_point(task, data.y_val, val_scores)
    out = out_dir or model_dir(task_name, model_id)
    card = write_record(task, spec, data, fit, val_scores, threshold, val_summary, out,
                        n_epochs=n_epochs, seed=seed, limit=limit, wall_seconds=train_seconds)
    card["calibration"] = cal
    card["calibration_check"] = ({"validation (fitted here, so in-sample)": calibration.effect(data.y_val, raw_val, cal)}
                                 if cal else {"not_fitted": why_not})
    write_card_file(out / "card.json", card)
    print(f"val AUC {val_summary['auc']:.4f}, threshold {threshold:.4f} ({task.threshold_rule}); "
          f"sens {val_summary['sensitivity']:.3f} spec {val_summary['specificity']:.3f}; {train_seconds:.0f}s", flush=True)
    return card
