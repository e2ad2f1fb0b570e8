"""Fuzzing the decoder: whatever bytes arrive, `read_image` returns a valid uint8 image or raises InputError,
within 2 s per input, and never anything else.

Inputs: random bytes; bit-flipped / truncated / spliced encodings of images made in code (PNG 8/16-bit,
palette, RGBA, JPEG, CMYK JPEG, TIFF, BMP, WebP, DICOM plain/RLE/JPEG 2000); and the same mutations of real
test images read from the datasets at run time. Examples are derandomised in CI (reproducible) and random
locally (more ground covered over time).
"""
from __future__ import annotations

import io
import os
from functools import lru_cache

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.io.images import InputError, read_image
from tests.conftest import require_dataset
from tests.imagegen import colour, encode, gradient, make_dicom, make_encapsulated_dicom

FUZZ = settings(
    deadline=2000,  # ms per example: a hostile file must not stall the app
    derandomize=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
NAMES = st.sampled_from(["upload", "x.png", "x.jpg", "x.tif", "x.bmp", "x.webp", "x.dcm", "x.PNG", "noext"])


def check(data: bytes, name: str) -> None:
    try:
        out = read_image(data, name)
    except InputError as exc:
        assert str(exc), "InputError without a message"
        return
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.ndim == 2 or (out.ndim == 3 and out.shape[2] == 3)
    assert min(out.shape[:2]) >= 32


@lru_cache(maxsize=1)
def seeds() -> list[tuple[str, bytes]]:
    g, c = gradient(48, 40), colour(48, 40)
    alpha = np.dstack([c, (gradient(48, 40) // 2).astype(np.uint8)])
    raw12 = gradient(40, 36, np.uint16, 4095)
    rle = pydicom.dcmread(io.BytesIO(make_dicom(raw12, window=(2000, 800))))
    rle.compress(pydicom.uid.RLELossless)
    buf = io.BytesIO()
    rle.save_as(buf)
    return [
        ("g.png", encode(g, "PNG")),
        ("g16.png", encode(Image.fromarray(gradient(48, 40, np.uint16)), "PNG")),
        ("p.png", encode(Image.fromarray(c).quantize(colors=8), "PNG")),
        ("a.png", encode(Image.fromarray(alpha, "RGBA"), "PNG")),
        ("c.jpg", encode(c, "JPEG", quality=80)),
        ("k.jpg", encode(Image.fromarray(c).convert("CMYK"), "JPEG")),
        ("p.jpg", encode(g, "JPEG", progressive=True)),
        ("t.tif", encode(c, "TIFF", compression="tiff_lzw")),
        ("b.bmp", encode(c, "BMP")),
        ("w.webp", encode(c, "WEBP", quality=70)),
        ("d.dcm", make_dicom(raw12, "MONOCHROME1", slope=1.0, intercept=-1024.0)),
        ("f.dcm", make_dicom(np.stack([raw12, raw12 // 2]))),
        ("r.dcm", buf.getvalue()),
        ("j.dcm", make_encapsulated_dicom([encode(g, "JPEG2000", no_jp2=True, irreversible=False)],
                                          pydicom.uid.JPEG2000Lossless, *g.shape)),
    ]


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """Bit flips, byte overwrites, a truncation, and/or a deleted or duplicated chunk."""
    b = bytearray(data)
    n = len(b)
    for _ in range(draw(st.integers(0, 12))):
        # header bytes are the interesting ones: half the flips land in the first 256 bytes
        pos = draw(st.one_of(st.integers(0, min(255, n - 1)), st.integers(0, n - 1)))
        b[pos] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        pos = draw(st.integers(0, n - 1))
        val = draw(st.binary(min_size=1, max_size=8))
        b[pos : pos + len(val)] = val
    if draw(st.booleans()):
        a, z = sorted((draw(st.integers(0, n)), draw(st.integers(0, n))))
        b = b[:a] + (b[a:z] * draw(st.integers(0, 2))) + b[z:]  # delete (x0), keep (x1) or duplicate (x2) a chunk
    if draw(st.booleans()):
        b = b[: draw(st.integers(0, len(b)))]
    return bytes(b)


@st.composite
def mutated_seed(draw):
    name, data = draw(st.sampled_from(seeds()))
    return draw(st.sampled_from([name, "upload"])), draw(mutated(data))


def setup_module(module):  # import and warm every decoder once, so the deadline measures decoding only
    for name, data in seeds():
        read_image(data, name)


@FUZZ
@given(data=st.binary(max_size=4096), name=NAMES)
def test_random_bytes(data, name):
    check(data, name)


@FUZZ
@given(prefix=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM",
                               b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"\x00" * 128 + b"DICM"]),
       tail=st.binary(max_size=2048), name=NAMES)
def test_random_bytes_behind_real_magic_numbers(prefix, tail, name):
    check(prefix + tail, name)


@settings(FUZZ, max_examples=400)
@given(case=mutated_seed())
def test_mutated_encodings_made_in_code(case):
    name, data = case
    check(data, name)


@lru_cache(maxsize=3)
def real_test_files(task: str) -> list[str]:
    from core.data import load_task_manifest

    df = load_task_manifest(task)
    return df.loc[df["split"] == "test", "file"].tolist()


@pytest.mark.parametrize("task", ["pneumonia", "effusion", "malaria"])
def test_mutated_real_test_images(task):
    require_dataset(task)
    files = real_test_files(task)

    @settings(FUZZ, max_examples=120)
    @given(i=st.integers(0, len(files) - 1), data=st.data())
    def run(i, data):
        with open(files[i], "rb") as fh:
            raw = fh.read()
        check(data.draw(mutated(raw)), os.path.basename(files[i]))

    run()
