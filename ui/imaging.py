"""Cached scoring and image rendering for the pages (memory only: nothing uploaded touches the disk)."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.inference import scoring
from core.registry import get_task
from ui import common


@st.cache_data(show_spinner=False, max_entries=512)
def _scored(task: str, model_id: str, sha: str, digest: str, name: str, _data: bytes, calibration: str = "",
            checks: str = "") -> scoring.Scored:
    spec = get_task(task).model(model_id)
    return scoring.score_bytes(common._model(task, model_id, sha), spec, _data, name, ood=common._ood(task, model_id, sha),
                               with_display=False, calibration=common.card(task, model_id).get("calibration"))


def score(task: str, model_id: str, data: bytes, name: str) -> scoring.Scored:
    """Probability (calibrated by the card) + Grad-CAM of one file, once per (model version, calibration, content,
    age-group check version: a newly installed check re-decides the population)."""
    from core.inference import population

    return _scored(task, model_id, common.version(task, model_id), scoring.digest(data), name, data,
                   str(common.card(task, model_id).get("calibration") or ""), population.version())


@st.cache_data(show_spinner=False, max_entries=2048)
def _file_bytes(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


def file_bytes(path: str) -> bytes:
    return _file_bytes(path, os.stat(path).st_mtime)


def score_file(task: str, model_id: str, path: str, name: str | None = None) -> scoring.Scored:
    return score(task, model_id, file_bytes(path), name or Path(path).name)


@st.cache_data(show_spinner=False, max_entries=32)
def _display(digest: str, name: str, _data: bytes):
    """Display-size pixels of a file (decoded again on demand, so cached scores stay small)."""
    return scoring.display_image(scoring.decode(_data, name).pixels)


@st.cache_data(show_spinner=False, max_entries=512)
def _rendered(task: str, model_id: str, sha: str, digest: str, alpha: float, name: str, _data: bytes, _heatmap) -> bytes:
    import numpy as np

    from core.inference.explain import overlay

    img = _display(digest, name, _data)
    heat = _heatmap if (_heatmap is not None and alpha > 0) else np.zeros((2, 2), np.float32)
    return scoring.jpeg_bytes(overlay(img, heat, alpha=alpha if _heatmap is not None else 0.0), quality=92)


def rendered(task: str, model_id: str, s: scoring.Scored, alpha: float, data: bytes) -> bytes:
    """JPEG of the image (alpha 0) or its Grad-CAM overlay at display size, cached per opacity."""
    alpha = round(float(alpha), 2)
    if alpha <= 0:  # the plain picture does not depend on the model
        return _rendered("", "", "", s.digest, 0.0, s.name, data, None)
    return _rendered(task, model_id, common.version(task, model_id), s.digest, alpha, s.name, data, s.heatmap)


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumbnail(path: str, mtime: float, side: int) -> bytes:
    import cv2

    from core.io.images import read_image

    img = read_image(path)
    scale = side / max(img.shape[:2])
    h, w = max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return scoring.jpeg_bytes(cv2.resize(img, (w, h), interpolation=interp), quality=88)


def thumbnail(path: str, side: int = 256) -> bytes:
    """Small JPEG of a dataset image for galleries (no model involved)."""
    return _thumbnail(path, os.stat(path).st_mtime, side)


def gradcam_caption(task: str) -> str:
    t = get_task(task)
    return (f"Grad-CAM: warm colours mark where the model found evidence **for {t.finding}**. It is shown even when "
            "the call is negative, and it is not an outline of the lesion.")
