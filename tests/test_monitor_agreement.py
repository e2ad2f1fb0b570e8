"""Monitoring: AI-reader agreement from the readers' confirmations, per task, model, site profile and ISO week, beside
the audit log's volume, flag and withheld rates; `python -m core.monitor --agreement`; the Monitoring page in words."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from core import audit, confirmations, monitoring, sqlwal, users
from core.config import REPO_ROOT

ANN = users.User(sub="oidc|ann", email="ann@example.org", roles=("clinician",), source="token")
TEC = users.User(sub="oidc|tec", email="tec@example.org", roles=("technician",), source="token")
MODEL = "a" * 64


def sha(i) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def stores(tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDLOOK_AUDIT", str(tmp_path / "audit.sqlite"))
    monkeypatch.setenv("SECONDLOOK_CONFIRMATIONS", str(tmp_path / "confirmations.sqlite"))
    audit.close_all()
    yield tmp_path
    audit.close_all()
    sqlwal.close_all()


def _confirm(i, call: str, *, task: str = "pneumonia", decision: str | None = "PNEUMONIA", site: str | None = None,
             user: users.User = ANN, **kw) -> int:
    s = confirmations.Scored(sha(i), task, "secondlook_cnn", MODEL, 0.5, None if decision is None else 0.7, decision, site)
    return confirmations.record(s, reader_call=call, user=user, current_model_sha256=MODEL, current_threshold=0.5, **kw)


def _move(row_id: int, when: str) -> None:
    """Put a confirmation in another week (records are stamped now)."""
    with sqlite3.connect(confirmations.db_path()) as con:
        con.execute("UPDATE confirmations SET created_at = ? WHERE id = ?", (when, row_id))


def _fill() -> None:
    """Pneumonia: 50 results confirmed this week, 45 agreed (one of them after a change of mind), 2 withheld; one at a
    site profile; 4 results a week earlier (3 agreed). Malaria: field cells from the cell review."""
    for i in range(45):
        _confirm(i, "PNEUMONIA")
    for i in range(45, 50):
        _confirm(i, "NORMAL")
    _confirm(0, "NORMAL")  # a change of mind on result 0 ...
    _confirm(0, "PNEUMONIA")  # ... and back: counted once, agreed
    _confirm("w1", "NORMAL", decision=None)
    _confirm("w2", "PNEUMONIA", decision=None)
    _confirm("s1", "NORMAL", decision="NORMAL", site="ward-3")
    for i in range(4):
        _move(_confirm(f"old{i}", "PNEUMONIA" if i < 3 else "NORMAL"), "2026-01-07T10:00:00.000000+00:00")
    _confirm("field", "Parasitized", task="malaria", decision="Parasitized", user=TEC, kind="cell", cell=3, case_id="c1")
    _confirm("field", "Parasitized", task="malaria", decision=confirmations.NOT_PROPOSED, user=TEC, kind="cell", cell=9,
             case_id="c1")


def test_agreement_per_task_model_site_and_week(stores):
    _fill()
    frame = monitoring.confirmation_frame()
    lines = monitoring.agreement_lines(frame)
    main = lines[(lines["task"] == "pneumonia") & (lines["site_profile"] == monitoring.NO_SITE)].iloc[0]
    assert (main["confirmed"], main["judged"], main["agreed"]) == (56, 54, 48)
    assert main["agreement_rate"] == pytest.approx(48 / 54)
    ward = lines[lines["site_profile"] == "ward-3"].iloc[0]
    assert (ward["confirmed"], ward["agreed"], ward["agreement_rate"]) == (1, 1, 1.0)
    cells = lines[lines["task"] == "malaria"].iloc[0]
    assert cells["what"] == "field cells" and (cells["confirmed"], cells["judged"], cells["agreed"]) == (2, 2, 1)

    weeks = monitoring.agreement_weekly(frame)
    pneu = weeks[(weeks["task"] == "pneumonia") & (weeks["site_profile"] == monitoring.NO_SITE)]
    assert pneu["week"].tolist()[-1] == "2026-W02" and pneu["confirmed"].tolist() == [52, 4]
    assert pneu["agreed"].tolist() == [45, 3] and weeks["week"].is_monotonic_decreasing

    recent = monitoring.agreement_lines(monitoring.confirmation_frame(since=monitoring.recent_since(28)))
    assert recent.set_index(["task", "site_profile"]).loc[("pneumonia", monitoring.NO_SITE), "confirmed"] == 52


def test_agreement_in_plain_words(stores):
    for i in range(45):
        _confirm(i, "PNEUMONIA")
    for i in range(45, 50):
        _confirm(i, "NORMAL")
    _confirm("w", "NORMAL", decision=None)
    [line] = monitoring.agreement_lines(monitoring.confirmation_frame()).to_dict("records")
    text = monitoring.agreement_text(line)
    assert "Readers agreed with SecondLook on 45 of 50 confirmed results (90%)" in text
    assert "1 more had no decision to agree with (withheld)" in text


def test_agreement_beside_the_audit_logs_weekly_rates(stores):
    for i in range(6):
        audit.record(image_sha256=sha(i), task="pneumonia", model_id="secondlook_cnn", model_sha256=MODEL,
                     threshold=0.5, probability=0.7 if i < 4 else 0.2, decision="PNEUMONIA" if i < 4 else "NORMAL",
                     surface="app")
    for i in range(3):
        _confirm(i, "PNEUMONIA" if i else "NORMAL")
    _move(_confirm("old", "PNEUMONIA"), "2026-01-07T10:00:00.000000+00:00")  # a week with no scorings
    weeks = monitoring.weekly(monitoring.audit_frame())
    both = monitoring.with_agreement(weeks, monitoring.agreement_weekly(monitoring.confirmation_frame()))
    now = both.iloc[0]
    assert (now["scorings"], now["confirmed"], now["agreed"]) == (6, 3, 2) and now["flag_rate"] == pytest.approx(4 / 6)
    old = both[both["week"] == "2026-W02"].iloc[0]
    assert (old["scorings"], old["confirmed"], old["agreement_rate"]) == (0, 1, 1.0)


def test_looking_creates_no_confirmations_database(tmp_path):
    path = tmp_path / "none.sqlite"
    assert monitoring.confirmation_frame(db=path).empty and not path.exists()
    assert monitoring.agreement_lines(monitoring.confirmation_frame(db=path)).empty


def test_monitor_command_prints_agreement_lines(stores):
    _fill()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "core.monitor", "--agreement", "--task", "pneumonia"], cwd=REPO_ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert {ln["task"] for ln in lines} == {"pneumonia"} and len(lines) == 2  # no site profile, ward-3
    main = next(ln for ln in lines if ln["site_profile"] == monitoring.NO_SITE)
    assert (main["confirmed"], main["judged"], main["agreed"]) == (56, 54, 48)
    assert main["text"].startswith("pneumonia / secondlook_cnn: Readers agreed with SecondLook on 48 of 54")


def test_monitoring_page_says_it_in_words(stores):
    from tests.app_support import start, texts

    _fill()
    at = start(research=False)
    at.switch_page("app_pages/monitor.py").run()
    assert not at.exception, [e.message for e in at.exception]
    shown = "\n".join(texts(at))
    assert "Readers agreed with SecondLook on 45 of 50 confirmed results (90%); 2 more" in shown  # the last 28 days
    assert "field cells" in shown
    weeks = [df.value for df in at.dataframe if "week" in df.value.columns]
    assert weeks and {"confirmed", "agreement_rate"} <= set(weeks[0].columns)
    assert len(at.dataframe) == 2  # agreement lines and the weeks (nothing scored: no drift table)
