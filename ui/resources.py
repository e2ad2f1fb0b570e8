"""The app's caches: model cards, verified models, OOD statistics, stored predictions, curves and manifests, each
keyed by the model file's checksum so a retrained model is never served from a stale entry. Lowest of `ui`: the
sidebar (`ui.common`) and the site views (`ui.sites`) both read from here."""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from core.config import dataset_available, task_data_dir
from core.evaluation import metrics
from core.evaluation.metrics import OperatingCurve
from core.inference import scoring
from core.models import store


def _card_mtime(task: str, model_id: str) -> float:
    try:
        return os.stat(store.model_dir(task, model_id) / "card.json").st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def _card(task: str, model_id: str, mtime: float) -> dict:
    return store.read_card(task, model_id)


def card(task: str, model_id: str) -> dict:
    """The model card (re-read when the file changes)."""
    return _card(task, model_id, _card_mtime(task, model_id))


def version(task: str, model_id: str) -> str:
    """Cache key of a model version: its checksum from the card."""
    return str(card(task, model_id).get("sha256", ""))


@st.cache_resource(show_spinner="Loading the model…", max_entries=16)
def _model(task: str, model_id: str, sha: str):
    m = store.load_model(task, model_id)
    scoring.warm_up(m)  # inside the "Loading the model…" spinner rather than on the first upload
    return m


def model(task: str, model_id: str):
    """The Keras model, loaded once per version (checksum verified against the card)."""
    return _model(task, model_id, version(task, model_id))


@st.cache_resource(show_spinner=False, max_entries=16)
def _ood(task: str, model_id: str, sha: str):
    """The model's out-of-distribution statistics (models/<task>/<id>/ood.npz), attached to it; None if absent."""
    from core.inference.guard import load_ood

    try:
        return load_ood(task, model_id, model=_model(task, model_id, sha))
    except Exception:  # a missing or stale statistics file must never stop scoring
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def _predictions(task: str, model_id: str, which: str, sha: str) -> pd.DataFrame | None:
    try:
        return store.read_predictions(task, model_id, which)
    except FileNotFoundError:
        return None


def predictions(task: str, model_id: str, which: str) -> pd.DataFrame | None:
    """val/test predictions CSV as a frame (path, label, score, y), or None when the file is missing."""
    return _predictions(task, model_id, which, version(task, model_id))


@st.cache_resource(show_spinner=False, max_entries=64)
def _curve(task: str, model_id: str, which: str, sha: str) -> OperatingCurve | None:
    df = _predictions(task, model_id, which, sha)
    return None if df is None else OperatingCurve.from_scores(df["y"].to_numpy(), df["score"].to_numpy())


def curve(task: str, model_id: str, which: str) -> OperatingCurve | None:
    """Sorted cumulative counts of a prediction set: every threshold is then a binary search."""
    return _curve(task, model_id, which, version(task, model_id))


@st.cache_data(show_spinner=False, max_entries=64)
def _auc_ci(task: str, model_id: str, which: str, sha: str) -> tuple[float, float, float] | None:
    df = _predictions(task, model_id, which, sha)
    if df is None or df["y"].nunique() < 2:
        return None
    return metrics.delong_auc_ci(df["y"].to_numpy(), df["score"].to_numpy())


def auc_ci(task: str, model_id: str, which: str):
    return _auc_ci(task, model_id, which, version(task, model_id))


@st.cache_data(show_spinner=False, max_entries=32)
def _manifest(task: str, mtime: float) -> pd.DataFrame:
    from core.data import load_task_manifest

    return load_task_manifest(task)


def manifest(task: str) -> pd.DataFrame | None:
    """The task's dataset manifest (absolute `file` paths), or None without the dataset."""
    if not dataset_available(task):
        return None
    return _manifest(task, os.stat(task_data_dir(task) / "manifest.csv").st_mtime)
