"""Which patient each stored prediction belongs to, from the task's manifest (joined on `path`).

The unit resampled by patient-level intervals (core.evaluation.intervals): malaria `patient_id`; pneumonia the
coarse `patient_id` (its SOURCE.md: person numbers may be shared across subtypes, so the coarse key is the
conservative one); effusion `split_group` (the real NIH patient where known, else one image or one near-duplicate
pair: those images have no patient id). Without the dataset on this machine there are no ids: callers fall back
to image-level intervals and say so.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pandas as pd

from core.config import dataset_available
from core.data.manifests import manifest_path
from core.data.splits import PATIENT_COLUMN

UNIT_TEXT = {
    "malaria": "patients (patient_id)",
    "pneumonia": "patients (coarse patient_id)",
    "effusion": "patients (split_group: the NIH patient where known, else one image)",
}

UNIT_SHORT = {"effusion": "patient groups; an image without a known patient counts as its own"}


def unit_column(task: str) -> str:
    return PATIENT_COLUMN.get(task, "patient_id")


def unit_short(task: str) -> str:
    """Plural noun for captions: '14 patients'."""
    return UNIT_SHORT.get(task, "patients")


def unit_text(task: str) -> str:
    return UNIT_TEXT.get(task, f"patients ({unit_column(task)})")


@lru_cache(maxsize=8)
def _path_to_group(task: str, column: str, mtime: float) -> dict[str, str] | None:
    head = pd.read_csv(manifest_path(task), nrows=0).columns
    if column not in head or "path" not in head:
        return None
    df = pd.read_csv(manifest_path(task), usecols=["path", column], dtype=str, keep_default_na=False)
    return dict(zip(df["path"], df[column]))


def prediction_groups(task: str, paths) -> np.ndarray | None:
    """Patient group of every prediction row (paths as in the predictions CSV), or None when the manifest is absent,
    lacks the column, or does not list every path (then no row can be trusted to a patient)."""
    if not dataset_available(task):
        return None
    column = unit_column(task)
    lookup = _path_to_group(task, column, os.stat(manifest_path(task)).st_mtime)
    if lookup is None:
        return None
    out = [lookup.get(p) for p in paths]
    if any(g is None or g == "" for g in out):
        return None
    return np.asarray(out, dtype=object)
