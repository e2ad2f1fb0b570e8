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


def test_case_threshold_queues_the_budget_ranked_across_the_case_and_every_cell_from_the_field_point():
    rule = review.QueueRule(1.5, 0.95)
    a, b = np.array([0.9, 0.8, 0.3, 0.1]), np.array([0.7, 0.6, 0.5, 0.05])
    thr = review.case_threshold([a, b], rule)  # 3 cells over 2 fields, ranked across them: 0.9, 0.8, 0.7
    assert thr == 0.7 and (a >= thr).sum() + (b >= thr).sum() == 3
    assert review.case_threshold([a * 0.5, b * 0.5], rule) == 0.35  # a slide whose scores all sit lower: the same cells
    hot = np.array([0.99, 0.98, 0.97, 0.96])
    thr = review.case_threshold([hot], review.QueueRule(1.0, 0.95))  # over the budget, every cell from the field point
    assert thr == 0.95 and (hot >= thr).all()
    assert (a >= review.case_threshold([a], review.QueueRule(8.0, 0.95))).all()  # a budget over the case: every cell
    assert review.case_threshold([], rule) == pytest.approx(0.0, abs=1e-300) and review.case_threshold([a], None) is None


def _scored(p: list[float], infected: list[int]) -> records.ScoredField:
    truth = np.zeros(len(p), np.int8)
    truth[infected] = 1
    return records.ScoredField(FieldScreen("f", 640, 480, np.zeros((len(p), 4), np.int64), np.array(p)), truth, len(p),
                               len(infected), np.array(infected, np.int64), len(p), [[i] for i in infected])


def test_budget_is_the_fewest_cells_a_field_that_bring_the_share_to_the_queue():
    case = [_scored([0.9, 0.2, 0.8, 0.1], [1]), _scored([0.7, 0.3, 0.05, 0.01], [1])]  # infected ranked 5th and 4th
    assert review.choose_budget([case], always_from=0.95) == 2.5  # 5 cells over 2 fields: both infected
    assert review.choose_budget([case], always_from=0.95, share=0.5) == 2.0  # 4 cells: one of them
    assert review.choose_budget([case], always_from=0.15) == 0.5  # every cell from 0.15 is queued, whatever the budget
    with pytest.raises(ValueError):
        review.choose_budget([[_scored([0.5], [])]], always_from=0.95)


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
    rule, note = review.queue_rule(model_id)
    assert rule == review.QueueRule(rec["cells_per_field"], rec["always_from"]) == review.queue_rule(model_id, rec)[0]
    stale = rec | {"model_sha256": "0" * 64}
    rule, note = review.queue_rule(model_id, stale)
    assert rule is None and "another model file" in note
    assert review.review_threshold(model_id, [], stale)[0] is None
    other = "secondlook_long"
    assert not review.read_review(other)
    thr, note = review.review_threshold(other, [])
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
    thr = line["review_threshold"]  # the case of this one field: its budget's most suspicious cells
    assert line["ok"] and line["model"] == model_id and thr <= rec["always_from"] and "review_note" not in line
    assert all(set(c) == {"x", "y", "w", "h", "probability", "infected", "counted", "review"} for c in line["cells"])
    assert line["n_cells"] == sum(c["counted"] for c in line["cells"])  # cells cut by the edge: reviewable, not counted
    assert line["n_infected"] == sum(c["infected"] and c["counted"] for c in line["cells"])
    for c in line["cells"]:  # the shown probability carries 6 decimals; the flag uses the full score
        if abs(c["probability"] - thr) > 1e-6:
            assert c["review"] == (c["probability"] >= thr)
    assert line["n_review"] == sum(c["review"] for c in line["cells"]) >= rec["cells_per_field"]
    assert line["n_review"] <= max(np.ceil(rec["cells_per_field"]) + 1, sum(c["probability"] >= rec["always_from"]
                                                                            for c in line["cells"]))  # +1: a tie
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


def test_record_is_current_and_its_rule_follows_from_the_validation_figures():
    model_id, rec = _record()
    assert records.is_current(model_id, rec) and review.is_current_review(model_id, rec), \
        "review.json was made with another model file, finder, scoring or queue"
    v = rec["validation"]
    assert rec["share"] == review.QUEUE_SHARE and rec["cells_per_field_aim"] == review.CELLS_PER_FIELD_AIM
    assert rec["cells_per_field"] == max(rec["by_share"], review.CELLS_PER_FIELD_AIM) == v["cells_per_field"]
    assert rec["always_from"] == v["field_threshold"] == records.read_record(model_id)["threshold"]
    assert len(v["case_thresholds"]) == v["n_cases"] == len(rec["validation_cases"])
    assert all(t <= rec["always_from"] for t in v["case_thresholds"])
    assert rec["cells_per_field"] <= v["cells_reviewed_per_field"] <= 8  # the budget, plus cells from the field point
    assert v["found_infected_reaching_queue"] >= review.QUEUE_SHARE
    assert v["infected_reaching_queue"] == pytest.approx(v["n_confirmed_cells"] / v["n_infected_cells"], abs=1e-12)


def test_review_threshold_is_reproduced_on_the_validation_fields():
    """Re-screen the validation fields (out of fold for a refit): the rule gives the recorded threshold and figures back."""
    require_dataset("malaria_fields")
    model_id, rec = _record()
    cases, sessions, chosen_on = records.validation_fields(model_id)
    assert rec["chosen_on"] == chosen_on and rec["validation_cases"] == sessions
    assert review.choose_budget(cases, rec["always_from"]) == rec["by_share"]
    again = review.measure(cases, review.QueueRule(rec["cells_per_field"], rec["always_from"]), rec["validation"]["field_threshold"])
    assert again["case_thresholds"] == pytest.approx(rec["validation"]["case_thresholds"], abs=SCORE_TOLERANCE)
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
REVIEW_MISSES = {  # secondlook_fields_all under its case budget of 5 cells a field, the 52 test fields as one case, the
    # third look at that session's queue (the first two: secondlook_fields at fixed thresholds 0.9001 and 0.6204, reach
    # 0.8125 and 0.875; docs/evaluation.md "Cell review queue")
    "infected_reaching_queue": "0.925 (74 of 80), one cell short of 0.93: the finder never boxes 4 of them, and 2 "
                               "found ones rank below the case's 260th cell (out-of-fold validation: 0.931)",
}


@pytest.mark.parametrize("metric,op_,bar", [bar_param(k, op_, bar, id=k, miss=REVIEW_MISSES.get(k))
                                             for k, (op_, bar) in REVIEW_BARS.items()])
def test_review_queue_against_the_targets(metric, op_, bar):
    _, rec = _record()
    assert "test" in rec, "the test fields were not scored: python -m core.fields.review --model <id> --test"
    v = rec["test"][metric]
    assert (v >= bar) if op_ == ">=" else (v <= bar), f"{metric} {v:.4f} vs {op_} {bar}"
