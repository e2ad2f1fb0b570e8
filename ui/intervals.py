"""Patient-level intervals for the pages, cached: each stored prediction's patient (from the task manifest) and the
cluster-bootstrap AUC. Where the dataset (and so the patient ids) is not on this machine, the pages fall back to
image-level intervals and say so."""
from __future__ import annotations

import os

import numpy as np
import streamlit as st

from core.config import data_root, dataset_available, task_data_dir
from core.evaluation import intervals, metrics
from core.evaluation.patients import prediction_groups, unit_short
from ui import common

NO_IDS = "image-level (no patient ids)"


def data_key(task: str) -> str:
    """Changes when the dataset appears, disappears or its manifest changes (the cache must follow it)."""
    if not dataset_available(task):
        return f"{data_root()}|absent"
    return f"{data_root()}|{os.stat(task_data_dir(task) / 'manifest.csv').st_mtime}"


@st.cache_data(show_spinner=False, max_entries=64)
def _groups(task: str, model_id: str, which: str, sha: str, dkey: str) -> np.ndarray | None:
    df = common._predictions(task, model_id, which, sha)
    return None if df is None else prediction_groups(task, df["path"].tolist())


def groups(task: str, model_id: str, which: str) -> np.ndarray | None:
    """Patient group of every row of the model's val/test predictions, or None without patient ids."""
    return _groups(task, model_id, which, common.version(task, model_id), data_key(task))


def groups_for_paths(task: str, paths: list[str]) -> np.ndarray | None:
    return prediction_groups(task, paths)


def label(task: str, g: np.ndarray | None) -> str:
    """What kind of interval a caption is about: 'patient-level (14 patients)' or 'image-level (no patient ids)'."""
    return NO_IDS if g is None else f"patient-level ({len(set(g))} {unit_short(task)})"


@st.cache_data(show_spinner=False, max_entries=64)
def _auc_interval(task: str, model_id: str, which: str, sha: str, dkey: str):
    df = common._predictions(task, model_id, which, sha)
    if df is None or df["y"].nunique() < 2:
        return None
    g = _groups(task, model_id, which, sha, dkey)
    y, s = df["y"].to_numpy(), df["score"].to_numpy()
    return intervals.auc_ci(y, s, g) if g is not None else metrics.delong_auc_ci(y, s)


def auc_interval(task: str, model_id: str, which: str):
    """(AUC, low, high): cluster bootstrap over patients where ids exist, else DeLong (image-level)."""
    return _auc_interval(task, model_id, which, common.version(task, model_id), data_key(task))


@st.cache_data(show_spinner="Resampling patients…", max_entries=32)
def paired_replicates(task: str, models: tuple[str, ...], shas: tuple[str, ...], dkey: str, _y: np.ndarray,
                      _scores: dict, paths_key: int, _groups_arr: np.ndarray | None) -> dict[str, np.ndarray]:
    """AUC replicates of every chosen model on the same patient draws (pairs are then differences)."""
    return intervals.model_auc_replicates(_y, _scores, _groups_arr)


@st.cache_data(show_spinner=False, max_entries=64)
def calibration(task: str, model_id: str, sha: str, dkey: str, paths_key: int, _y: np.ndarray, _s: np.ndarray,
                _groups_arr: np.ndarray | None) -> dict:
    """`intervals.calibration_cis` once per model version and image set (it does not depend on the operating point)."""
    return intervals.calibration_cis(_y, _s, _groups_arr)


@st.cache_data(show_spinner=False, max_entries=512)
def rates(task: str, model_id: str, sha: str, dkey: str, paths_key: int, threshold: float, _y: np.ndarray,
          _s: np.ndarray, _groups_arr: np.ndarray | None):
    """`intervals.rate_cis` once per model version, image set and operating point."""
    return intervals.rate_cis(_y, _s, _groups_arr, threshold)
