"""AppTest: hand-off on Predict (audit rows, PDF report, Send to PACS only with a PACS), the Audit log page and the
PACS page against a real Orthanc."""
from __future__ import annotations

import io

import pydicom
import pytest

from core import audit
from tests.app_support import start
from tests.handoff_support import TASK, dicom, model_id, png
from tests.pacs_support import TEST_AET, free_port, make_study, orthanc_server


@pytest.fixture
def audit_db(tmp_path, monkeypatch):
    path = tmp_path / "app_audit.sqlite"
    monkeypatch.setenv("SECONDLOOK_AUDIT", str(path))
    yield path
    audit.close_all()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    with orthanc_server(tmp_path_factory.mktemp("orthanc_app")) as server:
        yield server


def _labels(at, kind: str) -> list[str]:
    return [el.proto.label for el in at.get(kind)]


def _upload(at, name: str, data: bytes, mime: str = "image/png"):
    at.file_uploader(key="predict_files").set_value((name, data, mime)).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_predict_offers_the_pdf_and_records_one_audit_row_per_decision(audit_db, monkeypatch):
    monkeypatch.delenv("SECONDLOOK_PACS", raising=False)
    at = start(TASK, model_id(), page="predict")
    _upload(at, "chest.dcm", dicom(11), "application/dicom")  # a 4-year-old's film: the pneumonia population
    assert "Download PDF report" in _labels(at, "download_button")
    assert "Send to PACS" not in [b.label for b in at.button]  # no PACS configured: hidden
    rows = audit.rows(db=audit_db)
    assert len(rows) == 1 and rows[0]["surface"] == "app" and rows[0]["model_id"] == model_id()
    at.run()  # a rerun shows the same decision: no new row
    assert audit.count(db=audit_db) == 1
    at.sidebar.radio(key="op_mode").set_value("By threshold").run()
    at.sidebar.slider(key="op_thr").set_value(0.0).run()  # a new operating point is a new decision
    rows = audit.rows(db=audit_db)
    assert len(rows) == 2 and rows[0]["threshold"] == 0.0 and rows[0]["decision"] == "PNEUMONIA"


def test_pdf_of_the_current_result_is_what_the_page_shows(audit_db, tmp_path):
    """The download's callable is deferred (run on click, outside AppTest); the helper behind it gives a report
    with the probability the page shows, and no patient identifiers unless the box is ticked."""
    import re
    import subprocess

    from core.inference import scoring
    from core.models import store
    from core.registry import get_task
    from tests.app_support import exact_probabilities
    from tests.handoff_support import need_tool
    from ui import handoff

    data = dicom(12)
    at = start(TASK, model_id(), page="predict")
    _upload(at, "study.dcm", data, "application/dicom")
    shown = exact_probabilities(at)[0]
    assert at.checkbox(key="predict_pdf_patient").value is False
    ctx = at.session_state["_ctx"]
    model = store.load_model(TASK, model_id())
    s = scoring.score_bytes(model, get_task(TASK).model(model_id()), data, "study.dcm",
                            calibration=store.read_card(TASK, model_id()).get("calibration"))  # as the page scores
    results = [{"name": "study.dcm", "scored": s, "truth": None, "data": data}]
    exe = need_tool("pdftotext", "poppler-utils")
    for include, name_shown in ((False, False), (True, True)):
        (tmp_path / "r.pdf").write_bytes(handoff.pdf_bytes(ctx, results, include_patient=include))
        text = re.sub(r"\s+", " ", subprocess.run([exe, str(tmp_path / "r.pdf"), "-"], capture_output=True,
                                                  text=True, check=True).stdout)
        assert f"{shown:.8f}" in text
        assert ("Doe, Jane" in text) is name_shown


