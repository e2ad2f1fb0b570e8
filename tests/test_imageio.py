"""Every supported format decodes to the expected uint8 pixels, and every bad input is one InputError.

All files are built in code (tests/imagegen.py); nothing is read from the repo.
"""
from __future__ import annotations

import builtins
import io
import struct
import tomllib
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import REPO_ROOT
from core.io import base
from core.io import images as imageio
from core.io.base import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    MIN_SIDE,
    DecodedImage,
    InputError,
)
from core.io.images import decode_bytes, read_image, read_image_with_info, read_many
from tests.imagegen import colour, encode, gradient, jpeg_with_orientation, make_dicom


def _ok(arr: np.ndarray) -> None:
    assert arr.dtype == np.uint8
    assert arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)
    assert arr.flags["C_CONTIGUOUS"]


# ------------------------------------------------------------------------------------------------ formats


def test_png_8bit_grey_is_exact():
    g = gradient()
    d = read_image_with_info(encode(g, "PNG"), "x.png")
    assert d.format == "PNG" and d.notes == []
    np.testing.assert_array_equal(d.pixels, g)


def test_png_8bit_rgb_is_exact():
    c = colour()
    np.testing.assert_array_equal(read_image(encode(c, "PNG")), c)


def test_png_16bit_is_scaled_by_its_range_without_clipping():
    a = (gradient(dtype=np.uint16, hi=2000) + 1000).astype(np.uint16)  # a 12-bit-like image using 1000..3000
    d = read_image_with_info(encode(Image.fromarray(a), "PNG"), "x16.png")
    _ok(d.pixels)
    assert d.pixels.min() == 0 and d.pixels.max() == 255  # full display range used
    expected = np.round((a.astype(float) - a.min()) / (a.max() - a.min()) * 255)
    assert np.abs(d.pixels.astype(float) - expected).max() <= 1
    assert any("16-bit" in n and "nothing clipped" in n for n in d.notes)


def test_png_16bit_full_range_keeps_order():
    a = gradient(dtype=np.uint16)
    px = read_image(encode(Image.fromarray(a), "PNG"))
    order = np.argsort(a.ravel(), kind="stable")
    assert np.all(np.diff(px.ravel()[order].astype(int)) >= 0)  # monotonic: no information reversed or wrapped


def test_palette_png():
    c = colour()
    pal = Image.fromarray(c).quantize(colors=16)
    d = read_image_with_info(encode(pal, "PNG"), "p.png")
    assert d.pixels.shape == c.shape
    np.testing.assert_array_equal(d.pixels, np.asarray(pal.convert("RGB")))
    assert any("Palette" in n for n in d.notes)


