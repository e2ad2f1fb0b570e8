"""Train a registered model from its task's manifest.

    python -m core.train --task pneumonia --model secondlook_cnn [--limit 300 --epochs 2]

Writes models/<task>/<id>/model.keras, val_predictions.csv and card.json, then evaluates on the
test split (core.evaluate) to add test metrics and test_predictions.csv to the card.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .data import SPLIT_SEED, group_keys, load_arrays, load_task_manifest, manifest_sha256, split_train_val
from .inference import predict_tensors
from .store import model_dir, save_for_inference, sha256_file, write_card_file, write_predictions
from .tasks import ModelSpec, get_model_spec, get_task


def _augmenter(kind: str, normalize: str):
    import keras
    from keras import layers

    if kind == "none":
        return None
    fill = "constant" if normalize == "standardize" else "reflect"
    if kind == "xray_strong":
        fill = "reflect"  # applied to [0, 1] images before standardization
        return keras.Sequential(
            [
                layers.RandomRotation(0.03, fill_mode=fill),  # ±11°
                layers.RandomZoom((-0.15, 0.15), fill_mode=fill),
                layers.RandomTranslation(0.08, 0.08, fill_mode=fill),
            ]
        )
    if kind in ("xray", "xray_flip"):
        ops = [
            layers.RandomRotation(0.02, fill_mode=fill),  # ±7°
            layers.RandomZoom((-0.1, 0.1), fill_mode=fill),
            layers.RandomTranslation(0.06, 0.06, fill_mode=fill),
        ]
        if kind == "xray_flip":
            ops.insert(0, layers.RandomFlip("horizontal"))
        return keras.Sequential(ops)
    if kind == "cell":
        return keras.Sequential(
            [
                layers.RandomFlip("horizontal_and_vertical"),
                layers.RandomRotation(0.5, fill_mode=fill),
                layers.RandomZoom((-0.08, 0.08), fill_mode=fill),
                layers.RandomBrightness(0.08, value_range=(0.0, 1.0)),
                layers.RandomContrast(0.1),
            ]
        )
    raise ValueError(f"unknown augmentation {kind!r}")


def _contrast_jitter(x):
    """Random gain and offset for standardized X-rays (exposure varies between machines)."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    gain = tf.random.uniform([b, 1, 1, 1], 0.85, 1.15)
    offset = tf.random.uniform([b, 1, 1, 1], -0.15, 0.15)
    return x * gain + offset


def _intensity_then_standardize(x):
    """Exposure, gamma, blur-free noise on [0, 1] X-rays, then the same per-image z-score as core.preprocess.

    Hospitals and machines differ in exposure and processing; a model that has seen gamma and contrast
    variation is less surprised by a new site's normal films.
    """
    import tensorflow as tf

    b = tf.shape(x)[0]
    gamma = tf.exp(tf.random.uniform([b, 1, 1, 1], -0.35, 0.35))
    x = tf.clip_by_value(x, 0.0, 1.0) ** gamma
    x = x * tf.random.uniform([b, 1, 1, 1], 0.85, 1.15) + tf.random.uniform([b, 1, 1, 1], -0.08, 0.08)
    x = x + tf.random.normal(tf.shape(x), stddev=tf.random.uniform([b, 1, 1, 1], 0.0, 0.03))
    mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
    std = tf.maximum(tf.math.reduce_std(x, axis=(1, 2, 3), keepdims=True), 1e-3)
    return (x - mean) / std


def _dataset(x, y, batch: int, augment, seed: int, standardized: bool, weights=None, strong: bool = False):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if weights is None else (x, y, weights))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch)
    if augment is not None:
        def aug(*t):
            xa = augment(t[0], training=True)
            if strong:
                xa = _intensity_then_standardize(xa)
            elif standardized:
                xa = _contrast_jitter(xa)
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


