"""Test pictures made in code: encoded image files (Pillow) and DICOM files (pydicom), all in memory.

No dataset image is ever copied into the repo; tests that want real pictures read the dataset at run time.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def gradient(h: int = 64, w: int = 48, dtype=np.uint8, hi: int | None = None) -> np.ndarray:
    """A grey ramp with a bright square: every row and column differs, so flips and rotations are detectable."""
    hi = hi if hi is not None else np.iinfo(dtype).max
    y, x = np.mgrid[0:h, 0:w]
    a = (x / max(w - 1, 1) * 0.5 + y / max(h - 1, 1) * 0.4) * hi
    a[: h // 4, : w // 4] = hi  # bright block at the top-left corner
    return np.round(a).astype(dtype)


def colour(h: int = 64, w: int = 48) -> np.ndarray:
    g = gradient(h, w)
    return np.stack([g, 255 - g, np.full_like(g, 90)], axis=2)


def encode(img: Image.Image | np.ndarray, fmt: str, **kw) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg_with_orientation(arr: np.ndarray, orientation: int) -> bytes:
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif, quality=95)


# ------------------------------------------------------------------------------------------------ DICOM

PATIENT = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-0042",
    "PatientBirthDate": "20210101",  # a 4-year-old on StudyDate: the pneumonia population (core.inference.population)
    "PatientSex": "F",
    "InstitutionName": "General Hospital",
    "AccessionNumber": "ACC123",
    "StudyDate": "20250102",
}


def make_dicom(
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    *,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | list[tuple[float, float]] | None = None,
    voi_lut: np.ndarray | None = None,
    voi_first: int = 0,
    preamble: bool = True,
    patient: bool = True,
    extra: dict | None = None,
) -> bytes:
    """Uncompressed DICOM from an array (frames first for multi-frame; (H, W, 3) for RGB)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    if patient:
        for k, v in PATIENT.items():
            setattr(ds, k, v)
    bits = bits_stored or (8 if arr.dtype == np.uint8 else 12)
    ds.set_pixel_data(arr, photometric, bits)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
        ds.RescaleType = "US"
    if window is not None:
        wins = window if isinstance(window, list) else [window]
        ds.WindowCenter = [c for c, _ in wins] if len(wins) > 1 else wins[0][0]
        ds.WindowWidth = [w for _, w in wins] if len(wins) > 1 else wins[0][1]
    if voi_lut is not None:
        item = Dataset()
        item.add_new("LUTDescriptor", "US", [len(voi_lut), voi_first, 16 if voi_lut.max() > 255 else 8])
        item.add_new("LUTData", "US", [int(v) for v in voi_lut])
        ds.VOILUTSequence = [item]
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    if preamble:
        ds.save_as(buf, enforce_file_format=True)
    else:  # a bare dataset (no preamble, no 'DICM', no meta header), as some old exporters write
        ds.file_meta = FileMetaDataset()
        ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def make_encapsulated_dicom(frame_bytes: list[bytes], syntax, rows: int, cols: int, photometric: str = "MONOCHROME2",
                            samples: int = 1, bits: int = 8) -> bytes:
    """DICOM wrapping already-compressed frames (JPEG, JPEG 2000, ... made by Pillow or made up)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = PATIENT["PatientName"]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = (8 if bits <= 8 else 16), bits, bits - 1
    ds.PixelRepresentation = 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    if len(frame_bytes) > 1:
        ds.NumberOfFrames = len(frame_bytes)
    ds.PixelData = encapsulate(frame_bytes)
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def encode_lossless_jpeg(img: np.ndarray, precision: int) -> bytes:
    """A greyscale image as a JPEG Lossless, Process 14, Selection Value 1 bitstream (ITU T.81 annex H).

    No library we use writes this format (PACS exports use it a lot), so the test builds it: predictor 1 (left
    neighbour; top neighbour in the first column; 2**(P-1) for the first pixel), differences modulo 2**16 coded by
    their bit-length category with one Huffman table in which every category 0..16 has a 5-bit code.
    """
    h, w = img.shape
    x = img.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[1:, 1:] = x[1:, :-1]
    diffs = ((x - pred + 32768) % 65536 - 32768).ravel()

    bits: list[str] = []
    for d in diffs.tolist():
        size = 16 if d == -32768 else int(abs(d)).bit_length()
        bits.append(format(size, "05b"))  # category s has code s (5 bits): canonical for 17 codes of length 5
        if 0 < size < 16:
            bits.append(format(d if d > 0 else d + (1 << size) - 1, f"0{size}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with 1-bits
    data = int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""
    data = data.replace(b"\xff", b"\xff\x00")  # byte stuffing

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # number of codes of length 1..16
    dht = segment(0xC4, bytes([0x00]) + counts + bytes(range(17)))  # class 0 (DC/lossless), table 0
    sof3 = segment(0xC3, bytes([precision]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + bytes([1, 1, 0x11, 0]))
    sos = segment(0xDA, bytes([1, 1, 0x00, 1, 0, 0]))  # 1 component, table 0; Ss = predictor 1, Se = 0, Ah/Al = 0
    return b"\xff\xd8" + dht + sof3 + sos + data + b"\xff\xd9"
