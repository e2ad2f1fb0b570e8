"""PDF case report: what a reader finds in it (read back with poppler's pdftotext), its size and page layout."""
from __future__ import annotations

import re
import subprocess

import pytest

from core.evaluation import operating_point as op
from core.models import store
from core.handoff import case as C
from core.handoff.report import _latin1, build_pdf
from tests.handoff_support import TASK, dicom, need_tool, png, score


def pdf_text(pdf: bytes, tmp_path) -> str:
    exe = need_tool("pdftotext", "poppler-utils")
    p = tmp_path / "r.pdf"
    p.write_bytes(pdf)
    out = subprocess.run([exe, "-layout", str(p), "-"], capture_output=True, text=True, timeout=60, check=True).stdout
    return re.sub(r"\s+", " ", out)


def pages(pdf: bytes, tmp_path) -> int:
    exe = need_tool("pdfinfo", "poppler-utils")
    p = tmp_path / "p.pdf"
    p.write_bytes(pdf)
    info = subprocess.run([exe, str(p)], capture_output=True, text=True, timeout=60, check=True).stdout
    return int(re.search(r"Pages:\s+(\d+)", info).group(1))


def images_in(pdf: bytes, tmp_path) -> int:
    exe = need_tool("pdfimages", "poppler-utils")
    p = tmp_path / "i.pdf"
    p.write_bytes(pdf)
    out = subprocess.run([exe, "-list", str(p)], capture_output=True, text=True, timeout=60, check=True).stdout
    return len(out.splitlines()) - 2  # two header lines


def test_one_image_report_says_what_the_model_said_and_how_far_to_trust_it(tmp_path):
    case = score([("chest.dcm", dicom())])  # a 4-year-old (DICOM birth date): the pneumonia population
    r = case.images[0]
    assert r.ok
    pdf = build_pdf(case)
    assert pdf.startswith(b"%PDF") and len(pdf) <= 1_000_000
    assert pages(pdf, tmp_path) == 1  # a one-image report fits one A4 page
    assert images_in(pdf, tmp_path) == 2  # the image and its Grad-CAM overlay
    text = pdf_text(pdf, tmp_path)
    m = case.model
    card = store.read_card(TASK, m.model_id)
    assert m.model_id in text and card["sha256"] in text
    assert f"Probability of pneumonia: {op.fmt_prob(r.probability)}" in text
    assert f"{r.probability:.8f}" in text
    decision = f"Flag: {m.positive}" if r.flagged else f"{m.negative} (not flagged)"
    assert f"Decision at the operating point: {decision}" in text
    assert f"threshold {card['threshold']:.4f}" in text and "card default" in text
    v = card["validation"]
    # Latin-1 text is set in the core font, where an en dash becomes '-'
    assert op.fmt_pct(v["sensitivity"]) in text and _latin1(op.fmt_ci(tuple(v["sensitivity_ci"]))) in text
    assert _latin1(op.fmt_ci(tuple(v["specificity_ci"]))) in text
    assert f"{card['test']['n']} held-out test images" in text
    assert "not a diagnostic device" in text
    assert "Site profile none" in text
    assert "Grad-CAM" in text


def test_patient_identifiers_only_when_asked(tmp_path):
    case = score([("study.dcm", dicom())])
    assert case.images[0].ok and case.images[0].phi.get("PatientName") == "Doe^Jane"
    default = pdf_text(build_pdf(case), tmp_path)
    assert "Doe" not in default and "MRN-0042" not in default and "Patient ID" not in default
    asked = pdf_text(build_pdf(case, include_patient=True), tmp_path)
    assert "Doe, Jane" in asked and "MRN-0042" in asked


def test_case_of_several_with_a_bad_file_a_withheld_decision_and_warnings(tmp_path):
    case = score([("a.png", png(1)), ("b.dcm", dicom(2)), ("broken.png", b"not an image")], site_profile="Ward 3 portable")
    a, b, bad = case.images
    assert a.ok and b.ok and not bad.ok
    a.withhold("The image looks unlike the validation images.")
    b.warnings.append("This is a test warning about the input.")
    pdf = build_pdf(case)
    text = pdf_text(pdf, tmp_path)
    assert "Case summary: 3 images" in text
    assert "Image 1 of 3: a.png" in text and "Image 3 of 3: broken.png" in text
    assert "No decision: withheld" in text and "unlike the validation images" in text
    assert "test warning about the input" in text
    assert bad.error.split(":", 1)[1].strip()[:30] in text  # the reader is told why the file was not scored
    assert "Site profile Ward 3 portable" in text
    assert images_in(pdf, tmp_path) == 4


def test_a_changed_operating_point_is_reported_as_such(tmp_path):
    case = score([("chest.png", png())], threshold=0.9)
    assert not case.model.threshold_is_default
    text = pdf_text(build_pdf(case), tmp_path)
    assert "threshold 0.9000 (changed by the user)" in text
    assert "do not describe it exactly" in text


def test_meaning_without_validation_results_says_so():
    info = C.model_info(TASK, "secondlook_cnn", card={"threshold": 0.5, "sha256": "0" * 64})
    assert "no validation results" in C.meaning(info)


def test_threshold_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        C.model_info(TASK, "secondlook_cnn", threshold=1.5)


def test_non_latin_text_gets_an_embedded_unicode_font(tmp_path):
    from core.handoff.report import FONT_DIR

    if not (FONT_DIR / "DejaVuSans.ttf").is_file():
        pytest.skip("DejaVu font not installed (fonts-dejavu-core)")
    latin = score([("chest.png", png())])
    assert b"DejaVu" not in build_pdf(latin)  # Latin-1 text: the core font, nothing to embed
    uni = score([("снимок.png", png())])
    pdf = build_pdf(uni)
    assert b"DejaVu" in pdf
    assert "Image: снимок.png" in pdf_text(pdf, tmp_path)


def test_a_one_image_report_with_patient_details_still_fits_one_page(tmp_path):
    case = score([("study.dcm", dicom())])
    assert pages(build_pdf(case, include_patient=True), tmp_path) == 1


def test_a_film_of_another_population_gets_no_decision_in_the_report_or_the_audit(tmp_path):
    """The hand-off carries the input checks' verdict: an adult's DICOM on the (pediatric) pneumonia task is
    withheld in the result, the PDF and the audit row, with the reason (issue #28: every surface, one story)."""
    from pydicom.uid import generate_uid

    from core import audit
    from tests.handoff_support import chest_like, loaded, model_id
    from tests.imagegen import make_dicom

    adult = make_dicom(chest_like(seed=5), extra={"PatientAge": "054Y", "StudyInstanceUID": generate_uid(),
                                                  "SeriesInstanceUID": generate_uid()})
    db = tmp_path / "audit.sqlite"

    model, ood, info = loaded(model_id())
    case = C.score_case(model, info, [("adult.dcm", adult)], ood=ood, surface="handoff", audit_db=db)
    r = case.images[0]
    assert r.ok and r.decision is None and r.flagged is None and "children aged 1–5" in r.withheld
    text = pdf_text(build_pdf(case), tmp_path)
    assert "No decision: withheld" in text and "not given" in text and "54 years" in text
    (row,) = audit.rows(db=db)
    assert row["decision"] is None and row["probability"] is None and "children aged 1–5" in row["withheld_reason"]
