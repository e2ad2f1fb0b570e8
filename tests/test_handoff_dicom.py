"""DICOM results: SC + SR reference the source, carry finding/probability/decision/operating point/model identity,
say which UIDs were generated, keep patient data out unless asked, and pass dicom3tools' dciodvfy with 0 errors."""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from core.handoff import dicom_out
from tests.handoff_support import dciodvfy, dicom, png, score


def walk(items):
    """Every content item of an SR tree, depth first."""
    for it in items:
        yield it
        yield from walk(it.get("ContentSequence", []))


def by_meaning(sr, meaning: str) -> list:
    return [it for it in walk(sr.ContentSequence) if it.get("ConceptNameCodeSequence")
            and it.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def texts(sr) -> str:
    return "\n".join(str(it.TextValue) for it in walk(sr.ContentSequence) if it.get("ValueType") == "TEXT")


def reread(ds):
    return pydicom.dcmread(io.BytesIO(dicom_out.to_bytes(ds)))


def validate(tmp_path, res) -> list[str]:
    """dciodvfy errors over both objects (warnings are looked at in the report: DICOMDIR hints, private codes)."""
    errors = []
    for name, data in res.files():
        p = tmp_path / name
        p.write_bytes(data)
        e, _ = dciodvfy(p)
        errors += [f"{name}: {x}" for x in e]
    return errors


def test_dicom_input_results_reference_the_source_and_validate(tmp_path):
    src_bytes = dicom(3)
    src = pydicom.dcmread(io.BytesIO(src_bytes))
    case = score([("study.dcm", src_bytes)])
    r = case.images[0]
    res = dicom_out.build(case, r)
    sc, sr = reread(res.sc), reread(res.sr)
    assert validate(tmp_path, res) == []
    # same study, new series, source instance referenced by both
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == src.StudyInstanceUID
    assert len({sc.SeriesInstanceUID, sr.SeriesInstanceUID, src.SeriesInstanceUID}) == 3
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert ev.StudyInstanceUID == src.StudyInstanceUID
    assert ev.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert ev.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    src_img = [it for it in walk(sr.ContentSequence) if it.get("ValueType") == "IMAGE"]
    assert src_img and src_img[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    # the content: finding, probability, threshold, model identity
    m = case.model
    finding = by_meaning(sr, "Pneumonia")[0].ConceptCodeSequence[0].CodeMeaning
    assert finding == ("Present" if r.flagged else "Absent")
    prob = by_meaning(sr, "Model probability of pneumonia")[0].MeasuredValueSequence[0].NumericValue
    assert float(prob) == pytest.approx(r.probability, abs=1e-6)
    thr = by_meaning(sr, "Operating point threshold")[0].MeasuredValueSequence[0].NumericValue
    assert float(thr) == pytest.approx(m.threshold, abs=1e-6)
    assert float(by_meaning(sr, "Validation sensitivity at card threshold")[0].MeasuredValueSequence[0].NumericValue) == \
        pytest.approx(m.validation.sensitivity, abs=1e-6)
    assert by_meaning(sr, "Device Observer Serial Number")[0].TextValue == m.sha256
    assert by_meaning(sr, "Device Observer Model Name")[0].TextValue == m.model_id
    assert by_meaning(sr, "Algorithm Version")[0].TextValue == m.sha256
    t = texts(sr)
    assert "Decision at the operating point" in t and "sensitivity" in t and "not a diagnostic device" in t
    assert sc.SOPInstanceUID in t  # the SR names its overlay image
    assert "generated" not in t  # the source had every UID
    assert sr.Manufacturer == sc.Manufacturer == "SecondLook"
    assert "not for diagnosis" in sc.SeriesDescription.lower()


def test_patient_module_is_blank_unless_asked():
    case = score([("study.dcm", dicom(4))])
    plain = dicom_out.build(case, case.images[0])
    for ds in plain.datasets:
        ds = reread(ds)
        assert str(ds.PatientName) == "" and ds.PatientID == "" and ds.PatientBirthDate == "" and ds.AccessionNumber == ""
    asked = dicom_out.build(case, case.images[0], include_patient=True)
    for ds in asked.datasets:
        ds = reread(ds)
        assert str(ds.PatientName) == "Doe^Jane" and ds.PatientID == "MRN-0042" and ds.AccessionNumber == "ACC123"


def test_dicom_without_study_and_series_uids_gets_new_ones_and_says_so(tmp_path):
    raw = dicom(5, uids=False)
    assert "StudyInstanceUID" not in pydicom.dcmread(io.BytesIO(raw))
    case = score([("nouid.dcm", raw)])
    res = dicom_out.build(case, case.images[0])
    assert validate(tmp_path, res) == []
    sc, sr = reread(res.sc), reread(res.sr)
    assert sc.StudyInstanceUID == sr.StudyInstanceUID
    t = texts(sr)
    assert f"had no Study Instance UID; SecondLook generated {sr.StudyInstanceUID}" in t
    assert "had no Series Instance UID" in t
    assert any("Study Instance UID" in g for g in res.generated)


def test_plain_image_gets_a_new_study_and_the_sr_says_so(tmp_path):
    case = score([("chest.png", png(6))], site_profile="Clinic B")
    r = case.images[0]
    res = dicom_out.build(case, r)
    assert validate(tmp_path, res) == []
    sc, sr = reread(res.sc), reread(res.sr)
    assert sc.StudyInstanceUID == sr.StudyInstanceUID
    assert "SourceImageSequence" not in sc  # nothing to point at
    t = texts(sr)
    assert "plain image file, not DICOM: SecondLook generated a new study" in t and r.sha256 in t
    assert "Site profile: Clinic B" in t
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ev.ReferencedSOPInstanceUID == sc.SOPInstanceUID  # the SR points at the overlay capture


def test_overlay_is_burnt_in_under_a_visible_label():
    case = score([("chest.png", png(7))])
    r = case.images[0]
    sc = reread(dicom_out.build(case, r).sc)
    px = sc.pixel_array
    h, w = r.overlay.shape[:2]
    assert px.shape == (sc.Rows, sc.Columns, 3) and sc.Rows > h and sc.Columns == w
    band = px[: sc.Rows - h]
    yellow = (band[..., 0] > 200) & (band[..., 1] > 150) & (band[..., 2] < 80)
    assert yellow.sum() > 50  # the 'NOT FOR DIAGNOSIS' title is drawn in the band
    np.testing.assert_array_equal(px[sc.Rows - h:], r.overlay)  # the picture itself is the overlay, lossless
    assert "NOT FOR DIAGNOSIS" in str(sc.ImageComments)


def test_withheld_decision_is_undetermined():
    case = score([("chest.png", png(8))])
    r = case.images[0]
    r.withhold("Input guard: wrong kind of image.")
    sr = reread(dicom_out.build(case, r).sr)
    assert by_meaning(sr, "Pneumonia")[0].ConceptCodeSequence[0].CodeMeaning == "Undetermined"
    assert "No decision: withheld (Input guard: wrong kind of image.)" in texts(sr)


def test_an_unscored_image_cannot_become_a_result():
    case = score([("broken.png", b"junk")])
    with pytest.raises(dicom_out.DicomOutputError, match="not scored"):
        dicom_out.build(case, case.images[0])
    assert dicom_out.build_case(case) == []


def test_colour_cell_image_of_the_malaria_task_validates(tmp_path):
    """No body part, no orientation: the SC says 'unknown' the way DICOM allows, and both objects validate."""
    from core.models import store
    from core.handoff import case as C
    from tests.imagegen import colour, encode

    models = store.bundled_models("malaria")
    if not models:
        pytest.skip("no bundled malaria model")
    model, ood = C.load_model("malaria", models[0])
    info = C.model_info("malaria", models[0])
    case = C.score_case(model, info, [("cell.png", encode(colour(96, 90), "PNG"))], ood=ood, surface=None)
    res = dicom_out.build(case, case.images[0])
    assert validate(tmp_path, res) == []
    sr = reread(res.sr)
    assert by_meaning(sr, "Malaria")[0].ConceptCodeSequence[0].CodeMeaning in ("Present", "Absent")
    assert reread(res.sc).Laterality == ""
