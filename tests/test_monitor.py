"""Monitoring: PSI and KS by hand, "too few to judge drift", the `python -m core.monitor` contract on a core.batch
output, the drift alarm on real data (quiet on new NIH patients, alarm on another lab's cells) and the page."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core import audit, monitoring
from core.batch.output import RowWriter
from core.config import REPO_ROOT
from core.evaluation import drift
from core.inference.decision import decide
from core.inference.rows import row_context
from core.models.selection import default_model
from core.models.store import model_dir, read_predictions
from tests.conftest import require_dataset

TASK = "malaria"


# ---- pure functions --------------------------------------------------------------------------------------------

def test_psi_of_identical_samples_is_zero_and_of_a_shift_large():
    ref = np.arange(1000) / 1000  # deciles at 0.1, 0.2, ...: every bin holds 100
    assert drift.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert drift.psi(ref, ref[::7]) < 0.01  # a thinned copy: the same distribution
    # every current score in the top decile: shares 1 there, the floor elsewhere, by hand
    top = np.full(200, 0.95)
    r, c, f = 0.1, 1.0, drift.FLOOR
    by_hand = (c - r) * np.log(c / r) + 9 * (f - r) * np.log(f / r)
    assert drift.psi(ref, top) == pytest.approx(by_hand, rel=1e-12)
    assert drift.psi(ref, top) > 5
    assert drift.psi(ref, ref + 0.3) > 1  # three deciles' worth of shift
    assert drift.psi(ref, ref + 0.3) > drift.psi(ref, ref + 0.1) > drift.psi(ref, ref + 0.01)


def test_psi_bins_tied_reference_scores_once():
    ref = np.r_[np.zeros(500), np.linspace(0.1, 1, 500)]  # half the reference is one tied score
    e = drift.edges(ref)
    assert np.all(np.diff(e) > 0) and e[0] == 0.0
    assert drift.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_ks_p_value():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2000), rng.normal(size=2000)
    assert drift.ks_test(a, a) == pytest.approx(1.0)
    assert drift.ks_test(a, b) > 0.01
    assert drift.ks_test(a, b + 0.5) < 1e-10


def test_too_few_scores_never_alarm():
    ref = np.linspace(0, 1, 1000)
    d = drift.drift(ref, np.full(99, 0.5))
    assert d["alarm"] is None and d["psi"] is None and d["n"] == 99
    assert d["reason"].startswith("too few to judge drift")
    d = drift.drift(ref, np.full(100, 0.5))
    assert d["alarm"] is True and d["psi"] >= drift.ALARM_PSI and d["ks_p"] < 1e-6


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        drift.psi([0.1, 0.2], [np.nan])


# ---- the command on a core.batch output ------------------------------------------------------------------------

def _batch_csv(path, probs, withheld: int = 0, task: str = TASK):
    """A core.batch output as core.batch writes it: rows from `row_context(...).row`, withheld ones without a
    probability (the modality check said no)."""
    model = default_model(task)
    ctx = row_context(task, model)
    rows = []
    for i, p in enumerate(probs):
        rows.append(ctx.row(f"img{i}.png", hashlib.sha256(str(i).encode()).hexdigest(), probability=float(p)))
    for i in range(withheld):
        dec = decide(0.9, ctx.threshold, task, "not a blood-smear cell")
        rows.append(ctx.row(f"other{i}.png", hashlib.sha256(f"w{i}".encode()).hexdigest(), probability=0.9, decision=dec))
    with RowWriter(path, []) as w:
        w.write(rows)
    return path


def _need_model():
    if not (model_dir(TASK, default_model(TASK)) / "val_predictions.csv").is_file():
        pytest.fail("the malaria default model's val_predictions.csv is bundled with the repository")


def test_command_prints_one_json_line_quiet_for_validation_like_scores(tmp_path):
    _need_model()
    val = read_predictions(TASK, default_model(TASK), "val")["score"].to_numpy()
    path = _batch_csv(tmp_path / "like_val.csv", np.random.default_rng(1).choice(val, 600, replace=False), withheld=7)
    out = subprocess.run([sys.executable, "-m", "core.monitor", "--task", TASK, "--scores", str(path)],
                         check=False, capture_output=True, text=True, cwd=REPO_ROOT, env=os.environ.copy(), timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["alarm"] is False and r["psi"] < drift.ALARM_PSI and 0 <= r["ks_p"] <= 1
    assert r["n"] == 600 and r["n_withheld"] == 7 and r["rows"] == 607 and r["n_reference"] == len(val)
    assert r["model"] == default_model(TASK) and r["alarm_psi"] == drift.ALARM_PSI
    assert 0 < r["flag_rate"] < 1 and r["withheld_rate"] == pytest.approx(7 / 607)


def test_command_alarms_on_another_distribution_and_not_on_too_few(tmp_path, capsys):
    from core.monitor import main

    _need_model()
    mid = np.random.default_rng(2).uniform(0.3, 0.6, 300)  # the middle, where validation scores are rare
    assert main(["--task", TASK, "--scores", str(_batch_csv(tmp_path / "mid.csv", mid))]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["alarm"] is True and r["psi"] >= drift.ALARM_PSI and r["ks_p"] < 1e-6

    assert main(["--task", TASK, "--scores", str(_batch_csv(tmp_path / "few.csv", mid[:99], withheld=20))]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["alarm"] is False and r["psi"] is None and r["reason"].startswith("too few to judge drift")
    assert r["n"] == 99 and r["n_withheld"] == 20  # withheld rows are counted, never scores


def test_command_refuses_another_models_scores_and_a_missing_file(tmp_path, capsys):
    from core.monitor import main

    _need_model()
    path = _batch_csv(tmp_path / "s.csv", np.full(120, 0.5))
    assert main(["--task", TASK, "--model", "seed_model3", "--scores", str(path)]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["--task", TASK, "--scores", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---- the alarm on real data (the targets of the issue) ---------------------------------------------------------

def test_drift_alarm_quiet_on_new_nih_patients_and_alarm_on_another_labs_cells():
    """Held-out data, looked at once after the level was chosen (core.evaluation.drift's docstring): the NIH test
    patients stay quiet, the IML test session S1's cells alarm."""
    require_dataset(TASK)
    require_dataset("malaria_fields")
    model = default_model(TASK)
    ref = monitoring.reference_scores(TASK, model)
    test = read_predictions(TASK, model, "test")["score"].to_numpy()
    quiet = drift.drift(ref, test)
    assert quiet["alarm"] is False, quiet
    assert quiet["psi"] == pytest.approx(0.234, abs=0.002)
    cells = monitoring.field_scores(("S1",), TASK, model)["S1"]
    loud = drift.drift(ref, cells)
    assert loud["alarm"] is True and loud["n"] == 6123, loud
    assert loud["psi"] == pytest.approx(2.48, abs=0.02)


# ---- the audit log and the page --------------------------------------------------------------------------------

@pytest.fixture
def audit_log(tmp_path, monkeypatch):
    """A fresh audit log: 150 malaria scorings in the middle of the scale (drift alarm), 10 withheld, and 30
    pneumonia scorings (too few to judge)."""
    monkeypatch.setenv("SECONDLOOK_AUDIT", str(tmp_path / "audit.sqlite"))
    audit.close_all()
    rng = np.random.default_rng(3)
    m_model, p_model = default_model(TASK), default_model("pneumonia")
    for i, p in enumerate(rng.uniform(0.3, 0.6, 150)):
        audit.record(image_sha256=hashlib.sha256(f"m{i}".encode()).hexdigest(), task=TASK, model_id=m_model,
                     model_sha256=None, threshold=0.36, probability=float(p),
                     decision="Parasitized" if p >= 0.36 else "Uninfected", surface="batch")
    for i in range(10):
        audit.record(image_sha256=hashlib.sha256(f"w{i}".encode()).hexdigest(), task=TASK, model_id=m_model,
                     model_sha256=None, threshold=0.36, probability=None, withheld_reason="not a blood-smear cell",
                     surface="app")
    for i, p in enumerate(rng.uniform(0, 1, 30)):
        audit.record(image_sha256=hashlib.sha256(f"p{i}".encode()).hexdigest(), task="pneumonia", model_id=p_model,
                     model_sha256=None, threshold=0.5, probability=float(p), decision="NORMAL", surface="cli")
    yield tmp_path / "audit.sqlite"
    audit.close_all()


def test_audit_summary_per_task_model_site_and_week(audit_log):
    frame = monitoring.audit_frame()
    lines = monitoring.drift_table(frame).set_index("task")
    m = lines.loc[TASK]
    assert m["scorings"] == 160 and m["assessed"] == 150 and m["withheld_rate"] == pytest.approx(10 / 160)
    assert m["alarm"] is True and m["psi"] >= drift.ALARM_PSI and 0 < m["flag_rate"] < 1
    p = lines.loc["pneumonia"]
    assert p["alarm"] is None and p["reason"].startswith("too few to judge drift") and p["flag_rate"] == 0
    weeks = monitoring.weekly(frame)
    assert set(weeks["task"]) == {TASK, "pneumonia"} and weeks["week"].str.match(r"^\d{4}-W\d{2}$").all()
    [alarm] = monitoring.alarms()
    assert alarm["task"] == TASK and "unlike the model's validation scores" in monitoring.alarm_text(alarm)


def test_no_alarm_and_no_log_created_without_one(tmp_path):
    path = tmp_path / "none.sqlite"
    assert monitoring.alarms(db=path) == [] and not path.exists()


def test_monitoring_page_and_home_show_the_alarm(audit_log):
    from tests.app_support import start, texts

    at = start(research=False)
    home_alarms = [e.value for e in at.error if "Drift alarm" in e.value]
    assert len(home_alarms) == 1 and TASK in home_alarms[0]
    at.switch_page("app_pages/monitor.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(TASK in e.value and "PSI" in e.value for e in at.error)
    assert any("reader agreement" in t.lower() for t in texts(at))
    assert len(at.dataframe) == 2  # the drift lines and the weeks
