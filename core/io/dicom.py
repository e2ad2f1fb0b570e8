"""DICOM decoding for `core.io.images`: pixels as a clinician would see them, plus notes and tags.

Everything happens in memory on the uploaded bytes (no temporary files). What the display pipeline does:

1. Modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence), via `pydicom.pixels.apply_modality_lut`.
2. VOI: the file's VOI LUT Sequence, else its Window Center/Width (first of several), via
   `pydicom.pixels.apply_voi_lut`; the window's output range is mapped to 0..255. With neither, the
   image's actual range is mapped to 0..255 (nothing clipped).
3. MONOCHROME1 (high values are dark) is inverted so dense tissue is bright, as in MONOCHROME2.

Multi-frame files give their first frame, colour files (RGB, YBR, palette) give RGB. Compressed transfer
syntaxes are decoded when pydicom has a working decoder for them here (RLE always; JPEG Lossless (Process 14),
JPEG-LS and 12-bit JPEG through pylibjpeg-libjpeg; JPEG baseline and JPEG 2000 through Pillow); others (e.g.
HTJ2K) are refused with an `InputError` naming the syntax.

Patient-identifying tags are returned apart from the technical ones (`phi`), so the UI can hide them and
nothing logs them. pydicom's read-time value validation is switched off (`reading_validation_mode =
IGNORE`): its warnings quote element values, which may be patient data, into the log.
"""
from __future__ import annotations

import io
import logging

import numpy as np

from core.io import base
from core.io.base import DecodedImage, InputError

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")

# Technical tags that are useful to show and identify nobody.
META_KEYWORDS = (
    "Modality", "SOPClassUID", "BodyPartExamined", "ViewPosition", "ImageLaterality", "Laterality",
    "PatientOrientation", "ImageType", "PresentationIntentType", "Manufacturer", "ManufacturerModelName",
    "PhotometricInterpretation", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "NumberOfFrames", "PixelSpacing", "ImagerPixelSpacing",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "BurnedInAnnotation", "LossyImageCompression", "KVP", "ExposureIndex",
)

# Identifying tags (DICOM PS3.15 basic confidentiality profile, the ones that carry plain values).
PHI_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames",
    "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers",
    "EthnicGroup", "Occupation", "MilitaryRank", "BranchOfService", "MedicalRecordLocator",
    "PatientComments", "AdditionalPatientHistory", "AdmittingDiagnosesDescription", "PregnancyStatus",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime",
    "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "ContentDate", "ContentTime",
    "InstanceCreationDate", "InstanceCreationTime", "StudyInstanceUID", "SeriesInstanceUID",
    "SOPInstanceUID", "FrameOfReferenceUID", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "RequestingPhysician", "OperatorsName",
    "StationName", "DeviceSerialNumber", "StudyDescription", "SeriesDescription",
    "RequestedProcedureDescription", "PerformedProcedureStepDescription", "ProtocolName",
    "ImageComments", "RequestAttributesSequence",
)

_configured = False


def _configure_pydicom() -> None:
    global _configured
    if not _configured:
        from pydicom import config

        config.settings.reading_validation_mode = config.IGNORE
        _configured = True


def has_preamble(data: bytes) -> bool:
    """Part-10 files carry 'DICM' right after a 128-byte preamble."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def looks_like_dicom(data: bytes, name: str | None = None) -> bool:
    return has_preamble(data) or bool(name and name.lower().endswith(DICOM_SUFFIXES))


def _tag_text(value) -> str | None:
    if value is None:
        return None
    try:
        from pydicom.sequence import Sequence
        from pydicom.uid import UID

        if isinstance(value, Sequence):
            return f"<sequence of {len(value)} item(s)>"
        if isinstance(value, UID) and value.is_valid and value.name != str(value):
            return f"{value.name} ({value})"
        if isinstance(value, (bytes, bytearray)):
            return f"<{len(value)} bytes>"
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        text = str(value)
    except Exception:  # a damaged element must not stop the image
        return None
    return text if text.strip() else None


def _collect(ds, keywords) -> dict[str, str]:
    out = {}
    for kw in keywords:
        try:
            if kw in ds:
                text = _tag_text(ds[kw].value)
                if text is not None:
                    out[kw] = text
        except Exception:
            continue
    return out


def _ensure_transfer_syntax(ds) -> None:
    """Files without a meta header (read with force) still need a syntax for the pixel decoder."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit is None or implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little in (None, True) else ExplicitVRBigEndian


