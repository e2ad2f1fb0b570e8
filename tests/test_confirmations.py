"""Readers' confirmations (core.confirmations): rows as written, the refusals (another model file, another operating
point, an unknown call, a role that may not confirm, a bad checksum), the latest word and agreement, site labels of
one model file only, and no row lost to several processes writing at once."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import sqlite3

import pytest

from core import confirmations as C
from core import sqlwal, users

MODEL = hashlib.sha256(b"model v1").hexdigest()
CLINICIAN = users.User(sub="oidc|ann", email="ann@example.org", name="Ann", roles=("clinician",), source="token")


def sha(i: int | str) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def db(tmp_path):
    yield tmp_path / "confirmations.sqlite"
    sqlwal.close_all()


def scored(i: int | str = 0, *, p: float | None = 0.8, decision: str | None = "PNEUMONIA", model_sha: str = MODEL,
           threshold: float = 0.5, task: str = "pneumonia", site: str | None = None) -> C.Scored:
    return C.Scored(sha(i), task, "secondlook_cnn", model_sha, threshold, p, decision, site)


def keep(s: C.Scored, call: str, db, user: users.User = CLINICIAN, **kw) -> int:
    """Record as the page does: the model file and operating point in force are the shown ones unless given."""
    kw.setdefault("current_model_sha256", s.model_sha256)
    kw.setdefault("current_threshold", s.threshold)
    return C.record(s, reader_call=call, user=user, db=db, **kw)


def test_record_keeps_every_field_and_no_pixels(db):
    rid = keep(scored(1, site="ward-3"), "NORMAL", db, note="old scar, no consolidation")
    [row] = C.rows(db=db)
    assert row["id"] == rid and row["kind"] == "image" and row["image_sha256"] == sha(1)
    assert (row["task"], row["model_id"], row["model_sha256"]) == ("pneumonia", "secondlook_cnn", MODEL)
    assert row["threshold"] == 0.5 and row["probability"] == 0.8 and row["decision"] == "PNEUMONIA"
    assert row["reader_call"] == "NORMAL" and row["agree"] == 0 and row["note"] == "old scar, no consolidation"
    assert row["site_profile"] == "ward-3" and row["created_at"].endswith("+00:00")
    assert (row["user_sub"], row["user_email"], row["user_role"]) == ("oidc|ann", "ann@example.org", "clinician")
    cols = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(confirmations)")]
    assert cols == C.COLUMNS  # hashes and words only: no file name, no pixels


def test_withheld_result_keeps_the_call_without_agreement(db):
    keep(scored(2, p=None, decision=None), "PNEUMONIA", db)
    [row] = C.rows(db=db)
    assert row["agree"] is None and row["decision"] is None and row["probability"] is None


def test_another_model_file_is_refused(db):
    with pytest.raises(C.Refused, match="another version of secondlook_cnn.*score the file again"):
        keep(scored(), "NORMAL", db, current_model_sha256=sha("model v2"))
    with pytest.raises(C.Refused, match="not loaded now"):
        keep(scored(), "NORMAL", db, current_model_sha256=None)
    assert C.rows(db=db) == []


def test_another_operating_point_is_refused(db):
    with pytest.raises(C.Refused, match=r"shown at threshold 0\.5000 and the operating point is now 0\.4000"):
        keep(scored(), "NORMAL", db, current_threshold=0.4)
    with pytest.raises(C.Refused, match="now unknown"):
        keep(scored(), "NORMAL", db, current_threshold=None)
    keep(scored(), "NORMAL", db, current_threshold=0.5 + 1e-12)  # the same point, as a float
    assert len(C.rows(db=db)) == 1


@pytest.mark.parametrize("call", ["pneumonia", "EFFUSION", "", "maybe"])
def test_an_unknown_call_is_refused(db, call):
    with pytest.raises(C.Refused, match="must be one of"):
        keep(scored(), call, db)
    assert C.rows(db=db) == []


def test_a_role_that_may_not_confirm_is_refused(db):
    auditor = users.User(sub="oidc|aud", email="aud@example.org", roles=("auditor",), source="token")
    with pytest.raises(users.PermissionDenied, match=r"aud@example.org \(auditor\) may not confirm"):
        keep(scored(), "NORMAL", db, user=auditor)
    with pytest.raises(users.PermissionDenied):
        keep(scored(), "NORMAL", db, user=users.User(sub="x", roles=("viewer",)))
    technician = users.User(sub="oidc|tec", roles=("technician",))
    keep(scored(3, task="malaria", decision="Parasitized"), "Uninfected", db, user=technician)
    assert [r["user_role"] for r in C.rows(db=db)] == ["technician"]


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, sha(1)[:63] + "g", "../../etc/passwd"])
def test_a_bad_checksum_is_refused(db, bad):
    s = C.Scored(bad, "pneumonia", "secondlook_cnn", MODEL, 0.5, 0.8, "PNEUMONIA")
    with pytest.raises(C.Refused, match="64 lower-case hex"):
        keep(s, "NORMAL", db)
    with pytest.raises(C.Refused, match=r"not in \[0, 1\]"):
        keep(scored(p=1.5), "NORMAL", db)
    assert C.rows(db=db) == []


def test_latest_word_and_agreement(db):
    keep(scored(1), "NORMAL", db)  # disagreed ...
    keep(scored(1), "PNEUMONIA", db)  # ... then agreed: the last word counts, once
    keep(scored(2, p=0.2, decision="NORMAL"), "NORMAL", db)
    keep(scored(3, p=0.9), "NORMAL", db)
    keep(scored(4, p=None, decision=None), "NORMAL", db)  # withheld: no agreement either way
    keep(scored(1, task="effusion", decision="EFFUSION"), "EFFUSION", db)  # another task, the same file
    frame = C.to_frame(task="pneumonia", db=db)
    last = C.latest(frame)
    assert len(frame) == 5 and last["image_sha256"].tolist() == [sha(1), sha(2), sha(3), sha(4)]
    assert last.set_index("image_sha256").loc[sha(1), "reader_call"] == "PNEUMONIA"
    assert C.agreement(frame) == {"n": 3, "agreed": 2, "rate": pytest.approx(2 / 3)}
    assert C.agreement(C.to_frame(task="malaria", db=db)) == {"n": 0, "agreed": 0, "rate": None}
    assert len(C.latest(C.to_frame(db=db))) == 5  # effusion's call on the same file is its own result


def test_site_labels_keep_only_this_model_file_and_the_latest_call(db):
    keep(scored(1, p=0.9), "NORMAL", db)
    keep(scored(1, p=0.9), "PNEUMONIA", db)  # changed: label 1
    keep(scored(2, p=0.1, decision="NORMAL"), "NORMAL", db, note="x")
    keep(scored(3, p=0.3, decision="NORMAL", site="ward-3"), "PNEUMONIA", db)
    keep(scored(4, p=None, decision=None), "NORMAL", db)  # withheld: no probability to validate on
    old = sha("model v0")
    keep(scored(5, p=0.7, model_sha=old), "PNEUMONIA", db)  # another model file: says nothing about this one
    got = C.site_labels("pneumonia", "secondlook_cnn", MODEL, db=db)
    assert got["image_sha256"].tolist() == [sha(1), sha(2), sha(3)]
    assert got["label"].tolist() == [1, 0, 1] and got["probability"].tolist() == [0.9, 0.1, 0.3]
    assert set(got["source"]) == {"reader-confirmed"}
    assert C.site_labels("pneumonia", "secondlook_cnn", MODEL, site_profile="ward-3", db=db)["image_sha256"].tolist() == [sha(3)]
    assert C.site_labels("pneumonia", "secondlook_cnn", old, db=db)["image_sha256"].tolist() == [sha(5)]
    assert C.site_labels("effusion", "secondlook_cnn", MODEL, db=db).empty


def test_filters(db):
    keep(scored(1), "NORMAL", db)
    keep(scored(2), "NORMAL", db, user=users.User(sub="oidc|bob", email="bob@example.org", roles=("clinician",)))
    assert [r["image_sha256"] for r in C.rows(user="Bob@Example.org", db=db)] == [sha(2)]
    assert [r["image_sha256"] for r in C.rows(user="oidc|ann", db=db)] == [sha(1)]
    assert [r["image_sha256"] for r in C.rows(image_sha256=sha(2), db=db)] == [sha(2)]
    assert C.rows(since="2999-01-01", db=db) == [] and len(C.rows(until="2999-01-01", db=db)) == 2


def _writer(path: str, writer: int, n: int, start) -> None:
    start.wait(30)
    user = users.User(sub=f"oidc|w{writer}", roles=("clinician",))
    for i in range(n):
        s = scored(f"{writer}-{i}")
        C.record(s, reader_call="NORMAL" if i % 2 else "PNEUMONIA", user=user, current_model_sha256=MODEL,
                 current_threshold=0.5, note=f"w{writer} #{i}", db=path)


def test_several_processes_confirming_at_once_lose_no_row(db):
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    writers, n = 4, 150
    procs = [ctx.Process(target=_writer, args=(str(db), w, n, start)) for w in range(writers)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * writers
    rows = C.rows(db=db)
    assert len(rows) == writers * n
    assert {(r["user_sub"], r["note"]) for r in rows} == {(f"oidc|w{w}", f"w{w} #{i}") for w in range(writers) for i in range(n)}
    assert {r["image_sha256"] for r in rows} == {sha(f"{w}-{i}") for w in range(writers) for i in range(n)}
