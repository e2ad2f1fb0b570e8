"""The technician's cell review (#29, item 1): the confirmed case result (`core.fields.review.confirmed_case`) and its
words, the PDF and DICOM SR that carry it beside the automatic count, and the review on Predict (AppTest): the queue
shown for a field, a call stored and the next cell shown, a cell marked that was not queued, a call refused when the
model or the review threshold changed, the confirmed result and who confirmed it."""
from __future__ import annotations

import re

import numpy as np
import pytest

from core import confirmations
from core.evaluation.metrics import wilson_ci
from core.fields import records, review
from core.fields.screen import FieldScreen
from core.handoff import case as C
from tests.test_handoff_report import pdf_text

A, B = "a" * 64, "b" * 64
MODEL_SHA, THR = "m" * 64, 0.9


def row(id_: int, sha: str, cell: int, call: str, *, model_sha: str = MODEL_SHA, thr: float = THR,
        email: str = "tech@lab.org") -> dict:
    return {"id": id_, "image_sha256": sha, "cell": cell, "reader_call": call, "model_sha256": model_sha,
            "threshold": thr, "user_email": email, "user_sub": "sub-1"}


QUEUE = [(A, 0), (A, 1), (B, 5)]
COUNTED = {A: 100, B: 150}


# ------------------------------------------------------------------------------------------------ confirmed_case

def test_confirmed_and_marked_cells_over_every_counted_cell_with_a_wilson_interval():
    rows = [row(1, A, 0, "Parasitized"), row(2, A, 1, "Uninfected"), row(3, B, 40, "Parasitized")]
    c = review.confirmed_case(rows, QUEUE, COUNTED, model_sha256=MODEL_SHA, threshold=THR)
    assert (c["n_cells"], c["n_queued"], c["n_reviewed"]) == (250, 3, 2)
    assert (c["n_confirmed"], c["n_rejected"], c["n_marked"], c["n_infected"]) == (1, 1, 1, 2)
    lo, hi = wilson_ci(2, 250)
    assert c["parasitemia"] == pytest.approx(0.8) and c["parasitemia_ci"] == pytest.approx([100 * lo, 100 * hi], abs=1e-4)
    assert c["status"] == review.PARTIAL and not c["complete"]
    assert c["confirmed_by"] == ["tech@lab.org"] and c["per_field"] == {A: 1, B: 1}


def test_the_latest_word_on_a_cell_counts_and_other_versions_are_left_out():
    rows = [row(1, A, 0, "Parasitized"), row(5, A, 0, "Uninfected"),  # changed their mind
            row(2, A, 1, "Parasitized", model_sha="x" * 64),  # another model version: another queue
            row(3, B, 5, "Parasitized", thr=0.5),  # another review threshold
            row(4, "c" * 64, 0, "Parasitized")]  # a field not in this case
    c = review.confirmed_case(rows, QUEUE, COUNTED, model_sha256=MODEL_SHA, threshold=THR)
    assert c["n_infected"] == 0 and c["n_reviewed"] == 1 and c["n_left_out"] == 3


def test_a_local_account_is_named_as_its_user_label():
    local = row(1, A, 0, "Parasitized", email="") | {"user_sub": "local:ana"}
    assert review.confirmed_case([local], QUEUE, COUNTED)["confirmed_by"] == ["ana"]


def test_an_infected_cell_cut_by_the_edge_is_reported_but_not_counted():
    """Queued and confirmed at the field's edge: the case has parasites, but the count (numerator and denominator)
    is the cells wholly inside the fields."""
    queue = QUEUE + [(A, 120)]
    rows = [row(1, A, 0, "Parasitized"), row(2, A, 1, "Uninfected"), row(3, B, 5, "Uninfected"), row(4, A, 120, "Parasitized")]
    c = review.confirmed_case(rows, queue, COUNTED, model_sha256=MODEL_SHA, threshold=THR, edge=[(A, 120)])
    assert (c["n_infected"], c["n_edge_infected"], c["n_confirmed"], c["n_rejected"], c["n_reviewed"]) == (1, 1, 1, 2, 4)
    assert c["n_cells"] == 250 and c["parasitemia"] == pytest.approx(0.4) and c["per_field"] == {A: 1, B: 0}
    lines = review.case_lines(c)
    assert lines[0].endswith("confirmed by tech@lab.org. Also 1 infected cell cut by the field's edge: seen, not counted.")
    assert lines[1] == "All 4 queued cells reviewed (1 confirmed infected, 1 infected at the edge, 2 not infected)."
    plain = review.confirmed_case(rows, queue, COUNTED, model_sha256=MODEL_SHA, threshold=THR)
    assert plain["n_infected"] == 2 and plain["n_edge_infected"] == 0  # without edge flags every cell counts


