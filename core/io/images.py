"""Decode whatever a user or a dataset hands us into a plain uint8 array, or raise `InputError`.

Everything that reads pixels goes through `read_image` / `read_image_with_info`, so a file scored by the app
and by `core.evaluate` is decoded the same way.

Formats: PNG (8/16-bit, palette, alpha), JPEG (CMYK, EXIF orientation), TIFF, BMP, WebP (Pillow, restricted
to those formats), and DICOM (`core.io.dicom`, detected by the 'DICM' marker at byte 128 or a .dcm name).
Decoding happens in memory only. Every failure a user can cause (empty, truncated, not an image, too small,
too large a file, too many pixels, non-finite values, unsupported DICOM compression) is one `InputError`
whose message can be shown as is. The pixel-count limit is checked from the header, before decoding.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.io import base
from core.io.base import DecodedImage, ImageSource, InputError  # noqa: F401  (ImageSource: public type)

log = logging.getLogger(__name__)

SUPPORTED = "PNG, JPEG, TIFF, BMP, WebP or DICOM"
_PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "WEBP")  # JPEG also opens phone MPO files
_SUFFIX_FORMAT = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
    ".bmp": "BMP", ".dib": "BMP", ".webp": "WEBP", ".dcm": "DICOM", ".dicom": "DICOM",
}
_FORMAT_FAMILY = {"MPO": "JPEG", "DIB": "BMP"}



# ---------------------------------------------------------------------------------------------- arrays


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    """Array handed in by code: uint8 kept, integers within 0..255 cast, anything else stretched over its range."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"expected numeric pixel values, got an array of type {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.max() <= 255 and arr.min() >= 0:
        return arr.astype(np.uint8)
    return _stretch(arr)[0]


def _stretch(arr: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Map the actual pixel range onto 0..255 (no clipping); refuses NaN/inf."""
    a = arr.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError("the image contains invalid (non-finite) pixel values.")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8), lo, hi
    return np.round((a - lo) / (hi - lo) * 255).astype(np.uint8), lo, hi


def _msg(name: str | None, text: str) -> str:
    """'name: text', or 'Text' when there is no name."""
    return f"{name}: {text}" if name else text[:1].upper() + text[1:]


def _check_array(arr: np.ndarray, name: str | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(_msg(name, f"expected a grey or colour image, got an array of shape {arr.shape}."))
    if min(arr.shape[:2]) < base.MIN_SIDE:
        raise InputError(_msg(
            name, f"the image is {arr.shape[1]}×{arr.shape[0]} pixels; at least {base.MIN_SIDE}×{base.MIN_SIDE} is needed to read it."
        ))
    try:
        out = _as_uint8(arr)
    except InputError as exc:
        raise InputError(_msg(name, str(exc))) from None
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------------- Pillow


def _pil_to_array(img: Image.Image, notes: list[str]) -> np.ndarray:
    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # unreadable EXIF is not a reason to refuse the pixels
        orientation = 1
    if orientation != 1:
        img = ImageOps.exif_transpose(img)
        notes.append(f"Rotated/flipped upright using the camera's EXIF orientation tag ({orientation}).")
    mode = img.mode
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "F" and not np.isfinite(arr).all():
            raise InputError("the image contains invalid (non-finite) pixel values.")
        out, lo, hi = _stretch(arr)
        depth = "16-bit" if mode.startswith("I;16") else ("32-bit integer" if mode == "I" else "floating-point")
        notes.append(f"{depth} image: values {lo:g} to {hi:g} mapped to 0-255 (nothing clipped).")
        return out
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB.")
        return np.asarray(img.convert("RGB"))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        grey = mode in ("LA", "La")
        if alpha.min() < 255:
            notes.append("Transparent areas were shown on black.")
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        return np.asarray(flat.convert("L" if grey else "RGB"))
    if mode == "L":
        return np.asarray(img)
    if mode == "P":
        notes.append("Palette image expanded to RGB.")
    return np.asarray(img.convert("RGB"))


def _not_an_image(name: str) -> InputError:
    suffix = Path(name).suffix.lower()
    if suffix in _SUFFIX_FORMAT:
        return InputError(
            f"{name}: the file is named {suffix} but its contents are not a {_SUFFIX_FORMAT[suffix]} image "
            f"(or any format SecondLook reads: {SUPPORTED})."
        )
    return InputError(f"{name}: this is not an image format SecondLook can read ({SUPPORTED}).")


def _decode_pillow(data: bytes, name: str) -> DecodedImage:
    try:
        img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except UnidentifiedImageError:
        raise _not_an_image(name) from None
    except Image.DecompressionBombError:
        raise InputError(f"{name}: the image is too large to open safely (over the {base.MAX_PIXELS:,}-pixel limit).") from None
    except Exception as exc:  # header parsers raise all sorts on damaged bytes
        log.debug("header parse failed: %s", type(exc).__name__)
        raise InputError(f"{name}: the image file is damaged or truncated.") from None
    notes: list[str] = []
    with img:
        fmt = _FORMAT_FAMILY.get(img.format or "", img.format or "image")
        w, h = img.size
        if w * h > base.MAX_PIXELS:  # header only: nothing decoded yet
            raise InputError(f"{name}: the image is {w}×{h} pixels, over the {base.MAX_PIXELS:,}-pixel limit.")
        if min(w, h) < base.MIN_SIDE:
            raise InputError(f"{name}: the image is {w}×{h} pixels; at least {base.MIN_SIDE}×{base.MIN_SIDE} is needed to read it.")
        expected = _SUFFIX_FORMAT.get(Path(name).suffix.lower())
        if expected and expected != fmt:
            notes.append(f"The file is named {Path(name).suffix} but is a {fmt} image; it was read as {fmt}.")
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
            if frames > 1:
                img.seek(0)
                notes.append(f"The file holds {frames} frames/pages; only the first is used.")
            img.load()
            arr = _pil_to_array(img, notes)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
        except Image.DecompressionBombError:
            raise InputError(f"{name}: the image is too large to open safely (over the {base.MAX_PIXELS:,}-pixel limit).") from None
        except MemoryError:
            raise InputError(f"{name}: the image is too large to decode.") from None
        except Exception as exc:  # truncated streams, corrupt chunks, unsupported sub-formats
            log.debug("pixel decode failed: %s", type(exc).__name__)
            raise InputError(f"{name}: the image file is damaged or truncated, so its pixels could not be read.") from None
    meta = {"format": fmt, "width": w, "height": h, "mode": img.mode}
    return DecodedImage(arr, fmt, notes, meta, {}, name)


# ---------------------------------------------------------------------------------------------- entry points


def _finish(dec: DecodedImage) -> DecodedImage:
    dec.pixels = _check_array(dec.pixels, dec.name or None)
    return dec


def _decode(data: bytes, name: str) -> DecodedImage:
    if not data:
        raise InputError(f"{name}: the file is empty.")
    if len(data) > base.MAX_UPLOAD_BYTES:
        raise InputError(
            f"{name}: the file is {len(data) / 2**20:.1f} MB, over the {base.MAX_UPLOAD_BYTES / 2**20:g} MB upload limit."
        )
    from core.io.dicom import has_preamble, looks_like_dicom

    try:
        if has_preamble(data):
            from core.io.dicom import decode_dicom

            return _finish(decode_dicom(data, name))
        if looks_like_dicom(data, name):  # .dcm name without the preamble: try DICOM, then the image formats
            from core.io.dicom import decode_dicom

            try:
                return _finish(decode_dicom(data, name))
            except InputError as dicom_error:
                try:
                    return _finish(_decode_pillow(data, name))
                except InputError:
                    raise dicom_error from None
        return _finish(_decode_pillow(data, name))
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{name}: the image is too large to decode.") from None
    except Exception as exc:  # last line of defence: a user's file never produces a traceback
        log.warning("unexpected %s while decoding an upload", type(exc).__name__)
        raise InputError(f"{name}: the file could not be read as an image.") from None


def _source_bytes(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "upload"
    if hasattr(source, "getvalue") or hasattr(source, "read"):  # BytesIO, Streamlit UploadedFile, open files
        label = name or Path(str(getattr(source, "name", "") or "upload")).name
        size = getattr(source, "size", None)
        if isinstance(size, int) and size > base.MAX_UPLOAD_BYTES:
            raise InputError(f"{label}: the file is {size / 2**20:.1f} MB, over the {base.MAX_UPLOAD_BYTES / 2**20:g} MB upload limit.")
        try:
            data = source.getvalue() if hasattr(source, "getvalue") else source.read(base.MAX_UPLOAD_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise InputError(f"{label}: cannot read the upload ({exc}).") from None
        if isinstance(data, str):
            raise InputError(f"{label}: expected binary image data, got text.")
        return bytes(data), label
    path = Path(source)
    label = name or path.name
    try:
        size = path.stat().st_size
        if size > base.MAX_UPLOAD_BYTES:
            raise InputError(f"{label}: the file is {size / 2**20:.1f} MB, over the {base.MAX_UPLOAD_BYTES / 2**20:g} MB upload limit.")
        return path.read_bytes(), label
    except OSError as exc:
        raise InputError(f"{label}: cannot read the file ({exc.strerror or exc}).") from None


def read_image_with_info(source: ImageSource, name: str | None = None) -> DecodedImage:
    """File path, encoded bytes, a file-like upload or an array -> DecodedImage (pixels, format, notes, tags)."""
    if isinstance(source, np.ndarray):
        pixels = _check_array(source, name)
        return DecodedImage(pixels, "array", [], {"width": pixels.shape[1], "height": pixels.shape[0]}, {}, name or "array")
    if not isinstance(source, (str, Path, bytes, bytearray, memoryview)) and not (
        hasattr(source, "getvalue") or hasattr(source, "read") or hasattr(source, "__fspath__")
    ):
        raise InputError(f"{name or 'input'}: cannot read an image from a {type(source).__name__}.")
    data, label = _source_bytes(source, name)
    return _decode(data, label)


def read_image(source: ImageSource, name: str | None = None) -> np.ndarray:
    """File path, encoded bytes or an array -> uint8 array, (H, W) grey or (H, W, 3) RGB."""
    return read_image_with_info(source, name).pixels


def decode_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, TIFF, BMP, WebP, DICOM)."""
    return _decode(bytes(data), name).pixels


def read_many(sources) -> list[DecodedImage | InputError]:
    """Decode many inputs; a bad one yields its InputError in its slot and does not stop the others.

    Each item is an ImageSource, a file-like upload (its `.name` is used) or a `(name, source)` pair.
    """
    out: list[DecodedImage | InputError] = []
    for item in sources:
        name = None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, item = item
        try:
            out.append(read_image_with_info(item, name))
        except InputError as exc:
            out.append(exc)
        except Exception as exc:  # e.g. a source of a type we do not know
            log.warning("unexpected %s while reading input %d", type(exc).__name__, len(out))
            out.append(InputError(f"{name or 'input'}: could not be read ({type(exc).__name__})."))
    return out