def _check_syntax(ds, name: str) -> str:
    from pydicom.pixels import get_decoder

    ts = ds.file_meta.TransferSyntaxUID
    if not ts.is_transfer_syntax:
        raise InputError(f"{name}: the DICOM file declares an unknown transfer syntax ({ts}); it cannot be decoded.")
    label = ts.name
    if not ts.is_compressed:
        return label
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        raise InputError(
            f"{name}: {label} is not supported. Export the image from your viewer uncompressed "
            "(or as PNG) and upload that file instead."
        )
    return label


def _window_range(ds) -> tuple[float, float, str]:
    """Output range of the VOI transform `apply_voi_lut` applies, and a description of it."""
    from pydicom.pixels import apply_voi, apply_windowing

    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        n, first = int(seq[0].LUTDescriptor[0]) or 65536, int(seq[0].LUTDescriptor[1])
        table = apply_voi(np.arange(first, first + n), ds)
        return float(table.min()), float(table.max()), "the file's VOI lookup table"
    with np.errstate(all="ignore"):
        lo, hi = apply_windowing(np.array([-np.inf, np.inf]), ds)
    center, width = ds["WindowCenter"], ds["WindowWidth"]
    c = center.value[0] if center.VM > 1 else center.value
    w = width.value[0] if width.VM > 1 else width.value
    extra = f" (first of {center.VM})" if center.VM > 1 else ""
    return float(lo), float(hi), f"the file's display window{extra}: centre {float(c):g}, width {float(w):g}"


def _has_voi(ds) -> bool:
    seq = ds.get("VOILUTSequence")
    lut = bool(seq) and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None
    return lut or (ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None)


