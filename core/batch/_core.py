"""The only place core.batch touches the rest of core: decoding, preparing, scoring and the model store.

Kept in one module so a reorganisation of core/ (io, models, inference packages) is a change of imports here only.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from core.config import REPO_ROOT
from core.io.base import MAX_UPLOAD_BYTES, InputError
from core.io.images import _SUFFIX_FORMAT, read_image, read_image_with_info
from core.inference.decision import input_checks
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare
from core.inference.rows import COLUMNS, PROVENANCE, RowContext, row_context
from core.models.store import load_model
from core.registry import InputSpec, get_task
from core.site.apply import load_site, with_site

IMAGE_SUFFIXES = frozenset(_SUFFIX_FORMAT)  # what a folder is searched for: every suffix the decoder knows

__all__ = [
    "COLUMNS", "IMAGE_SUFFIXES", "PROVENANCE", "REPO_ROOT", "InputError", "InputSpec", "RowContext", "get_task",
    "input_spec", "load_model", "load_site", "predict_tensors", "prepare_bytes", "read_hashed", "row_context",
    "with_site",
]


def input_spec(task: str, model_id: str) -> InputSpec:
    return get_task(task).model(model_id).input


def _read_small(path: str) -> bytes | None:
    """The file's bytes, or None when it is over the upload limit; one open, one fstat, reads to EOF.

    os-level calls: half the CPU of stat() + Path.read_bytes(), which every batch file pays.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_UPLOAD_BYTES:
            return None
        parts, n = [], 0
        while chunk := os.read(fd, max(size + 1 - n, 1 << 16)):  # a regular file: one read, then EOF
            parts.append(chunk)
            n += len(chunk)
            if n > MAX_UPLOAD_BYTES:  # it grew while being read
                return None
        return b"".join(parts)
    finally:
        os.close(fd)


def read_hashed(path: str) -> tuple[str | None, bytes | None, str | None]:
    """(sha256, bytes, None) for a readable file, else (sha256 or None, None, the reader's own message)."""
    try:
        data = _read_small(path)
    except OSError:
        data, too_large = None, False
    else:
        if data is not None:
            return hashlib.sha256(data).hexdigest(), data, None
        too_large = True
    sha = None
    if too_large:  # too large to decode: still hashed (streamed), so a resume recognises it
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


def prepare_bytes(data: bytes, path: str, spec: InputSpec, task: str) -> tuple[np.ndarray, str | None, str | None]:
    """Encoded bytes -> (model tensor, the input checks' reason to withhold or None: wrong kind of picture, or a film
    of another population, a chest film's population as `Population.describe()` gives it or None), decoded and
    checked exactly as core.predict decodes and checks the same file; raises InputError."""
    dec = read_image_with_info(bytes(data), Path(path).name)
    x = prepare(dec.pixels, spec)
    verdict, film = input_checks(dec.pixels, task, dec.phi)
    return x, verdict, film.describe() if film is not None else None
