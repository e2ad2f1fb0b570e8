"""Against a real Orthanc: store a study made in code, find and fetch it through SecondLook, score it, send SC + SR
back and read them out of Orthanc again. Plus the PACS-down, refused and timeout paths (one PacsError, no hang)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pydicom
import pytest

from core import audit
from core.config import REPO_ROOT
from core.handoff import case as C
from core.handoff import dicom_out
from core.handoff.pacs import Node, Pacs, PacsError, configured, dataset_bytes, is_scorable, parse_node
from tests.handoff_support import TASK, loaded, model_id
from tests.pacs_support import TEST_AET, free_port, make_study, orthanc_server, silent_server


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture
def study(orthanc):
    """A two-image DX study uploaded through Orthanc's REST API (not through the code under test)."""
    files = make_study(2, seed=int(time.time() * 1000) % 10_000)
    for f in files:
        orthanc.upload(f)
    return pydicom.dcmread(io.BytesIO(files[0])), files


def pacs(orthanc, **kw) -> Pacs:
    return Pacs(orthanc.node, aet=TEST_AET, timeout=kw.pop("timeout", 10), **kw)


def test_node_parsing_and_configuration(monkeypatch):
    assert parse_node("ORTHANC@127.0.0.1:4242") == Node("ORTHANC", "127.0.0.1", 4242)
    for bad in ("ORTHANC@127.0.0.1", "127.0.0.1:4242", "A@h:0", "A@h:70000", "WAY_TOO_LONG_AE_TITLE@h:1"):
        with pytest.raises(ValueError, match="AET@host:port"):
            parse_node(bad)
    monkeypatch.delenv("SECONDLOOK_PACS", raising=False)
    assert configured() is None
    with pytest.raises(PacsError, match="No PACS is configured"):
        Pacs()
    monkeypatch.setenv("SECONDLOOK_PACS", "PACS1@localhost:11112")
    assert configured() == Node("PACS1", "localhost", 11112)


def test_echo(orthanc):
    pacs(orthanc).echo()


def test_round_trip_find_fetch_score_send_and_read_back(orthanc, study):
    first, files = study
    p = pacs(orthanc)
    found = p.find_studies(patient_id=first.PatientID)
    mine = [s for s in found if s["StudyInstanceUID"] == first.StudyInstanceUID]
    assert len(mine) == 1 and mine[0]["NumberOfStudyRelatedInstances"] == "2" and mine[0]["ModalitiesInStudy"] == "DX"

    got = p.fetch_study(first.StudyInstanceUID)
    assert sorted(ds.SOPInstanceUID for ds in got) == sorted(pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID for f in files)
    assert all(is_scorable(ds) for ds in got)

    model, ood, info = loaded(model_id())
    case = C.score_case(model, info, [(ds.SOPInstanceUID, dataset_bytes(ds)) for ds in got], ood=ood, surface=None)
    assert all(r.ok for r in case.images)
    # the fetched pixels score exactly like the uploaded files
    direct = C.score_case(model, info, [("f", f) for f in files], ood=ood, surface=None)
    by_uid = {pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID: r.probability for f, r in zip(files, direct.images)}
    for r in case.images:
        assert r.probability == pytest.approx(by_uid[r.name], abs=1e-7)

    results = dicom_out.build_case(case, include_patient=True)
    sent = p.store([ds for res in results for ds in res.datasets])
    assert len(sent) == 4

    # read them out of Orthanc again (REST): same study, two new series per image, content intact
    study_id = orthanc.rest("/tools/lookup", data=first.StudyInstanceUID.encode(), method="POST")[0]["ID"]
    series = orthanc.rest(f"/studies/{study_id}/series")
    assert len(series) == 1 + 2 * len(results)
    for res, r in zip(results, case.images):
        sr_id = orthanc.rest("/tools/lookup", data=res.sr.SOPInstanceUID.encode(), method="POST")[0]["ID"]
        sr = pydicom.dcmread(io.BytesIO(orthanc.rest(f"/instances/{sr_id}/file")))
        assert sr.StudyInstanceUID == first.StudyInstanceUID and sr.PatientID == first.PatientID
        values = {it.ConceptNameCodeSequence[0].CodeMeaning: it for it in _walk(sr.ContentSequence)
                  if it.get("ConceptNameCodeSequence")}
        assert float(values["Model probability of pneumonia"].MeasuredValueSequence[0].NumericValue) == \
            pytest.approx(r.probability, abs=1e-6)
        assert values["Pneumonia"].ConceptCodeSequence[0].CodeMeaning == ("Present" if r.flagged else "Absent")
        assert values["Algorithm Version"].TextValue == info.sha256
        sc_id = orthanc.rest("/tools/lookup", data=res.sc.SOPInstanceUID.encode(), method="POST")[0]["ID"]
        tags = orthanc.rest(f"/instances/{sc_id}/simplified-tags")
        assert "not for diagnosis" in tags["SeriesDescription"].lower()
        assert tags["StudyInstanceUID"] == first.StudyInstanceUID

    # a second fetch brings our results too, and they are not scored again
    again = p.fetch_study(first.StudyInstanceUID)
    assert len(again) == 2 + 2 * len(results)
    assert sum(is_scorable(ds) for ds in again) == 2


