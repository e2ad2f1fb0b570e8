"""What every decoder shares: the error a user sees, the decoded-image record and the size limits.

Lives below both `images` (Pillow formats) and `dicom`, so neither has to import the other for these.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Union

import numpy as np

from core.config import REPO_ROOT

ImageSource = Union[str, Path, bytes, bytearray, memoryview, np.ndarray, IO[bytes]]

MIN_SIDE = 32
MAX_PIXELS = 50_000_000  # decompression-bomb guard; far above any radiograph we expect
STREAMLIT_CONFIG = REPO_ROOT / ".streamlit" / "config.toml"
_STREAMLIT_DEFAULT_MB = 200  # Streamlit's own default for server.maxUploadSize


def _max_upload_bytes(path: Path = STREAMLIT_CONFIG) -> int:
    """`server.maxUploadSize` (MB, as Streamlit counts them: MiB) from the app's config, in bytes."""
    try:
        mb = float(tomllib.loads(path.read_text())["server"]["maxUploadSize"])
    except (OSError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError):
        mb = _STREAMLIT_DEFAULT_MB
    return int(mb * 1024 * 1024)


MAX_UPLOAD_BYTES = _max_upload_bytes()


class InputError(ValueError):
    """An input we cannot use, with a message written for the person who uploaded it."""


@dataclass
class DecodedImage:
    """Decoded pixels plus what the user should know about how they were obtained.

    `metadata`: technical tags (DICOM) or basic facts (size, mode). `phi`: patient-identifying DICOM tags,
    kept apart so the UI shows them only when asked; deliberately left out of `repr` so it never lands in
    a log line by accident.
    """

    pixels: np.ndarray
    format: str
    notes: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    phi: dict = field(default_factory=dict, repr=False)
    name: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return self.pixels.shape