def _range_to_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip(np.round((a - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise InputError(f"{name}: the image contains invalid (non-finite) pixel values.")
    return a


def _grey_to_uint8(ds, raw: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    arr = _finite(np.asarray(apply_modality_lut(raw, ds)), name)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if ds.get("ModalityLUTSequence"):
        notes.append("Applied the file's modality lookup table.")
    elif slope is not None and intercept is not None and (float(slope), float(intercept)) != (1.0, 0.0):
        notes.append(f"Applied the file's rescale (slope {float(slope):g}, intercept {float(intercept):g}).")

    out = None
    if _has_voi(ds):
        try:
            lo, hi, how = _window_range(ds)
            windowed = np.asarray(apply_voi_lut(arr, ds, index=0), np.float64)
            u8 = _range_to_uint8(windowed, lo, hi)
            at_ends = float(np.mean((u8 == 0) | (u8 == 255)))
            if arr.max() > arr.min() and (u8.max() == u8.min() or at_ends > 0.98):
                notes.append("The file's display window does not fit its pixel values; the full pixel range was used instead.")
            else:
                out = u8
                notes.append(f"Displayed with {how}.")
        except (ValueError, NotImplementedError, KeyError, AttributeError, IndexError, TypeError) as exc:
            log.debug("VOI not applied: %s", type(exc).__name__)
            notes.append("The file's display window could not be applied; the full pixel range was used instead.")
    if out is None:
        lo, hi = float(arr.min()), float(arr.max())
        bits = int(ds.get("BitsStored", 8) or 8)
        if bits <= 8 and 0 <= lo and hi <= 255 and np.all(arr == np.round(arr)):
            out = arr.astype(np.uint8)  # already 8-bit display values
        else:
            out = _range_to_uint8(arr.astype(np.float64), lo, hi)
            notes.append(f"Pixel values {lo:g} to {hi:g} were mapped to 0-255 (nothing clipped).")
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
        notes.append("MONOCHROME1 image inverted so that dense tissue is bright.")
    return out


def _colour_to_uint8(ds, raw: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    pi = str(ds.PhotometricInterpretation)
    arr = raw
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(raw, ds)
        notes.append("Palette-colour image expanded to RGB.")
        if arr.dtype == np.uint16:  # 16-bit palette entries: keep the palette's colours, just drop precision
            return np.round(arr / 257.0).astype(np.uint8)
    arr = _finite(np.asarray(arr), name)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError(f"{name}: unsupported DICOM colour layout ({pi}, shape {arr.shape}).")
    if arr.dtype == np.uint8:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if np.issubdtype(arr.dtype, np.integer) and lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    notes.append(f"Colour values {lo:g} to {hi:g} were mapped to 0-255.")
    return _range_to_uint8(arr.astype(np.float64), lo, hi)


def decode_dicom(data: bytes, name: str = "upload") -> DecodedImage:
    """DICOM bytes -> DecodedImage (uint8 grey or RGB, first frame), or InputError."""
    _configure_pydicom()
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import pixel_array

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble(data))
    except InvalidDicomError:
        raise InputError(f"{name}: this is not a readable DICOM file.") from None
    except Exception as exc:  # truncated headers, bad lengths, ...
        log.debug("dcmread failed: %s", type(exc).__name__)
        raise InputError(f"{name}: the DICOM file is damaged or truncated and could not be read.") from None

    phi = _collect(ds, PHI_KEYWORDS)
    meta = _collect(ds, META_KEYWORDS)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        what = meta.get("SOPClassUID", "")
        raise InputError(
            f"{name}: this DICOM file holds no image" + (f" ({what.split(' (')[0]})" if what else "")
            + "; it may be a report or other non-image object."
        )
    try:
        _ensure_transfer_syntax(ds)
        syntax = _check_syntax(ds, name)
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        pi = str(ds.PhotometricInterpretation).strip()
    except InputError:
        raise
    except Exception as exc:
        log.debug("DICOM header incomplete: %s", type(exc).__name__)
        raise InputError(f"{name}: the DICOM file lacks the image description (rows, columns, photometric interpretation).") from None
    meta["TransferSyntax"] = syntax
    if rows <= 0 or cols <= 0:
        raise InputError(f"{name}: the DICOM file declares an empty image ({cols}×{rows}).")
    if rows * cols > base.MAX_PIXELS:  # from the header, before any pixel is decoded
        raise InputError(f"{name}: the image is {cols}×{rows} pixels, over the {base.MAX_PIXELS:,}-pixel limit.")

    notes: list[str] = []
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        notes.append(f"Compressed DICOM ({syntax}) decoded.")
    if frames > 1:
        notes.append(f"Multi-frame DICOM ({frames} frames): only the first frame is used.")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        notes.append("The file says patient details may be burned into the pixels.")
    try:
        raw = pixel_array(ds, index=0)
    except MemoryError:
        raise InputError(f"{name}: the image is too large to decode.") from None
    except Exception as exc:
        log.debug("DICOM pixel decoding failed: %s", type(exc).__name__)
        raise InputError(f"{name}: the DICOM pixel data is damaged or incomplete and could not be decoded.") from None

    try:
        if pi in ("MONOCHROME1", "MONOCHROME2"):
            if raw.ndim != 2:
                raise InputError(f"{name}: a greyscale DICOM with an unexpected shape {raw.shape}.")
            pixels = _grey_to_uint8(ds, raw, name, notes)
        else:
            pixels = _colour_to_uint8(ds, raw, name, notes)
    except InputError:
        raise
    except Exception as exc:
        log.debug("DICOM display transform failed: %s", type(exc).__name__)
        raise InputError(f"{name}: the DICOM display settings (rescale, window, colour) could not be applied.") from None
    return DecodedImage(np.ascontiguousarray(pixels), "DICOM", notes, meta, phi, name)
