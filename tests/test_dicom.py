"""DICOM: display pipeline (rescale, window/VOI LUT, MONOCHROME1), frames, colour, compression, PHI separation.

Every file is made in code with pydicom (tests/imagegen.py).
"""
from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from core.io.dicom import META_KEYWORDS, PHI_KEYWORDS, has_preamble, looks_like_dicom
from core.io.images import InputError, read_image, read_image_with_info
from tests.imagegen import (
    PATIENT,
    colour,
    encode,
    encode_lossless_jpeg,
    gradient,
    make_dicom,
    make_encapsulated_dicom,
)

RAW12 = gradient(64, 48, np.uint16, 4095)


def _read(data: bytes, name: str = "x.dcm"):
    d = read_image_with_info(data, name)
    assert d.format == "DICOM"
    assert d.pixels.dtype == np.uint8
    return d


def test_preamble_detection():
    data = make_dicom(RAW12)
    assert has_preamble(data) and data[128:132] == b"DICM"
    assert looks_like_dicom(b"", "scan.DCM") and not looks_like_dicom(b"\x89PNG", "scan.png")


def test_monochrome2_without_window_uses_full_range():
    d = _read(make_dicom(RAW12))
    lo, hi = RAW12.min(), RAW12.max()
    want = np.round((RAW12.astype(float) - lo) / (hi - lo) * 255)
    assert np.abs(d.pixels - want).max() <= 1
    assert d.pixels.min() == 0 and d.pixels.max() == 255
    assert any("nothing clipped" in n for n in d.notes)


def test_8bit_monochrome_is_kept_as_is():
    g = gradient()
    d = _read(make_dicom(g))
    np.testing.assert_array_equal(d.pixels, g)


def test_monochrome1_is_inverted():
    m2 = _read(make_dicom(RAW12, "MONOCHROME2")).pixels
    d1 = _read(make_dicom(RAW12, "MONOCHROME1"))
    np.testing.assert_array_equal(d1.pixels, 255 - m2)
    assert any("MONOCHROME1" in n for n in d1.notes)


def test_window_center_width():
    d = _read(make_dicom(RAW12, window=(2000, 1000)))  # window 1500..2500
    raw = RAW12.astype(float)
    assert (d.pixels[raw <= 1499] == 0).all()
    assert (d.pixels[raw >= 2501] == 255).all()
    mid = (raw > 1900) & (raw < 2100)
    assert mid.any() and np.abs(d.pixels[mid].astype(float) - ((raw[mid] - 1500) / 1000 * 255)).max() <= 2
    assert any("centre 2000, width 1000" in n for n in d.notes)


def test_window_of_monochrome1_is_inverted_too():
    w2 = _read(make_dicom(RAW12, "MONOCHROME2", window=(2000, 1000))).pixels
    w1 = _read(make_dicom(RAW12, "MONOCHROME1", window=(2000, 1000))).pixels
    np.testing.assert_array_equal(w1, 255 - w2)


def test_rescale_slope_intercept_then_window_in_rescaled_units():
    # CT-like: stored 0..4095, HU = 1 * raw - 1024; a lung-ish window in HU.
    d = _read(make_dicom(RAW12, slope=1.0, intercept=-1024.0, window=(-500, 1000)))
    hu = RAW12.astype(float) - 1024
    assert (d.pixels[hu <= -1001] == 0).all() and (d.pixels[hu >= 1] == 255).all()
    assert any("intercept -1024" in n for n in d.notes)


def test_rescale_without_window_keeps_order_and_range():
    d = _read(make_dicom(RAW12, slope=2.5, intercept=-100.0))
    assert d.pixels.min() == 0 and d.pixels.max() == 255
    order = np.argsort(RAW12.ravel(), kind="stable")
    assert np.all(np.diff(d.pixels.ravel()[order].astype(int)) >= 0)


def test_signed_pixels():
    signed = (RAW12.astype(np.int16) - 2048)
    d = _read(make_dicom(signed, bits_stored=12))
    assert d.pixels.min() == 0 and d.pixels.max() == 255
    assert d.pixels[0, 0] == 255  # the bright block (most positive value)


def test_multiple_windows_use_the_first():
    d = _read(make_dicom(RAW12, window=[(2000, 1000), (500, 200)]))
    np.testing.assert_array_equal(d.pixels, _read(make_dicom(RAW12, window=(2000, 1000))).pixels)
    assert any("first of 2" in n for n in d.notes)