def test_the_words_say_who_confirmed_how_far_the_review_got_and_label_the_automatic_count():
    auto = {"n_cells": 250, "n_infected": 3, "parasitemia": 1.2, "parasitemia_ci": [0.41, 3.47], "threshold": 0.95}
    none = review.case_lines(review.confirmed_case([], QUEUE, COUNTED), auto)
    assert none[0] == "Not yet reviewed: 0 of 3 queued cells reviewed, so there is no confirmed result."
    assert none[1].startswith("Automatic (unconfirmed): 3 infected of 250 red cells, parasitemia 1.20%")
    rows = [row(1, A, 0, "Parasitized"), row(2, A, 1, "Uninfected"), row(3, B, 5, "Parasitized")]
    done = review.case_lines(review.confirmed_case(rows, QUEUE, COUNTED), auto)
    assert done[0].startswith("Confirmed: 2 infected of 250 red cells, parasitemia 0.80% (95% interval ")
    assert done[0].endswith("proposed by SecondLook, confirmed by tech@lab.org.")
    assert done[1] == "All 3 queued cells reviewed (2 confirmed infected, 1 not infected)."
    part = review.case_lines(review.confirmed_case(rows[:1], QUEUE, COUNTED))
    assert part[1].startswith("Not fully reviewed: 1 of 3 queued cells reviewed") and len(part) == 2
    empty = review.case_lines(review.confirmed_case([], [], COUNTED))
    assert empty == ["No cell of this case reached the review queue and none was marked infected: there is no "
                     "confirmed result."]


def test_the_case_queue_runs_across_fields_most_suspicious_first():
    f1 = FieldScreen("1", 640, 480, np.zeros((3, 4), np.int64), np.array([0.95, 0.2, 0.91]))
    f2 = FieldScreen("2", 640, 480, np.zeros((2, 4), np.int64), np.array([0.99, 0.93]))
    blank = FieldScreen("3", 640, 480, np.zeros((0, 4), np.int64), np.zeros(0))
    assert review.case_queue([f1, blank, f2], 0.9) == [(2, 0, 0.99), (0, 0, 0.95), (2, 1, 0.93), (0, 2, 0.91)]
    assert review.case_queue([f1], None) == []


# ------------------------------------------------------------------------------------------------ PDF and SR

def _field_case(rows: list[dict], label: str = "Slide 7 Jones") -> C.Case:
    """Two synthetic fields (pictures made in code) of the bundled field model's case."""
    from core.inference import scoring

    rng = np.random.default_rng(0)
    screens, pics = [], []
    for k, n in enumerate((100, 150)):
        p = rng.beta(0.3, 3, n) * 0.8
        p[:2] = [0.99, 0.95] if k == 0 else [0.2, 0.3]
        if k == 1:
            p[5] = 0.97
        boxes = np.c_[rng.integers(0, 600, n), rng.integers(0, 440, n), np.full(n, 30), np.full(n, 30)]
        screens.append(FieldScreen(f"field_{k + 1}.jpg", 640, 480, boxes, p))
        pics.append(scoring.jpeg_bytes(np.full((480, 640, 3), 200 + 20 * k, np.uint8)))
    model_id = records.field_model()
    info = C.model_info("malaria", model_id, threshold=0.96)
    fc = C.field_case(screens, [A, B], rows, case_id="C-1A2B3C", model_id=model_id, model_sha256=MODEL_SHA,
                      field_threshold=0.96, field_rule="field rule", review_threshold=THR, review_rule="review rule",
                      pictures=pics, label=label)
    return C.Case(info, [], fields=fc, produced_by="tech@lab.org (technician)")


def test_the_pdf_states_the_confirmed_result_beside_the_automatic_count_and_who_produced_it(tmp_path):
    from core.handoff.report import build_pdf

    case = _field_case([row(1, A, 0, "Parasitized"), row(2, A, 1, "Uninfected"), row(3, B, 5, "Parasitized")])
    assert case.fields.confirmed["complete"]
    text = pdf_text(build_pdf(case), tmp_path)
    assert "Produced by tech@lab.org (technician)" in text
    assert "Whole smear fields: case C-1A2B3C" in text and "Jones" not in text  # the slide label may name a patient
    assert "Confirmed: 2 infected of 250 red cells, parasitemia 0.80%" in text
    assert "proposed by SecondLook, confirmed by tech@lab.org" in text
    assert "Automatic (unconfirmed): 2 infected of 250 red cells" in text
    assert "cells of one field are not" in text and "review queue from 0.9000" in text
    assert "Slide 7 Jones" in pdf_text(build_pdf(case, include_patient=True), tmp_path)
    waiting = pdf_text(build_pdf(_field_case([])), tmp_path)
    assert "Not yet reviewed: 0 of 3 queued cells reviewed" in waiting and "confirmed by" not in waiting


