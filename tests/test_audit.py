"""Audit log: rows as written, filters, CSV, where the file lives, and no row lost to concurrent writers."""
from __future__ import annotations

import hashlib
import io
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from core import audit
from core.config import REPO_ROOT


def sha(i: int | str) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def db(tmp_path):
    yield tmp_path / "audit.sqlite"
    audit.close_all()


def _row(i=0, **kw):
    base = dict(image_sha256=sha(i), task="pneumonia", model_id="secondlook_cnn", model_sha256=sha("model"),
                threshold=0.5, probability=0.75, decision="PNEUMONIA", surface="cli")
    base.update(kw)
    return base


def test_record_and_read_back_every_field(db):
    rid = audit.record(**_row(1, site_profile="Ward 3"), db=db)
    audit.record(**_row(2, probability=0.2, decision=None, withheld_reason="image unusual for the model",
                        surface="app"), db=db)
    rows = audit.rows(db=db)
    assert [r["image_sha256"] for r in rows] == [sha(2), sha(1)]  # newest first
    first = next(r for r in rows if r["id"] == rid)
    assert first["task"] == "pneumonia" and first["model_sha256"] == sha("model") and first["site_profile"] == "Ward 3"
    assert first["probability"] == 0.75 and first["threshold"] == 0.5 and first["decision"] == "PNEUMONIA"
    assert first["created_at"].endswith("+00:00")  # UTC
    second = rows[0]
    assert second["decision"] is None and second["withheld_reason"] == "image unusual for the model"
    assert second["site_profile"] is None


def test_filters_and_csv(db):
    audit.record(**_row(1), db=db)
    audit.record(**_row(2, task="malaria", model_id="secondlook_cnn", decision="Parasitized", surface="app"), db=db)
    audit.record(**_row(3, surface="handoff"), db=db)
    assert {r["image_sha256"] for r in audit.rows(task="pneumonia", db=db)} == {sha(1), sha(3)}
    assert [r["image_sha256"] for r in audit.rows(surface="app", db=db)] == [sha(2)]
    assert [r["image_sha256"] for r in audit.rows(image_sha256=sha(3), db=db)] == [sha(3)]
    assert audit.rows(since="2999-01-01", db=db) == []
    assert len(audit.rows(until="2999-01-01", db=db)) == 3
    df = pd.read_csv(io.BytesIO(audit.export_csv(task="pneumonia", db=db)))
    assert list(df.columns) == audit.COLUMNS and len(df) == 2
    empty = audit.to_frame(task="effusion", db=db)
    assert empty.empty and list(empty.columns) == audit.COLUMNS


@pytest.mark.parametrize("bad, match", [
    (dict(image_sha256="not-a-hash"), "64 lower-case hex"),
    (dict(surface="web"), "unknown surface"),
    (dict(probability=1.5), "probability"),
    (dict(threshold=float("nan")), "threshold"),
    (dict(model_id=""), "required"),
])
def test_malformed_rows_are_refused(db, bad, match):
    with pytest.raises(ValueError, match=match):
        audit.record(**_row(**bad), db=db)
    assert audit.count(db=db) == 0


def test_no_pixels_or_names_columns(db):
    audit.record(**_row(), db=db)
    cols = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(audit)")]
    assert cols == audit.COLUMNS  # nothing else is stored: no file name, no pixels


def test_wal_mode_and_busy_timeout(db):
    audit.record(**_row(), db=db)
    con = audit._connection(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] == audit.BUSY_TIMEOUT_MS


def test_opening_a_fresh_log_while_another_process_writes_waits_instead_of_failing(tmp_path):
    """SQLite skips the busy handler when switching to WAL; opening while a writer holds its lock must still wait."""
    import threading

    path = tmp_path / "fresh.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        rid = audit.record(**_row(), db=path)  # was: AuditError "database is locked" at once
    finally:
        release.join()
        holder.close()
    assert rid == 1 and audit._connection(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_path_is_next_to_the_reviews_database(tmp_path, monkeypatch):
    monkeypatch.delenv("SECONDLOOK_AUDIT", raising=False)
    monkeypatch.setenv("SECONDLOOK_REVIEWS", str(tmp_path / "sub" / "reviews.sqlite"))
    assert audit.db_path() == tmp_path / "sub" / "audit.sqlite"
    monkeypatch.setenv("SECONDLOOK_AUDIT", str(tmp_path / "elsewhere.sqlite"))
    assert audit.db_path() == tmp_path / "elsewhere.sqlite"


def test_unwritable_location_is_a_clear_audit_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(audit.AuditError, match="cannot open the audit log"):
        audit.record(**_row(), db=blocker / "audit.sqlite")


def _writer(path: str, writer: int, n: int, start) -> None:
    start.wait(30)
    for i in range(n):
        audit.record(**_row(f"{writer}-{i}", surface="batch"), db=path)


def test_two_processes_writing_at_once_lose_no_row(db):
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    n = 400
    procs = [ctx.Process(target=_writer, args=(str(db), w, n, start)) for w in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    got = {r["image_sha256"] for r in audit.rows(db=db)}
    want = {sha(f"{w}-{i}") for w in range(2) for i in range(n)}
    assert got == want and audit.count(db=db) == 2 * n


def test_predict_cli_writes_one_row_per_scored_file(tmp_path):
    """`python -m core.predict` on a bundled model: the row holds the file's sha256 and the model's checksum."""
    from core.models import store
    from tests.imagegen import encode, gradient

    models = store.bundled_models("pneumonia")
    if not models:
        pytest.skip("no bundled pneumonia model")
    mid = models[0]
    img = tmp_path / "x.png"
    img.write_bytes(encode(gradient(128, 128), "PNG"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    log = tmp_path / "cli_audit.sqlite"
    env = {**os.environ, "SECONDLOOK_AUDIT": str(log), "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "core.predict", "--task", "pneumonia", "--model", mid, str(img), str(bad)],
                       cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = audit.rows(db=log)
    assert len(rows) == 1  # the unreadable file was not scored
    row = rows[0]
    assert row["image_sha256"] == hashlib.sha256(img.read_bytes()).hexdigest()
    assert row["surface"] == "cli" and row["model_id"] == mid
    assert row["model_sha256"] == store.read_card("pneumonia", mid)["sha256"]
    assert row["threshold"] == pytest.approx(store.read_card("pneumonia", mid)["threshold"])


def test_the_unusual_caution_is_kept_and_monitoring_counts_it(db):
    from core import monitoring

    audit.record(**_row(0, caution="This image is unusual for the model"), db=db)
    audit.record(**_row(1), db=db)
    audit.record(**_row(2, probability=None, decision=None, withheld_reason="not a chest film",
                        caution="This image is unusual for the model"), db=db)  # withheld: no decision to caution
    assert [r["caution"] for r in audit.rows(db=db)][::-1] == ["This image is unusual for the model", None,
                                                               "This image is unusual for the model"]
    week = monitoring.weekly(monitoring.audit_frame(db=db))
    assert week["unusual_rate"].tolist() == [0.5]  # 1 of the 2 assessed scorings