def test_audit_page_lists_and_filters(audit_db):
    for i, surface in enumerate(("app", "cli", "cli")):
        audit.record(image_sha256=f"{i:064x}", task=TASK, model_id=model_id(), model_sha256=None, threshold=0.5,
                     probability=0.1 * (i + 1), decision="NORMAL", surface=surface, db=audit_db)
    at = start(TASK, page="audit")
    assert at.title[0].value == "Audit log"
    assert len(at.dataframe[0].value) == 3
    assert at.download_button(key="audit_csv") is not None
    at.selectbox(key="audit_surface").select("cli").run()
    assert len(at.dataframe[0].value) == 2
    at.text_input(key="audit_sha").input(f"{1:064x}").run()
    assert list(at.dataframe[0].value["image_sha256"]) == [f"{1:064x}"]
    at.text_input(key="audit_sha").input(f"{0:064x}").run()  # that image was scored in the app, not the CLI
    assert not at.dataframe and any("No scoring matches" in i.value for i in at.info)


def test_with_a_pacs_predict_sends_sc_and_sr(orthanc, audit_db, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_PACS", orthanc.node)
    monkeypatch.setenv("SECONDLOOK_AET", TEST_AET)
    files = make_study(1, seed=21)
    src = pydicom.dcmread(io.BytesIO(files[0]))
    at = start(TASK, model_id(), page="predict")
    _upload(at, "study.dcm", files[0], "application/dicom")
    before = len(orthanc.rest("/instances"))
    at.button(key="predict_send").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Sent 2 object(s)" in s.value for s in at.success), [e.value for e in at.error]
    assert len(orthanc.rest("/instances")) == before + 2
    study = orthanc.rest("/tools/lookup", data=src.StudyInstanceUID.encode(), method="POST")[0]["ID"]
    assert len(orthanc.rest(f"/studies/{study}/series")) == 2  # SC + SR series, filed in the uploaded study


def test_with_the_pacs_down_send_shows_one_error_and_the_page_keeps_working(audit_db, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_PACS", f"ORTHANC@127.0.0.1:{free_port()}")
    monkeypatch.setenv("SECONDLOOK_PACS_TIMEOUT", "2")
    at = start(TASK, model_id(), page="predict")
    _upload(at, "chest.png", png(13))
    at.button(key="predict_send").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("not reachable" in e.value for e in at.error)
    assert at.metric  # the result is still shown


def test_pacs_page_lists_fetches_and_scores_a_study(orthanc, audit_db, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_PACS", orthanc.node)
    monkeypatch.setenv("SECONDLOOK_AET", TEST_AET)
    files = make_study(2, seed=31, patient_id="APP-PACS-1")
    for f in files:
        orthanc.upload(f)
    uid = pydicom.dcmread(io.BytesIO(files[0])).StudyInstanceUID
    at = start(TASK, model_id(), page="pacs")
    assert at.title[0].value == "PACS"
    listed = at.dataframe[0].value
    assert "Patient" not in listed.columns and "Patient ID" not in listed.columns  # identifiers only on request
    at.toggle(key="pacs_show_phi").set_value(True).run()
    assert "APP-PACS-1" in set(at.dataframe[0].value["Patient ID"])
    at.selectbox(key="pacs_pick").select(uid).run()
    at.button(key="pacs_fetch").click().run()
    assert not at.exception, [e.message for e in at.exception]
    results = at.dataframe[1].value  # [0] is the study list; one row per image and chest task (routed)
    assert len(results) == 4 and set(results["Task"]) == {"Pneumonia", "Pleural effusion"}
    child = results[results["Task"] == "Pneumonia"]  # the study's patient is 4 years old (DICOM birth date)
    assert child["probability"].between(0, 1).all() and not child["Decision"].str.startswith("Not").any()
    adult = results[results["Task"] == "Pleural effusion"]
    assert adult["probability"].isna().all() and (adult["Decision"] == "Not assessed").all()
    assert adult["Why not assessed"].str.contains("trained on adults").all()
    assert "Download PDF report" in _labels(at, "download_button")
    assert audit.count(db=audit_db) == 4  # each image's answer and withheld answer


def test_a_malformed_pacs_setting_is_explained_and_the_page_keeps_working(audit_db, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_PACS", "orthanc.example:4242")
    at = start(TASK, model_id(), page="predict")
    _upload(at, "chest.png", png(14))
    assert "Send to PACS" not in [b.label for b in at.button]
    assert any("PACS features are off" in c.value and "AET@host:port" in c.value for c in at.caption)
    assert "Download PDF report" in _labels(at, "download_button")