def _walk(items):
    for it in items:
        yield it
        yield from _walk(it.get("ContentSequence", []))


def test_fetch_of_an_unknown_study_is_a_clear_error(orthanc):
    with pytest.raises(PacsError, match=r"C-GET of study 1.2.3.4.5.6.7.8.9: the PACS answered with status 0xC000 \(unable"):
        pacs(orthanc).fetch_study("1.2.3.4.5.6.7.8.9")
    with pytest.raises(ValueError, match="not a Study Instance UID"):
        pacs(orthanc).fetch_study("1.2; DROP")


def test_refused_association_is_one_clear_error(orthanc):
    p = Pacs(f"NOTORTHANC@127.0.0.1:{orthanc.dicom_port}", aet=TEST_AET, timeout=5)
    with pytest.raises(PacsError, match="refused the association"):
        p.echo()
    with pytest.raises(PacsError, match="refused the association"):
        p.find_studies()


def test_pacs_down_is_one_clear_error_and_quick():
    p = Pacs(f"ORTHANC@127.0.0.1:{free_port()}", aet=TEST_AET, timeout=5)
    t0 = time.monotonic()
    with pytest.raises(PacsError, match="not reachable"):
        p.echo()
    assert time.monotonic() - t0 < 5  # connection refused is immediate: nothing waits for the timeout


def test_pacs_that_hangs_up_during_association_is_asked_twice_then_named():
    accepted: list = []
    with silent_server(drop=True, accepted=accepted) as port:
        p = Pacs(f"ORTHANC@127.0.0.1:{port}", aet=TEST_AET, timeout=5)
        t0 = time.monotonic()
        with pytest.raises(PacsError, match="closed the connection .* without accepting the association, twice"):
            p.echo()
        assert time.monotonic() - t0 < 5  # no wait for the timeout
    assert len(accepted) == 3  # two associations, then the reachability probe behind the message


def test_pacs_that_never_answers_times_out_once():
    with silent_server() as port:
        p = Pacs(f"ORTHANC@127.0.0.1:{port}", aet=TEST_AET, timeout=1.5)
        for call in (p.echo, p.find_studies):
            t0 = time.monotonic()
            with pytest.raises(PacsError, match=r"did not answer within 1.5 s"):
                call()
            assert time.monotonic() - t0 < 15  # bounded: one association attempt, no retry loop


def test_cli_scores_writes_pdf_and_dicom_and_sends(orthanc, study, tmp_path):
    first, files = study
    src = tmp_path / "input.dcm"
    src.write_bytes(files[0])
    log = tmp_path / "audit.sqlite"
    env = {**os.environ, "SECONDLOOK_PACS": orthanc.node, "SECONDLOOK_AET": TEST_AET, "SECONDLOOK_AUDIT": str(log),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = tmp_path / "dicom"
    r = subprocess.run([sys.executable, "-m", "core.handoff", "--task", TASK, "--model", model_id(), str(src),
                        "--pdf", str(tmp_path / "r.pdf"), "--dicom-dir", str(out), "--send"],
                       cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert row["ok"] and 0 <= row["probability"] <= 1
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    written = sorted(out.iterdir())
    assert len(written) == 2
    for f in written:  # what was written is what Orthanc now holds
        uid = pydicom.dcmread(f).SOPInstanceUID
        assert orthanc.rest("/tools/lookup", data=uid.encode(), method="POST")
    rows = audit.rows(db=log)
    assert len(rows) == 1 and rows[0]["surface"] == "handoff" and rows[0]["probability"] == pytest.approx(row["probability"])
    audit.close_all()


def test_cli_with_pacs_down_exits_3_with_a_message(tmp_path):
    from tests.handoff_support import png

    img = tmp_path / "x.png"
    img.write_bytes(png())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "SECONDLOOK_AUDIT": str(tmp_path / "a.sqlite")}
    r = subprocess.run([sys.executable, "-m", "core.handoff", "--task", TASK, str(img), "--send",
                        "--pacs", f"ORTHANC@127.0.0.1:{free_port()}"],
                       cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 3
    assert "not reachable" in r.stderr and "Traceback" not in r.stderr