def test_an_image_report_names_who_produced_it(tmp_path):
    from core.handoff.report import build_pdf

    info = C.model_info("malaria", "secondlook_cnn")
    text = pdf_text(build_pdf(C.Case(info, [], produced_by="ana (clinician)")), tmp_path)
    assert "Produced by ana (clinician)" in text
    assert "Produced by" not in pdf_text(build_pdf(C.Case(info, [])), tmp_path)


def test_a_one_image_report_with_patient_details_and_who_produced_it_still_fits_one_page(tmp_path):
    from core.handoff.report import build_pdf
    from tests.handoff_support import dicom, score
    from tests.test_handoff_report import pages

    case = score([("study.dcm", dicom())])
    case.produced_by = "someone.with.a.long.address@hospital.example.org (clinician)"
    pdf = build_pdf(case, include_patient=True)
    assert pages(pdf, tmp_path) == 1 and f"Produced by {case.produced_by}" in pdf_text(pdf, tmp_path)


def test_the_sr_carries_the_confirmed_result_and_validates(tmp_path):
    import io

    import pydicom

    from core.handoff import dicom_out
    from tests.handoff_support import dciodvfy

    case = _field_case([row(1, A, 0, "Parasitized"), row(3, B, 40, "Parasitized")])
    [res] = dicom_out.build_case(case)
    assert [ds.Modality for ds in res.datasets] == ["OT", "OT", "SR"]
    for name, data in res.files():
        (tmp_path / name).write_bytes(data)
        assert dciodvfy(tmp_path / name)[0] == [], name
    sr = pydicom.dcmread(io.BytesIO(dicom_out.to_bytes(res.sr)))
    assert len({sc.StudyInstanceUID for sc in res.scs} | {sr.StudyInstanceUID}) == 1
    items = list(_walk(sr.ContentSequence))
    num = {it.ConceptNameCodeSequence[0].CodeMeaning: float(it.MeasuredValueSequence[0].NumericValue)
           for it in items if it.get("ValueType") == "NUM"}
    assert num["Confirmed parasitemia"] == pytest.approx(0.8) and num["Queued cells reviewed"] == 1
    assert num["Parasitemia, automatic (unconfirmed)"] == pytest.approx(0.8)
    assert any(it.get("ValueType") == "CODE" and it.ConceptCodeSequence[0].CodeMeaning == "Present" for it in items)
    text = "\n".join(str(it.TextValue) for it in items if it.get("ValueType") == "TEXT")
    assert "proposed by SecondLook, confirmed by tech@lab.org" in text and "Not fully reviewed: 1 of 3" in text
    assert "Produced by tech@lab.org (technician)" in text and "Jones" not in str(sr)
    [waiting] = dicom_out.build_case(_field_case([]))
    codes = [it.ConceptCodeSequence[0].CodeMeaning for it in _walk(waiting.sr.ContentSequence) if it.get("ValueType") == "CODE"]
    assert "Undetermined" in codes


def _walk(items):
    for it in items:
        yield it
        yield from _walk(it.get("ContentSequence", []))


# ------------------------------------------------------------------------------------------------ the app

@pytest.fixture
def stores(monkeypatch, tmp_path):
    """Confirmations and the audit log in temporary files."""
    monkeypatch.setenv("SECONDLOOK_CONFIRMATIONS", str(tmp_path / "confirmations.sqlite"))
    monkeypatch.setenv("SECONDLOOK_AUDIT", str(tmp_path / "audit.sqlite"))
    return tmp_path / "confirmations.sqlite"


def _field():
    """A training field (not the test session) with infected cells: the one the browser tests use."""
    from core.fields.cuts import read_fields
    from tests.conftest import require_dataset

    require_dataset("malaria_fields")
    fields, _ = read_fields()
    return fields[(fields["split"] == "train") & (fields["n_infected"] >= 2)].sort_values("path")["file"].iloc[0]


def _open(stores):
    """Predict (clinical mode) with the field uploaded; (AppTest, the field's bytes)."""
    from pathlib import Path

    from core.models import store
    from tests.app_support import need, start

    need(bool(store.bundled_models("malaria")), "the malaria models must be bundled")
    path = Path(_field())
    data = path.read_bytes()
    at = start(page="screen", research=False)
    at.file_uploader(key="screen_files_0").set_value([(path.name, data, "image/jpeg")]).run()
    assert not at.exception, [e.message for e in at.exception]
    return at, data