def test_voi_lut_sequence_is_preferred_over_window():
    lut = np.linspace(4095, 0, 4096).astype(int)  # an inverting 12-bit LUT
    d = _read(make_dicom(RAW12, voi_lut=lut, window=(100, 10)))
    want = np.round((4095 - RAW12.astype(float)) / 4095 * 255)
    assert np.abs(d.pixels - want).max() <= 1
    assert any("VOI lookup table" in n for n in d.notes)


def test_window_that_misses_the_data_falls_back_to_full_range():
    d = _read(make_dicom(RAW12, window=(60000, 10)))  # everything below the window: a black image
    assert d.pixels.max() == 255 and d.pixels.min() == 0
    assert any("does not fit" in n for n in d.notes)


def test_multiframe_uses_first_frame_with_note():
    frames = np.stack([RAW12, 4095 - RAW12, RAW12 // 2])
    d = _read(make_dicom(frames))
    np.testing.assert_array_equal(d.pixels, _read(make_dicom(RAW12)).pixels)
    assert any("3 frames" in n for n in d.notes)
    assert d.metadata["NumberOfFrames"] == "3"


def test_rgb_dicom():
    c = colour()
    d = _read(make_dicom(c, "RGB"))
    np.testing.assert_array_equal(d.pixels, c)


def test_palette_colour_dicom():
    idx = (gradient() // 32).astype(np.uint8)  # indices 0..7
    ds = pydicom.dcmread(io.BytesIO(make_dicom(idx)))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    lut = np.array([[i * 30, 250 - i * 30, 100] for i in range(8)], np.uint16) * 257  # 16-bit entries
    for k, ch in enumerate(("Red", "Green", "Blue")):
        ds.add_new(f"{ch}PaletteColorLookupTableDescriptor", "US", [8, 0, 16])
        ds.add_new(f"{ch}PaletteColorLookupTableData", "OW", lut[:, k].astype("<u2").tobytes())
    buf = io.BytesIO()
    ds.save_as(buf)
    d = _read(buf.getvalue())
    np.testing.assert_array_equal(d.pixels, (lut[idx] // 257).astype(np.uint8))
    assert any("Palette" in n for n in d.notes)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless])
def test_lossless_compression_written_by_pydicom_is_decoded_exactly(syntax):
    """RLE (pydicom's own codec) and JPEG-LS (pylibjpeg-libjpeg) give the uncompressed file's pixels."""
    ds = pydicom.dcmread(io.BytesIO(make_dicom(RAW12)))
    ds.compress(syntax)
    buf = io.BytesIO()
    ds.save_as(buf)
    d = _read(buf.getvalue())
    np.testing.assert_array_equal(d.pixels, _read(make_dicom(RAW12)).pixels)
    assert d.metadata["TransferSyntax"] == syntax.name
    assert any(syntax.name in n for n in d.notes)


def test_jpeg2000_lossless_is_decoded():
    g = gradient()
    j2k = encode(g, "JPEG2000", no_jp2=True, irreversible=False)
    d = _read(make_encapsulated_dicom([j2k], JPEG2000Lossless, *g.shape))
    np.testing.assert_array_equal(d.pixels, g)


def test_jpeg_baseline_colour_is_decoded_to_rgb():
    c = colour()
    d = _read(make_encapsulated_dicom([encode(c, "JPEG", quality=95)], JPEGBaseline8Bit, *c.shape[:2],
                                      photometric="YBR_FULL_422", samples=3))
    assert d.pixels.shape == c.shape and np.abs(d.pixels.astype(int) - c).mean() < 4


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_jpeg_lossless_process14_is_decoded_exactly(bits):
    """The syntax most PACS exports use for radiographs (pylibjpeg-libjpeg decodes it)."""
    img = np.random.default_rng(bits).integers(0, 2**bits, size=(48, 64)).astype(np.uint8 if bits == 8 else np.uint16)
    img[:, :8] = 0  # a flat band: long runs of zero differences
    data = make_encapsulated_dicom([encode_lossless_jpeg(img, bits)], JPEGLosslessSV1, 48, 64, bits=bits)
    d = _read(data)
    np.testing.assert_array_equal(d.pixels, _read(make_dicom(img, bits_stored=bits)).pixels)  # as if uncompressed
    assert any(JPEGLosslessSV1.name in n for n in d.notes)


def test_damaged_lossless_jpeg_is_refused_as_damaged():
    data = make_encapsulated_dicom([b"\xff\xd8\xff\xc3 not a real bitstream"], JPEGLosslessSV1, 64, 48, bits=12)
    with pytest.raises(InputError, match="damaged or incomplete"):
        read_image(data, "broken.dcm")


def test_compressed_syntax_without_decoder_is_refused_by_name():
    data = make_encapsulated_dicom([b"\xff\x4f\xff\x51 not decodable here"], HTJ2KLossless, 64, 48)
    with pytest.raises(InputError) as e:
        read_image(data, "htj2k.dcm")
    assert f"{HTJ2KLossless.name} is not supported" in str(e.value)


def test_missing_jpeg2000_handler_gives_the_named_message(monkeypatch):
    import pydicom.pixels

    class NoPlugin:
        is_available = False

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: NoPlugin())
    g = gradient()
    data = make_encapsulated_dicom([encode(g, "JPEG2000", no_jp2=True, irreversible=False)], JPEG2000Lossless, *g.shape)
    with pytest.raises(InputError, match=r"JPEG 2000 Image Compression \(Lossless Only\) is not supported"):
        read_image(data, "j2k.dcm")


def test_bare_dataset_without_preamble_is_read_by_name():
    data = make_dicom(RAW12, preamble=False)
    assert not has_preamble(data)
    d = _read(data, "old.dcm")
    np.testing.assert_array_equal(d.pixels, _read(make_dicom(RAW12)).pixels)
    with pytest.raises(InputError):
        read_image(data, "old.bin")  # neither preamble nor .dcm name: not recognised


def test_dcm_name_on_a_png_still_decodes():
    g = gradient()
    np.testing.assert_array_equal(read_image(encode(g, "PNG"), "mislabelled.dcm"), g)


def test_garbage_dcm():
    with pytest.raises(InputError):
        read_image(b"\x00" * 128 + b"DICM" + b"\xff" * 300, "bad.dcm")
    with pytest.raises(InputError):
        read_image(b"not dicom at all", "bad.dcm")


def test_dicom_without_pixels():
    data = make_dicom(RAW12)
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(InputError, match="holds no image"):
        read_image(buf.getvalue(), "report.dcm")


def test_header_claiming_huge_image_is_refused_before_decoding():
    ds = pydicom.dcmread(io.BytesIO(make_dicom(RAW12)))
    ds.Rows, ds.Columns = 60000, 60000
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(InputError, match="pixel limit"):
        read_image(buf.getvalue(), "bomb.dcm")


def test_pixel_data_shorter_than_header_says():
    ds = pydicom.dcmread(io.BytesIO(make_dicom(RAW12)))
    ds.PixelData = ds.PixelData[:1000]
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(InputError, match="damaged or incomplete"):
        read_image(buf.getvalue(), "short.dcm")


def test_tiny_dicom_is_refused():
    with pytest.raises(InputError, match="at least 32"):
        read_image(make_dicom(np.zeros((16, 16), np.uint16)), "tiny.dcm")


# ------------------------------------------------------------------------------------------------ privacy


def test_phi_is_separated_from_metadata():
    d = _read(make_dicom(RAW12, window=(2000, 1000)))
    for k, v in PATIENT.items():
        assert d.phi[k] == v
        assert k not in d.metadata
    assert not set(d.metadata) & set(PHI_KEYWORDS)
    assert set(d.metadata) - {"TransferSyntax"} <= set(META_KEYWORDS)
    assert d.metadata["Modality"] == "DX" and d.metadata["BodyPartExamined"] == "CHEST"
    assert "Digital X-Ray" in d.metadata["SOPClassUID"]
    flat = " ".join(map(str, d.metadata.values())) + " ".join(d.notes)
    for v in PATIENT.values():
        assert len(v) < 3 or v not in flat


def test_phi_never_reaches_logs_or_warnings(caplog):
    bad_values = {"PatientBirthDate": "not-a-date", "PatientName": "Doe^Jane"}  # invalid DA would warn with its value
    samples = [make_dicom(RAW12, extra=bad_values), make_dicom(RAW12)[:-700], make_dicom(RAW12, window=(60000, 10))]
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for s in samples:
            try:
                read_image_with_info(s, "p.dcm")
            except InputError as exc:
                assert "Doe" not in str(exc) and "MRN" not in str(exc)
    text = caplog.text + " ".join(str(w.message) for w in caught)
    for secret in ("Doe", "Jane", "MRN-0042", "not-a-date", "General Hospital", "ACC123"):
        assert secret not in text


def test_burned_in_annotation_is_flagged():
    d = _read(make_dicom(RAW12, extra={"BurnedInAnnotation": "YES"}))
    assert any("burned into the pixels" in n for n in d.notes)
