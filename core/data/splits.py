"""Leak-free splits of a manifest's `train` rows: no patient (or split group) on both sides."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.registry import TaskSpec

SPLIT_SEED = 20261121


def group_keys(df: pd.DataFrame, task: TaskSpec) -> pd.Series:
    """The unit that must not straddle train and validation (patient, or patient+subtype, or split group)."""
    return df[list(task.group_column)].astype(str).agg("|".join, axis=1)


def split_train_val(df: pd.DataFrame, task: TaskSpec, seed: int = SPLIT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve validation out of the manifest's `train` split by group, stratified by each group's majority label.

    Groups are shuffled with a fixed seed and taken into validation until each label's share reaches
    `task.val_fraction`, so no patient (or split group) is ever on both sides.
    """
    train = df[df["split"] == "train"]
    keys = group_keys(train, task)
    stats = train.groupby(keys)["y"].agg(["mean", "size"])
    rng = np.random.default_rng(seed)
    val_groups: set[str] = set()
    for label in (0, 1):
        groups = stats[(stats["mean"] >= 0.5) == bool(label)]
        order = rng.permutation(groups.index.to_numpy())
        target = task.val_fraction * groups["size"].sum()
        taken = 0
        for g in order:
            if taken >= target:
                break
            val_groups.add(g)
            taken += groups.loc[g, "size"]
    is_val = keys.isin(val_groups)
    return train[~is_val].reset_index(drop=True), train[is_val].reset_index(drop=True)


# The patient unit for grouped cross-validation and patient-level intervals (see each dataset's SOURCE.md):
# pneumonia's coarse `patient_id` (person numbers may be shared across subtypes, so grouping by it is the
# conservative choice), effusion's `split_group` (the NIH patient where known, else one image or near-duplicate pair).
PATIENT_COLUMN = {"malaria": "patient_id", "pneumonia": "patient_id", "effusion": "split_group"}
CV_SEED = 20261201


def patient_column(task: TaskSpec) -> str:
    return PATIENT_COLUMN.get(task.name, task.group_column[0])


def grouped_kfold(df: pd.DataFrame, task: TaskSpec, k: int, seed: int = CV_SEED) -> np.ndarray:
    """Fold number (0..k-1) of every row: whole patients per fold, stratified by whether the patient has the finding.

    Within each stratum the patients are shuffled with `seed`, then taken largest first, each into the fold that
    has the fewest images of that stratum so far (ties: the lower fold), so folds are balanced in images as well as
    patients. Deterministic for a given frame, task, k and seed; row order does not matter.
    """
    if k < 2:
        raise ValueError(f"k-fold cross-validation needs k >= 2, got {k}")
    col = patient_column(task)
    if col not in df.columns:
        raise ValueError(f"{task.name}: manifest lacks the patient column {col!r} needed for grouped folds")
    keys = df[col].astype(str)
    stats = df.groupby(keys)["y"].agg(["max", "size"])
    if len(stats) < k:
        raise ValueError(f"{task.name}: {len(stats)} patients cannot fill {k} folds")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for stratum in (1, 0):
        groups = stats[stats["max"] == stratum]
        order = rng.permutation(np.sort(groups.index.to_numpy()))  # sorted first: row order does not matter
        sizes = groups.loc[order, "size"].to_numpy()
        load = np.zeros(k, dtype=np.int64)
        for i in np.argsort(-sizes, kind="stable"):
            f = int(np.argmin(load))
            fold_of[order[i]] = f
            load[f] += sizes[i]
    return keys.map(fold_of).to_numpy(dtype=np.int64)
