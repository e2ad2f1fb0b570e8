"""The only place core.batch touches the rest of core: decoding, preparing, scoring and the model store.

Kept in one module so a reorganisation of core/ (io, models, inference packages) is a change of imports here only.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from core.config import REPO_ROOT
from core.io.base import MAX_UPLOAD_BYTES, InputError
from core.io.images import _SUFFIX_FORMAT, decode_bytes, read_image
from core.inference.decision import modality_verdict
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare
from core.inference.rows import COLUMNS, PROVENANCE, RowContext, row_context
from core.models.store import load_model
from core.models.registry import InputSpec, get_task
from core.site.apply import load_site, with_site

IMAGE_SUFFIXES = frozenset(_SUFFIX_FORMAT)  # what a folder is searched for: every suffix the decoder knows

__all__ = [
    "COLUMNS", "IMAGE_SUFFIXES", "PROVENANCE", "REPO_ROOT", "InputError", "InputSpec", "RowContext", "get_task",
    "input_spec", "load_model", "load_site", "predict_tensors", "prepare_bytes", "read_hashed", "row_context",
    "with_site",
]


def input_spec(task: str, model_id: str) -> InputSpec:
    return get_task(task).model(model_id).input


def read_hashed(path: str) -> tuple[str | None, bytes | None, str | None]:
    """(sha256, bytes, None) for a readable file, else (sha256 or None, None, the reader's own message)."""
    try:
        size = Path(path).stat().st_size
        if size <= MAX_UPLOAD_BYTES:
            data = Path(path).read_bytes()
            return hashlib.sha256(data).hexdigest(), data, None
    except OSError:
        size = None
    sha = None
    if size is not None:  # too large to decode: still hashed (streamed), so a resume recognises it
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        sha = h.hexdigest()
    try:
        read_image(path)  # raises the InputError a user would see for this file
    except InputError as exc:
        return sha, None, str(exc)
    return sha, None, "the file could not be read."


def prepare_bytes(data: bytes, path: str, spec: InputSpec, task: str) -> tuple[np.ndarray, str | None]:
    """Encoded bytes -> (model tensor, the modality check's reason to withhold or None), decoded exactly as
    core.predict decodes the same file; raises InputError."""
    pixels = decode_bytes(data, Path(path).name)
    return prepare(pixels, spec), modality_verdict(pixels, task)
