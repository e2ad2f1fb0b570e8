"""Manifests: any CSV of `path,label` rows as a frame with absolute files and 0/1 labels."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import task_data_dir
from core.registry import TaskSpec, get_task


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
