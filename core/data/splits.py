"""Leak-free splits of a manifest's `train` rows: no patient (or split group) on both sides."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.models.registry import TaskSpec

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