def _case_threshold(path: str) -> float | None:
    """The review threshold of a case made of this one field under the field model's recorded rule."""
    from core.fields.screen import screen_field
    from core.io.images import read_image
    from core.models.store import load_model
    from core.registry import get_model_spec

    fm = records.field_model()
    s = screen_field(read_image(path), load_model("malaria", fm), get_model_spec("malaria", fm), "f")
    return review.review_threshold(fm, [s])[0]


def _label(at) -> tuple[int, int] | None:
    got = [m for t in (x.value for x in at.markdown) if (m := re.search(r"Cell (\d+) of (\d+) in the queue", t))]
    return (int(got[0].group(1)), int(got[0].group(2))) if got else None


def _press(at, action: str):
    [b] = [b for b in at.button if (b.key or "").startswith(f"cr_{action}_")]
    b.click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _case_id(at) -> str:
    return next(m.group(1) for x in at.markdown if (m := re.search(r"case \*\*(C-[0-9A-F]{6})\*\*", x.value)))


def test_a_field_shows_its_queue_one_cell_at_a_time_with_one_key_per_call(stores):
    at, _ = _open(stores)
    first, n = _label(at)
    assert first == 1 and n >= 2
    shortcuts = {b.label: b.proto.shortcut.upper() for b in at.button if (b.key or "").startswith("cr_")}
    assert shortcuts["Confirm infected"] == "I" and shortcuts["Not infected"] == "N"
    assert shortcuts["Back"] == "B" and shortcuts["Skip"] == "S"
    assert dict((m.label, m.value) for m in at.metric)["Confirmed result"] == "not yet reviewed"
    assert any(t.startswith(f"Not yet reviewed: 0 of {n} queued cells") for t in (x.value for x in at.markdown))
    assert any(c.value.startswith("Automatic (unconfirmed):") for c in at.caption)


def test_a_call_is_kept_with_the_fields_hash_and_the_next_cell_follows(stores):
    import hashlib

    at, data = _open(stores)
    _, n = _label(at)
    cid = _case_id(at)
    assert _label(_press(at, "confirm")) == (2, n)
    [r] = confirmations.rows(db=stores)
    assert (r["kind"], r["case_id"], r["image_sha256"]) == ("cell", cid, hashlib.sha256(data).hexdigest())
    assert (r["decision"], r["reader_call"], r["agree"]) == ("Parasitized", "Parasitized", 1)
    assert r["threshold"] == pytest.approx(_case_threshold(_field())) and r["probability"] >= r["threshold"]
    _press(at, "reject")
    rows = confirmations.rows(db=stores)
    assert [x["reader_call"] for x in rows] == ["Parasitized", "Uninfected"] and rows[1]["agree"] == 0
    assert rows[0]["cell"] != rows[1]["cell"]


