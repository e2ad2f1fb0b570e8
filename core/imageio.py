"""Decode whatever a user or a dataset hands us into a plain uint8 array, or raise `InputError`.

Everything that reads pixels goes through `read_image`, so a file scored by the app and by
`core.evaluate` is decoded the same way.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Union[str, Path, bytes, bytearray, memoryview, np.ndarray]

MIN_SIDE = 32
MAX_PIXELS = 50_000_000  # decompression-bomb guard; far above any radiograph we expect


class InputError(ValueError):
    """An input we cannot use, with a message written for the person who uploaded it."""


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer) and a.max(initial=0) <= 255 and a.min(initial=0) >= 0:
        return a.astype(np.uint8)
    lo, hi = np.nanmin(a), np.nanmax(a)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise InputError("The image contains invalid (non-finite) pixel values.")
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) / (hi - lo) * 255).astype(np.uint8)


def _check_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(f"Expected a grey or colour image, got an array of shape {arr.shape}.")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise InputError(
            f"The image is {arr.shape[1]}×{arr.shape[0]} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed to read it."
        )
    return _as_uint8(arr)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return np.asarray(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode == "L":
        return np.asarray(img)
    return np.asarray(img.convert("RGB"))


def decode_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, TIFF, BMP, WebP)."""
    if not data:
        raise InputError(f"{name}: the file is empty.")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"{name}: the image is {img.width}×{img.height} pixels, over the {MAX_PIXELS:,}-pixel limit.")
            img.load()
            arr = _pil_to_array(img)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{name}: the image is too large to open safely (over {MAX_PIXELS:,} pixels).") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: this is not an image format SecondLook can read (PNG, JPEG, TIFF, BMP, WebP).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: the image file is damaged or truncated ({exc}).") from None
    return _check_array(arr)


def read_image(source: ImageSource, name: str | None = None) -> np.ndarray:
    """File path, encoded bytes or an array -> uint8 array, (H, W) grey or (H, W, 3) RGB."""
    if isinstance(source, np.ndarray):
        return _check_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), name or "upload")
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{name or path.name}: cannot read the file ({exc.strerror or exc}).") from None
    return decode_bytes(data, name or path.name)