def test_rgba_png_flattens_transparency_on_black():
    c = colour()
    alpha = np.full(c.shape[:2], 255, np.uint8)
    alpha[:, : c.shape[1] // 2] = 0  # left half fully transparent
    rgba = np.dstack([c, alpha])
    d = read_image_with_info(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert d.pixels.shape == c.shape
    assert (d.pixels[:, : c.shape[1] // 2] == 0).all()
    np.testing.assert_array_equal(d.pixels[:, c.shape[1] // 2 :], c[:, c.shape[1] // 2 :])
    assert any("Transparent" in n for n in d.notes)


def test_opaque_rgba_has_no_transparency_note():
    c = colour()
    rgba = np.dstack([c, np.full(c.shape[:2], 255, np.uint8)])
    d = read_image_with_info(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(d.pixels, c)
    assert not any("Transparent" in n for n in d.notes)


def test_grey_alpha_png_stays_grey():
    g = gradient()
    la = Image.merge("LA", [Image.fromarray(g), Image.fromarray(np.full_like(g, 255))])
    px = read_image(encode(la, "PNG"))
    np.testing.assert_array_equal(px, g)


def test_bilevel_png():
    g = gradient() > 100
    px = read_image(encode(Image.fromarray(g), "PNG"))
    np.testing.assert_array_equal(px, g.astype(np.uint8) * 255)


def test_cmyk_jpeg_converts_to_rgb():
    c = colour()
    cmyk = Image.fromarray(c).convert("CMYK")
    d = read_image_with_info(encode(cmyk, "JPEG", quality=95), "c.jpg")
    assert d.pixels.shape == c.shape
    assert np.abs(d.pixels.astype(int) - np.asarray(cmyk.convert("RGB")).astype(int)).mean() < 6
    assert any("CMYK" in n for n in d.notes)


@pytest.mark.parametrize(
    "orientation, expected",
    [
        (1, lambda a: a),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # stored rotated: display needs 90° clockwise
        (8, lambda a: np.rot90(a, 1)),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_is_applied(orientation, expected):
    g = gradient(64, 48)
    d = read_image_with_info(jpeg_with_orientation(g, orientation), "phone.jpg")
    want = expected(g)
    assert d.pixels.shape == want.shape
    assert np.abs(d.pixels.astype(int) - want.astype(int)).mean() < 3
    assert (orientation != 1) == any("EXIF orientation" in n for n in d.notes)


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_deflate"])
def test_tiff_grey(compression):
    g = gradient()
    kw = {"compression": compression} if compression else {}
    np.testing.assert_array_equal(read_image(encode(g, "TIFF", **kw), "x.tif"), g)


def test_tiff_rgb_and_16bit():
    c = colour()
    np.testing.assert_array_equal(read_image(encode(c, "TIFF"), "c.tiff"), c)
    a = gradient(dtype=np.uint16, hi=4095)
    px = read_image(encode(Image.fromarray(a), "TIFF"), "a.tiff")
    assert px.min() == 0 and px.max() == 255


def test_tiff_float_is_scaled_and_nan_is_refused():
    f = gradient().astype(np.float32) / 7.0
    px = read_image(encode(Image.fromarray(f, "F"), "TIFF"))
    assert px.min() == 0 and px.max() == 255
    f[3, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        read_image(encode(Image.fromarray(f, "F"), "TIFF"), "nan.tif")


def test_multipage_tiff_uses_first_page_with_note():
    a, b = Image.fromarray(gradient()), Image.fromarray(255 - gradient())
    buf = io.BytesIO()
    a.save(buf, "TIFF", save_all=True, append_images=[b])
    d = read_image_with_info(buf.getvalue(), "stack.tif")
    np.testing.assert_array_equal(d.pixels, gradient())
    assert any("2 frames" in n for n in d.notes)


def test_bmp():
    c = colour()
    np.testing.assert_array_equal(read_image(encode(c, "BMP"), "c.bmp"), c)
    np.testing.assert_array_equal(read_image(encode(gradient(), "BMP"), "g.bmp"), gradient())


def test_webp_lossless_and_lossy():
    c = colour()
    np.testing.assert_array_equal(read_image(encode(c, "WEBP", lossless=True), "c.webp"), c)
    px = read_image(encode(c, "WEBP", quality=80), "c.webp")
    assert px.shape == c.shape and np.abs(px.astype(int) - c).mean() < 8


def test_wrong_extension_is_read_by_content_with_note():
    g = gradient()
    d = read_image_with_info(encode(g, "PNG"), "scan.jpg")
    np.testing.assert_array_equal(d.pixels, g)
    assert d.format == "PNG" and any("named .jpg" in n for n in d.notes)


def test_dicom_is_detected_without_dcm_name():
    d = read_image_with_info(make_dicom(gradient(dtype=np.uint16, hi=4095)), "upload")
    assert d.format == "DICOM"


# ------------------------------------------------------------------------------------------------ sources


def test_path_bytes_filelike_and_array_agree(tmp_path):
    g = gradient()
    data = encode(g, "PNG")
    p = tmp_path / "g.png"
    p.write_bytes(data)
    bio = io.BytesIO(data)
    bio.name = "g.png"
    outs = [read_image(g), read_image(data), read_image(bytearray(data)), read_image(memoryview(data)),
            read_image(str(p)), read_image(p), read_image(bio)]
    for o in outs:
        np.testing.assert_array_equal(o, g)
    assert read_image_with_info(bio).name == "g.png"


def test_legacy_signatures():
    g = gradient()
    assert isinstance(read_image(encode(g, "PNG")), np.ndarray)
    np.testing.assert_array_equal(decode_bytes(encode(g, "PNG")), g)
    np.testing.assert_array_equal(decode_bytes(encode(g, "PNG"), name="x.png"), g)
    assert MIN_SIDE == 32 and MAX_PIXELS >= 10_000_000
    assert issubclass(InputError, ValueError)


def test_arrays_are_normalised():
    assert read_image(np.zeros((40, 40, 1), np.uint8)).shape == (40, 40)
    assert read_image(np.zeros((40, 40, 4), np.uint8)).shape == (40, 40, 3)
    f = np.linspace(0, 1, 40 * 40).reshape(40, 40)
    px = read_image(f)
    assert px.dtype == np.uint8 and px.min() == 0 and px.max() == 255
    ints = np.arange(40 * 40).reshape(40, 40) % 200
    np.testing.assert_array_equal(read_image(ints), ints.astype(np.uint8))
    assert read_image(np.ones((40, 40), bool)).max() == 255


@pytest.mark.parametrize("bad", [np.full((40, 40), np.nan), np.r_[np.zeros(1599), np.inf].reshape(40, 40)])
def test_non_finite_arrays_are_refused(bad):
    with pytest.raises(InputError, match="non-finite"):
        read_image(bad)


def test_partly_nan_array_is_refused():
    a = np.random.default_rng(0).random((40, 40))
    a[5, 5] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        read_image(a)


@pytest.mark.parametrize("shape", [(40,), (40, 40, 2), (2, 40, 40, 3)])
def test_odd_array_shapes_are_refused(shape):
    with pytest.raises(InputError, match="grey or colour"):
        read_image(np.zeros(shape, np.uint8))


def test_unknown_source_type_is_input_error():
    with pytest.raises(InputError):
        read_image(12345)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "nope.png")


# ------------------------------------------------------------------------------------------------ bad input


def test_empty_file():
    with pytest.raises(InputError, match="empty"):
        read_image(b"", "x.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP", "WEBP"])
def test_truncated_file(fmt):
    data = encode(colour(128, 128) if fmt != "JPEG" else np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8), fmt)
    with pytest.raises(InputError, match="damaged or truncated"):
        read_image(data[: len(data) // 2], f"cut.{fmt.lower()}")


def test_truncated_dicom():
    data = make_dicom(gradient(dtype=np.uint16, hi=4095))
    with pytest.raises(InputError, match="damaged|incomplete"):
        read_image(data[: len(data) - 500], "cut.dcm")


@pytest.mark.parametrize("name", ["scan.png", "scan.jpg", "scan.tiff", "scan.webp", "upload"])
def test_non_image_bytes_behind_an_image_name(name):
    with pytest.raises(InputError, match="not a|not an image"):
        read_image(b"%PDF-1.7\n" + b"this is a PDF report, not a picture\n" * 20, name)


def test_html_named_png_says_so():
    with pytest.raises(InputError, match=r"named \.png but its contents are not a PNG"):
        read_image(b"<!doctype html><html>oops</html>", "x.png")


def test_other_pillow_formats_are_not_opened():
    """Only the advertised formats: no GIF/EPS/PSD/ICO parsers run on uploads."""
    with pytest.raises(InputError, match="not"):
        read_image(encode(colour(), "GIF"), "x.gif")


@pytest.mark.parametrize("w,h", [(31, 64), (64, 31), (1, 1)])
def test_too_small(w, h):
    with pytest.raises(InputError, match=f"at least {MIN_SIDE}"):
        read_image(encode(np.zeros((h, w), np.uint8), "PNG"), "tiny.png")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header():
    # 60,000 x 60,000 declared in 100 bytes: refused with the limit message, not a decode failure.
    with pytest.raises(InputError, match="pixel limit"):
        read_image(_png_header_only(60_000, 60_000), "bomb.png")


def test_pixel_limit_is_checked_before_decoding(monkeypatch):
    from PIL import ImageFile

    data = encode(np.zeros((120, 120), np.uint8), "PNG")
    monkeypatch.setattr(base, "MAX_PIXELS", 100 * 100)
    loaded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(1) or real_load(self))
    with pytest.raises(InputError, match="pixel limit"):
        read_image(data, "big.png")
    assert not loaded  # refused from the header: no pixel was decoded
    with pytest.raises(InputError, match="pixel limit"):
        read_image(make_dicom(np.zeros((120, 120), np.uint16)), "big.dcm")
    monkeypatch.setattr(base, "MAX_PIXELS", 200 * 200)
    read_image(data, "fine.png")
    assert loaded  # the probe does see decoding when it happens


def test_upload_limit_comes_from_streamlit_config():
    cfg = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert MAX_UPLOAD_BYTES == int(cfg["server"]["maxUploadSize"] * 1024 * 1024)


def test_upload_over_size_limit(monkeypatch, tmp_path):
    data = encode(colour(128, 128), "PNG")
    monkeypatch.setattr(base, "MAX_UPLOAD_BYTES", len(data) - 1)
    with pytest.raises(InputError, match="upload limit"):
        read_image(data, "big.png")
    p = tmp_path / "big.png"
    p.write_bytes(data)
    with pytest.raises(InputError, match="upload limit"):
        read_image(p)


def test_read_many_keeps_going_after_bad_files():
    good = encode(gradient(), "PNG")
    res = read_many([good, b"", ("named.png", b"garbage"), ("d.dcm", make_dicom(gradient(dtype=np.uint16, hi=4095))),
                     np.zeros((10, 10), np.uint8), good[:40]])
    assert [type(r).__name__ for r in res] == ["DecodedImage", "InputError", "InputError", "DecodedImage", "InputError", "InputError"]
    assert "named.png" in str(res[2])
    assert isinstance(res[0], DecodedImage) and res[3].format == "DICOM"


def test_decoding_writes_no_files(monkeypatch):
    """Privacy: uploads are decoded in memory; no temporary or other file is written."""
    samples = [encode(colour(), f) for f in ("PNG", "JPEG", "TIFF", "BMP", "WEBP")] + [make_dicom(gradient(dtype=np.uint16, hi=4095))]
    for s in samples:  # warm up lazy imports first
        read_image(s)
    real_open = builtins.open
    import os
    import tempfile

    def no_write_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            raise AssertionError(f"decoder tried to write {file!r}")
        return real_open(file, mode, *a, **k)

    def boom(*a, **k):
        raise AssertionError("decoder tried to create a temporary file")

    monkeypatch.setattr(builtins, "open", no_write_open)
    for fn in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, fn, boom)
    real_os_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flags, *a, **k: boom() if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                        else real_os_open(path, flags, *a, **k))
    for s in samples:
        _ok(read_image(s))


def test_decoded_image_repr_hides_phi():
    d = read_image_with_info(make_dicom(gradient(dtype=np.uint16, hi=4095)), "p.dcm")
    assert d.phi["PatientName"] == "Doe^Jane"
    assert "Doe" not in repr(d) and "MRN-0042" not in repr(d)


def test_sample_outputs_are_valid_arrays():
    for data, name in [(encode(gradient(), "PNG"), "a.png"), (encode(colour(), "JPEG"), "b.jpg"),
                       (make_dicom(colour(), "RGB"), "c.dcm")]:
        _ok(read_image(data, name))
    assert Path(imageio.__file__).name == "images.py"