def test_the_confirmed_result_says_who_confirmed_it_beside_the_automatic_count(stores):
    from ui import access

    at, _ = _open(stores)
    _, n = _label(at)
    for _ in range(n):
        _press(at, "confirm")
    assert _label(at) is None and any(f"All {n} queued cells reviewed" in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    cells = int(metrics["Red cells counted"].replace(",", ""))
    assert metrics["Confirmed result"] == f"{100 * n / cells:.2f}%"
    assert metrics["Automatic result (unconfirmed)"].endswith("%")
    who = access.current_user().label
    assert any(t.startswith(f"Confirmed: {n} infected of {cells} red cells") and
               t.endswith(f"proposed by SecondLook, confirmed by {who}.") for t in (x.value for x in at.markdown))
    _press(at, "end_back")  # Back from the end of the queue: the last cell again
    assert _label(at) == (n, n)
    # the audit carries it too: the field's automatic count as a scoring, the confirmed result as an event
    from core import audit

    db = stores.parent / "audit.sqlite"
    [row] = audit.rows(db=db)
    assert row["decision"].endswith(f"infected of {cells} red cells (automatic)") and row["user_sub"]
    events = audit.events(kind="case_confirmed", db=db)
    assert events and f"Confirmed: {n} infected of {cells} red cells" in events[0]["detail"]


def test_an_outlined_cell_that_was_not_queued_can_be_marked_infected(stores):
    at, _ = _open(stores)
    note = next(c.value for c in at.caption if c.value.startswith("Cell 1:"))
    assert "not queued" in note
    [mark] = [b for b in at.button if b.label == "Mark infected"]
    mark.click().run()
    [r] = confirmations.rows(db=stores)
    assert (r["cell"], r["decision"], r["reader_call"], r["agree"]) == (0, confirmations.NOT_PROPOSED, "Parasitized", 0)
    assert any("Marked infected: field 1 cell 1" in c.value for c in at.caption)
    assert [b for b in at.button if b.label == "Take the mark back"]


@pytest.mark.parametrize("change", ["threshold", "model"])
def test_a_call_on_a_cell_shown_under_another_model_or_threshold_is_refused(stores, monkeypatch, change):
    import ui.cell_review

    at, _ = _open(stores)
    thr = _case_threshold(_field())
    if change == "threshold":  # the review record was made again while the cell was on screen
        monkeypatch.setattr(review, "review_threshold", lambda model_id, screens, rec=None: (0.85, "note"))
    else:  # another model file is in force now
        monkeypatch.setattr(ui.cell_review, "current_model_sha", lambda task, model_id: "f" * 64)
    _press(at, "confirm")
    assert confirmations.rows(db=stores) == []
    [w] = [w.value for w in at.warning if w.value.startswith("Not kept:")]
    assert (f"threshold {thr:.4f}" in w and "now 0.8500" in w) if change == "threshold" else "another version" in w
    assert _label(at)[0] == 1  # the same cell, shown again under what is in force


def test_a_role_that_may_not_confirm_sees_no_live_buttons_and_a_crafted_call_is_refused(stores, monkeypatch):
    """The buttons are off for a role without "confirm", and a press made up in the session state meets the same
    refusal on the server: nothing is kept."""
    from core import users
    from core.models import store
    from ui import access
    from ui.cell_review import PENDING, STATE, Press

    at, _ = _open(stores)
    cid = _case_id(at)
    sha, cell = at.session_state[STATE][cid]["shown"]
    monkeypatch.setitem(users.ALLOWED, "confirm", frozenset({"clinician"}))  # a technician who may screen, not confirm
    monkeypatch.setattr(access, "current_user", lambda: users.User(sub="t", email="tech@lab.org", roles=("technician",)))
    at.run()
    assert all(b.disabled for b in at.button if b.label in ("Confirm infected", "Not infected", "Mark infected"))
    fm = records.field_model()
    model_sha = store.read_card("malaria", fm)["sha256"]
    press = Press("confirm", sha, cell, 0.99, _case_threshold(_field()), model_sha, True, (sha, cell))
    at.session_state[PENDING] = {cid: press}
    at.run()
    assert any("Not allowed" in e.value and "may not confirm" in e.value for e in at.error)
    assert confirmations.rows(db=stores) == []


def test_a_queued_cell_cut_by_the_edge_says_it_is_not_counted_and_its_confirmation_does_not_count(stores):
    """A training field whose queue holds a cell cut by the picture's edge: shown with its note; confirmed infected,
    the case reports it as seen at the edge and leaves it out of the count."""
    from pathlib import Path

    from core.fields.cuts import read_fields
    from core.fields.screen import screen_field
    from core.io.images import read_image
    from core.models.store import load_model
    from core.registry import get_model_spec
    from tests.app_support import start
    from tests.conftest import require_dataset

    require_dataset("malaria_fields")
    fm = records.field_model()
    model, spec = load_model("malaria", fm), get_model_spec("malaria", fm)
    fields, _ = read_fields()
    for path in fields[(fields["split"] == "train") & (fields["n_infected"] >= 2)].sort_values("path")["file"]:
        s = screen_field(read_image(path), model, spec, "f")
        thr, _ = review.review_threshold(fm, [s])  # the case of this one field
        queue = review.review_queue(s.probabilities, thr).tolist()
        edge = [k for k, i in enumerate(queue) if not s.in_count[i]]
        if edge:
            break
    else:
        pytest.fail("no training field queues a cell cut by the edge")
    data = Path(path).read_bytes()
    at = start(page="screen", research=False)
    at.file_uploader(key="screen_files_0").set_value([(Path(path).name, data, "image/jpeg")]).run()
    for _ in range(edge[0]):
        _press(at, "skip")
    assert _label(at) == (edge[0] + 1, len(queue))
    assert any("Cut by the picture's edge" in c.value for c in at.caption)
    _press(at, "confirm")
    [r] = confirmations.rows(db=stores)
    assert r["cell"] == queue[edge[0]] and r["reader_call"] == "Parasitized"
    text = " ".join(x.value for x in at.markdown)
    assert "Also 1 infected cell cut by the field's edge: seen, not counted." in text
    assert dict((m.label, m.value) for m in at.metric)["Confirmed result"] != "not yet reviewed"