def train(task_name: str, model_id: str, epochs: int | None = None, limit: int = 0, seed: int = 42,
          evaluate_test: bool = True, out_dir: Path | None = None) -> dict:
    import keras
    import tensorflow as tf

    task = get_task(task_name)
    spec: ModelSpec = get_model_spec(task_name, model_id)
    cfg = spec.train
    n_epochs = epochs or cfg.epochs
    keras.utils.set_random_seed(seed)
    t0 = time.time()

    df = load_task_manifest(task_name)
    tr_df, va_df = split_train_val(df, task)
    assert not set(group_keys(tr_df, task)) & set(group_keys(va_df, task)), "validation leaks groups"
    if limit:
        tr_df = _subsample(tr_df, limit, seed)
        va_df = _subsample(va_df, max(limit // 4, 40), seed)
    print(f"[{task_name}/{model_id}] train {len(tr_df)} images ({tr_df.y.mean():.2f} positive), "
          f"val {len(va_df)} ({va_df.y.mean():.2f} positive); loading…", flush=True)
    strong = cfg.augment == "xray_strong"
    if strong and spec.input.normalize != "standardize":
        raise ValueError("xray_strong augmentation standardizes after augmenting; use a standardize input spec")
    # Strong X-ray augmentation works on [0, 1] pixels and standardizes afterwards, exactly as prepare() would.
    train_spec = type(spec.input)(spec.input.size, spec.input.channels, "unit") if strong else spec.input
    x_tr = load_arrays(tr_df.file.tolist(), train_spec)
    x_va = load_arrays(va_df.file.tolist(), spec.input)
    y_tr = tr_df.y.to_numpy(np.float32)
    y_va = va_df.y.to_numpy(np.float32)
    print(f"loaded in {time.time() - t0:.0f}s: {x_tr.shape}", flush=True)

    weights = None
    if cfg.class_weight:
        pos = y_tr.mean()
        weights = np.where(y_tr == 1, 0.5 / pos, 0.5 / (1 - pos)).astype(np.float32)

    from .networks import build, ensemble

    pretrain = None
    if cfg.pretrain_task:
        # Learn chest-X-ray features on a larger task's TRAINING split first (never its test split), then fine-tune.
        ptask = get_task(cfg.pretrain_task)
        p_tr, _ = split_train_val(load_task_manifest(cfg.pretrain_task), ptask)
        if limit:
            p_tr = _subsample(p_tr, limit, seed)
        print(f"pretraining data: {cfg.pretrain_task} train split without its validation groups, {len(p_tr)} images", flush=True)
        x_p = load_arrays(p_tr.file.tolist(), train_spec)
        y_p = p_tr.y.to_numpy(np.float32)
        w_p = np.where(y_p == 1, 0.5 / y_p.mean(), 0.5 / (1 - y_p.mean())).astype(np.float32)
        pretrain = (x_p, y_p, w_p)

    members, histories, best_epochs, member_val_auc = [], [], [], []
    for k in range(spec.members):
        member_seed = seed + 1000 * k
        keras.utils.set_random_seed(member_seed)
        if spec.members > 1:
            print(f"member {k + 1}/{spec.members} (seed {member_seed})", flush=True)
        net = build(spec)
        if pretrain is not None:
            x_p, y_p, w_p = pretrain
            net.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=cfg.weight_decay), loss=keras.losses.BinaryCrossentropy())
            ds_p = _dataset(x_p, y_p, cfg.batch_size, _augmenter(cfg.augment, spec.input.normalize), member_seed,
                            spec.input.normalize == "standardize", w_p, strong)
            net.fit(ds_p, epochs=cfg.pretrain_epochs, verbose=2)
        steps = n_epochs * int(np.ceil(len(x_tr) / cfg.batch_size))
        net.compile(
            optimizer=_optimizer(cfg, steps),
            loss=keras.losses.BinaryCrossentropy(label_smoothing=cfg.label_smoothing),
            metrics=[keras.metrics.AUC(name="auc")],
        )
        augment = _augmenter(cfg.augment, spec.input.normalize)
        ds = _dataset(x_tr, y_tr, cfg.batch_size, augment, member_seed, spec.input.normalize == "standardize", weights, strong)
        monitor, mode = ("val_auc", "max") if cfg.early_stopping == "val_auc" else ("val_loss", "min")
        stopper = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience, restore_best_weights=True)
        h = net.fit(ds, validation_data=(x_va, y_va), epochs=n_epochs, callbacks=[stopper], verbose=2)
        members.append(net)
        histories.append(h.history)
        best_epochs.append(int(stopper.best_epoch) + 1 if getattr(stopper, "best_epoch", None) is not None else len(h.history["loss"]))
        member_val_auc.append(metrics.roc_auc(y_va, predict_tensors(net, x_va)))
    model = members[0] if spec.members == 1 else ensemble(members, spec.id)
    train_seconds = time.time() - t0

    val_scores = predict_tensors(model, x_va)
    threshold = metrics.choose_threshold(task.threshold_rule, y_va, val_scores)
    val_summary = metrics.summary(y_va, val_scores, threshold)

    out = out_dir or model_dir(task_name, model_id)
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / "model.keras"
    save_for_inference(model, mpath)
    write_predictions(out / "val_predictions.csv", va_df.path.tolist(), va_df.label.tolist(), val_scores)

    card = {
        "task": task_name,
        "model_id": model_id,
        "title": spec.title,
        "baseline": spec.baseline,
        "description": spec.description,
        "deviations": spec.deviations,
        "labels": {"negative": task.negative, "positive": task.positive},
        "architecture": model_id,
        "parameters": int(model.count_params()),
        "input": spec.input.as_dict(),
        "preprocessing": (
            "decode (core.imageio.read_image) -> "
            + ("grayscale" if spec.input.channels == 1 else "RGB")
            + f" -> resize to {spec.input.size}x{spec.input.size} (cv2 INTER_AREA) -> "
            + ("scale to [0,1]" if spec.input.normalize == "unit" else "per-image z-score")
        ),
        "training": {
            **cfg.as_dict(),
            "epochs_requested": n_epochs,
            "epochs_run": len(histories[0]["loss"]) if spec.members == 1 else [len(h["loss"]) for h in histories],
            "best_epoch": best_epochs[0] if spec.members == 1 else best_epochs,
            "members": spec.members,
            "pretrained_on": f"{cfg.pretrain_task} train split, {cfg.pretrain_epochs} epochs" if cfg.pretrain_task else None,
            "member_val_auc": member_val_auc if spec.members > 1 else None,
            "seed": seed,
            "limit": limit,
            "wall_time_seconds": round(train_seconds, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} CPU cores",
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "history": [{k: [round(float(v), 5) for v in vals] for k, vals in h.items()} for h in histories],
        },
        "data": {
            "manifest_sha256": manifest_sha256(task_name),
            "split_seed": SPLIT_SEED,
            "validation": f"{int(task.val_fraction * 100)}% of train groups by {'+'.join(task.group_column)}, stratified by label",
            "n_train": len(tr_df),
            "n_val": len(va_df),
            "n_train_groups": int(group_keys(tr_df, task).nunique()),
            "n_val_groups": int(group_keys(va_df, task).nunique()),
        },
        "threshold": threshold,
        "threshold_rule": task.threshold_rule,
        "threshold_chosen_on": "validation predictions (val_predictions.csv)",
        "validation": val_summary,
        "sha256": sha256_file(mpath),
        "file_bytes": mpath.stat().st_size,
    }
    write_card_file(out / "card.json", card)
    print(f"val AUC {val_summary['auc']:.4f}, threshold {threshold:.4f} ({task.threshold_rule}); "
          f"sens {val_summary['sensitivity']:.3f} spec {val_summary['specificity']:.3f}; {train_seconds:.0f}s", flush=True)
    if evaluate_test and out_dir is None:
        from .evaluate import evaluate_bundled

        res = evaluate_bundled(task_name, model_id, update_card=True)
        print(f"test: {res}", flush=True)
    return card


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
