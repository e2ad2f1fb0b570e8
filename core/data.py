"""Manifests, leak-free validation splits and in-memory arrays for training and evaluation."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .config import task_data_dir
from .imageio import read_image
from .preprocess import prepare
from .tasks import InputSpec, TaskSpec, get_task

SPLIT_SEED = 20261121


def manifest_path(task: str) -> Path:
    return task_data_dir(task) / "manifest.csv"


def read_manifest(path: str | Path, task: TaskSpec) -> pd.DataFrame:
    """Any CSV with `path,label` (paths relative to its folder) -> frame with absolute `file` and 0/1 `y`."""
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {sorted(missing)}")
    unknown = sorted(set(df["label"]) - set(task.labels))
    if unknown:
        raise ValueError(f"{path}: labels {unknown} are not {task.name} labels {list(task.labels)}")
    df = df.copy()
    df["file"] = [str((path.parent / p).resolve()) for p in df["path"]]
    df["y"] = (df["label"] == task.positive).astype(np.int8)
    return df


def load_task_manifest(task: str) -> pd.DataFrame:
    return read_manifest(manifest_path(task), get_task(task))


def manifest_sha256(task: str) -> str:
    return hashlib.sha256(manifest_path(task).read_bytes()).hexdigest()


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


def load_arrays(files: list[str], spec: InputSpec, workers: int = 4) -> np.ndarray:
    """Decode and prepare every file through the shared preprocessing path."""
    def one(f: str) -> np.ndarray:
        return prepare(read_image(f), spec)

    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(one, files))
    return np.stack(out) if out else np.zeros((0, spec.size, spec.size, spec.channels), np.float32)
