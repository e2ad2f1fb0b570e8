"""The cell review queue ("Confirm and learn", part 1): the rule that picks the review threshold, the CLI contract on a
real training field, the record's model check, the threshold reproduced from the validation fields, and the issue's
targets as measured once on the test fields (`models/malaria/<field model>/review.json`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.config import REPO_ROOT
from core.fields import records, review
from core.fields.screen import FieldScreen
from tests.conftest import SCORE_TOLERANCE, bar_param, require_dataset


def test_review_threshold_is_the_highest_that_queues_the_share():
    scores = np.linspace(0.01, 0.99, 40)  # 40 found infected cells: 38 must reach the queue
    thr = review.choose_review_threshold(scores, share=0.95)
    assert (scores >= thr).sum() == 38 and thr == pytest.approx(np.sort(scores)[2])
    assert (scores >= np.nextafter(thr, 1)).sum() < 0.95 * len(scores)  # any higher threshold queues too few
    assert review.choose_review_threshold([0.3, 0.7], share=0.95) == 0.3
    with pytest.raises(ValueError):
        review.choose_review_threshold([])


def test_workload_threshold_is_the_lowest_that_keeps_the_queue_within_the_aim():
    fields = [records.ScoredField(FieldScreen(f"f{k}", 640, 480, np.zeros((4, 4), np.int64), np.array(p)), np.zeros(4, np.int8),
                                  4, 0, np.zeros(0, np.int64), 0, [])
              for k, p in enumerate(([0.9, 0.8, 0.3, 0.1], [0.7, 0.6, 0.5, 0.05]))]
    thr = review.workload_threshold(fields, per_field=2.5)  # 5 cells over 2 fields
    assert sum(int((f.screen.probabilities >= thr).sum()) for f in fields) == 5 and 0.3 < thr <= 0.5
    assert review.workload_threshold(fields, per_field=4) == np.nextafter(0.0, 1.0)  # every cell fits


def test_queue_is_most_suspicious_first_and_empty_without_a_threshold():
    p = np.array([0.1, 0.95, 0.5, 0.99, 0.5])
    assert review.review_queue(p, 0.5).tolist() == [3, 1, 2, 4]
    assert review.review_queue(p, None).tolist() == []
    s = FieldScreen("f", 640, 480, np.zeros((5, 4), np.int64), p)
    row = review.with_review({"cells": [{} for _ in p]}, s, 0.5)
    assert [c["review"] for c in row["cells"]] == [False, True, True, True, True] and row["n_review"] == 4
    assert row["review_threshold"] == 0.5 and "review_note" not in row
    off = review.with_review({"cells": [{} for _ in p]}, s, None, "why")
    assert not any(c["review"] for c in off["cells"]) and off["n_review"] == 0 and off["review_note"] == "why"
    assert review.with_review({"file": "x", "ok": False}, None, 0.5)["n_review"] == 0
    assert review.case_review([s, s], 0.5) == {"review_threshold": 0.5, "n_review": 8}


def _record() -> tuple[str, dict]:
    model_id = records.field_model()
    rec = review.read_review(model_id)
    assert rec, f"no review.json for the field model: python -m core.fields.review --model {model_id} --test"
    return model_id, rec


def test_a_changed_model_file_makes_the_record_stale():
    model_id, rec = _record()
    thr, note = review.review_threshold(model_id)
    assert thr == rec["review_threshold"] and review.review_threshold(model_id, rec)[0] == thr
    stale = rec | {"model_sha256": "0" * 64}
    thr, note = review.review_threshold(model_id, stale)
    assert thr is None and "another model file" in note
    other = "secondlook_long"
    assert not review.read_review(other)
    thr, note = review.review_threshold(other)
    assert thr is None and "no review record" in note and other in note


def _training_field() -> str:
    """A training-split field (sessions S2/S3, never the test session) that holds infected cells."""
    from core.fields.cuts import read_fields

    require_dataset("malaria_fields")
    fields, _ = read_fields()
    return fields[(fields["split"] == "train") & (fields["n_infected"] >= 2)].sort_values("path")["file"].iloc[0]


def _lines(stdout: str) -> list[dict]:
    return [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]


def test_cli_marks_the_review_queue_on_a_real_field(tmp_path):
    model_id, rec = _record()
    field = _training_field()
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "core.fields", field, str(text)], cwd=REPO_ROOT, capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    line, bad, summary = _lines(r.stdout)
    thr = rec["review_threshold"]
    assert line["ok"] and line["model"] == model_id and line["review_threshold"] == thr and "review_note" not in line
    assert all(set(c) == {"x", "y", "w", "h", "probability", "infected", "counted", "review"} for c in line["cells"])
    assert line["n_cells"] == sum(c["counted"] for c in line["cells"])  # cells cut by the edge: reviewable, not counted
    assert line["n_infected"] == sum(c["infected"] and c["counted"] for c in line["cells"])
    for c in line["cells"]:  # the shown probability carries 6 decimals; the flag uses the full score
        if abs(c["probability"] - thr) > 1e-6:
            assert c["review"] == (c["probability"] >= thr)
    assert line["n_review"] == sum(c["review"] for c in line["cells"]) > 0
    assert all(c["review"] for c in line["cells"] if c["infected"])  # the queue holds every cell called infected
    assert not bad["ok"] and bad["review_threshold"] == thr and bad["n_review"] == 0
    s = summary["summary"]
    assert s["review_threshold"] == thr and s["n_review"] == line["n_review"] and "review_note" not in s


def test_cli_without_a_current_record_queues_nothing(monkeypatch, capsys):
    """A review record made with another model file: null threshold, no cell queued, a note saying why."""
    from core.fields import __main__ as cli

    model_id, rec = _record()
    field = _training_field()
    monkeypatch.setattr(review, "read_review", lambda m: rec | {"model_sha256": "0" * 64})
    assert cli.main([field]) == 0
    line, summary = _lines(capsys.readouterr().out)
    assert line["ok"] and line["model"] == model_id and line["review_threshold"] is None and line["n_review"] == 0
    assert line["cells"] and not any(c["review"] for c in line["cells"]) and "another model file" in line["review_note"]
    s = summary["summary"]
    assert s["review_threshold"] is None and s["n_review"] == 0 and "another model file" in s["review_note"]


def test_record_is_current_and_its_threshold_follows_from_the_stored_validation_scores():
    model_id, rec = _record()
    assert records.is_current(model_id, rec), "review.json was made with another model file, finder or scoring"
    scores = np.asarray(rec["validation_found_infected_scores"])
    v = rec["validation"]
    assert len(scores) == v["n_found_infected_cells"] and rec["share"] == review.QUEUE_SHARE
    assert rec["queue"] == review.QUEUE_VERSION and rec["cells_per_field_aim"] == review.CELLS_PER_FIELD_AIM
    assert review.choose_review_threshold(scores) == rec["by_share"]
    assert min(rec["by_share"], rec["by_workload"]) == rec["review_threshold"] == v["review_threshold"]
    assert v["cells_reviewed_per_field"] <= review.CELLS_PER_FIELD_AIM
    assert v["found_infected_reaching_queue"] == pytest.approx((scores >= rec["review_threshold"]).mean(), abs=1e-12)
    assert v["found_infected_reaching_queue"] >= review.QUEUE_SHARE
    assert v["infected_reaching_queue"] == pytest.approx(v["n_confirmed_cells"] / v["n_infected_cells"], abs=1e-12)


def test_review_threshold_is_reproduced_on_the_validation_fields():
    """Re-screen the validation fields (out of fold for a refit): the rule gives the recorded threshold and figures back."""
    require_dataset("malaria_fields")
    model_id, rec = _record()
    val, _, chosen_on = records.validation_fields(model_id)
    assert rec["chosen_on"] == chosen_on
    assert review.choose_review_threshold(review.found_infected_scores(val)) == pytest.approx(rec["by_share"], abs=SCORE_TOLERANCE)
    assert review.workload_threshold(val) == pytest.approx(rec["by_workload"], abs=SCORE_TOLERANCE)
    again = review.measure(val, rec["review_threshold"], rec["validation"]["field_threshold"])
    for k, v in rec["validation"].items():
        if isinstance(v, (int, float)):
            assert again[k] == pytest.approx(v, abs=1e-6), k


# The targets on the test fields (session S1, scored once for the queue); a missed floor is a strict expected
# failure carrying the measured value, so it cannot go stale.
REVIEW_BARS = {
    "infected_reaching_queue": (">=", 0.93),  # of all annotated infected cells (an unfound cell never reaches it)
    "found_infected_reaching_queue": (">=", 0.93),  # of the infected cells the finder boxed (the rule's reading)
    "cells_reviewed_per_field": ("<=", 8),
    "confirmed_parasitemia_relative_error": ("<=", 0.15),
}
REVIEW_MISSES = {  # secondlook_fields at its review threshold 0.6204 on the 52 test fields, second look (docs/evaluation.md)
    "infected_reaching_queue": "0.875 (70 of 80): the finder boxes 76 of them (4 never reach the queue) and 6 found "
                               "ones score below the threshold chosen on S3 (first look, at 0.9001: 0.8125)",
    "found_infected_reaching_queue": "0.921 (70 of 76) against 0.995 on the validation fields",
    "confirmed_parasitemia_relative_error": "0.176: 1.08% confirmed against 1.31% annotated (the unqueued and unfound "
                                            "infected cells; the automatic count at the field point errs by 0.344)",
}


@pytest.mark.parametrize("metric,op_,bar", [bar_param(k, op_, bar, id=k, miss=REVIEW_MISSES.get(k))
                                             for k, (op_, bar) in REVIEW_BARS.items()])
def test_review_queue_against_the_targets(metric, op_, bar):
    _, rec = _record()
    assert "test" in rec, "the test fields were not scored: python -m core.fields.review --model <id> --test"
    v = rec["test"][metric]
    assert (v >= bar) if op_ == ">=" else (v <= bar), f"{metric} {v:.4f} vs {op_} {bar}"
