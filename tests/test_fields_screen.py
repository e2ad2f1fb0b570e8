"""Whole-field screening: counts, parasitemia and the CLI contract on fields drawn in code; the field operating
point rule; the recorded field evaluation reproduced on the real annotated fields."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.config import REPO_ROOT
from core.fields.cuts import fields_available
from core.evaluation.metrics import wilson_ci
from core.fields import records, screen
from core.registry import InputSpec, ModelSpec, TrainConfig
from tests.conftest import IN_CI, SCORE_TOLERANCE, bar_param
from tests.modelgen import tiny_model
from tests.test_fields_finder import _cell, _field, _finish, _grid_centres

SPEC = ModelSpec("tiny", "malaria", "tiny", False, InputSpec(64, 3), TrainConfig(epochs=1), "test model")


def _synthetic(n_rows=4, n_cols=6) -> np.ndarray:
    img = _field()
    for cx, cy in _grid_centres(n_cols, n_rows):
        _cell(img, cx, cy)
    return _finish(img)


@pytest.fixture(scope="module")
def model():
    return tiny_model((64, 64, 3))


def test_every_drawn_cell_is_counted_and_scored(model):
    s = screen.screen_field(_synthetic(), model, SPEC, "synthetic.png", keep_crops=True)
    assert s.counted and len(s.boxes) == 24 and s.probabilities.shape == (24,) and s.crops.shape == (24, 64, 64, 3)
    everything = s.result(0.0, "tiny")
    assert everything["n_cells"] == 24 and everything["n_infected"] == 24 and everything["parasitemia"] == 100.0
    nothing = s.result(1.1, "tiny")
    assert nothing["n_infected"] == 0 and nothing["parasitemia"] == 0.0
    thr = float(np.median(s.probabilities))
    mid = s.result(thr, "tiny")
    k = int((s.probabilities >= thr).sum())
    assert mid["n_infected"] == k == sum(c["infected"] for c in mid["cells"])
    lo, hi = wilson_ci(k, 24)
    assert mid["parasitemia_ci"] == [round(100 * lo, 4), round(100 * hi, 4)]
    for c, b in zip(mid["cells"], s.boxes):
        assert (c["x"], c["y"], c["w"], c["h"]) == tuple(int(v) for v in b)


def test_suspicious_cells_get_a_second_look_over_four_quarter_turns(monkeypatch):
    """Cells scoring >= SECOND_LOOK_FROM are re-scored rotated and their logits averaged; the others keep their score."""
    from scipy.special import expit, logit

    def fake(model, x):  # orientation-dependent: the brightness of the top-left quadrant
        return np.round(expit(4 * (x[:, :32, :32, 0].mean(axis=(1, 2), dtype=np.float64) - 0.5)), 8)

    monkeypatch.setattr(screen, "_probabilities", fake)
    rng = np.random.default_rng(0)
    x = rng.random((6, 64, 64, 3)).astype(np.float32)
    x[:3, :32, :32] = 0.9  # three cells bright top-left: they score high upright
    x[3:, :32, :32] = 0.1
    first = fake(None, x)
    assert (first[:3] >= screen.SECOND_LOOK_FROM).all() and (first[3:] < screen.SECOND_LOOK_FROM).all()
    out = screen.rotation_average(None, x, first)
    assert out[3:].tolist() == first[3:].tolist()
    for i in range(3):
        turns = [fake(None, np.rot90(x[i : i + 1], k, axes=(1, 2)))[0] for k in range(screen.ROTATIONS)]
        assert out[i] == pytest.approx(expit(np.mean(logit(turns))), abs=1e-8)
        assert out[i] < first[i]  # the other three turns put a dark quadrant top-left


def test_field_cells_scored_by_onnxruntime_agree_with_tensorflow():
    """The field path's engine (onnxruntime) against the TF graph the cards were made with, on crops drawn in code."""
    from core.inference.forward import predict_tensors
    from core.inference.preprocess import prepare
    from core.registry import get_model_spec
    from core.models.store import load_model

    pytest.importorskip("onnxruntime")
    m = records.field_model()
    spec, net = get_model_spec("malaria", m), load_model("malaria", m)
    crops = screen.cut_cells(_synthetic(), screen.find_cells(_synthetic()).boxes, spec.input.size, cut=spec.input.field_cut)
    x = np.stack([prepare(c, spec.input) for c in crops])
    assert len(x) == 24
    assert np.abs(screen._probabilities(net, x) - predict_tensors(net, x)).max() <= 1e-5
    assert records.current_scoring()["engine"] == "onnxruntime"


def test_ellipse_cut_blacks_out_the_neighbour_in_the_corners_only():
    from core.fields.cuts import cut_cells

    rgb = np.full((300, 300, 3), 180, np.uint8)
    rgb[:, 200:] = 40  # a dark neighbour touching the box's right edge
    box = np.array([[100, 100, 100, 100]])
    plain, cell = cut_cells(rgb, box)[0], cut_cells(rgb, box, cut="ellipse")[0]
    assert (cell[[0, 0, -1, -1], [0, -1, 0, -1]] == 0).all() and (plain[[0, 0, -1, -1], [0, -1, 0, -1]] > 0).all()
    inside = cell.any(axis=2)
    assert (cell[inside] == plain[inside]).all() and (cell[28:36, 28:36] == 180).all()  # the cell itself untouched
    assert (plain[:, 62:] == 40).all() and (cell[:8, 60:] == 0).all()  # the neighbour's strip goes at the corners
    assert 0.60 < inside.mean() < 0.70  # pi/4 of the box, within its padded crop
    with pytest.raises(ValueError, match="unknown field cut"):
        cut_cells(rgb, box, cut="circle")


def test_a_model_that_cuts_ellipses_is_screened_with_them(model):
    from dataclasses import replace

    boxed = screen.screen_field(_synthetic(), model, SPEC, "f.png", keep_crops=True)
    oval = screen.screen_field(_synthetic(), model, replace(SPEC, input=InputSpec(64, 3, field_cut="ellipse")), "f.png",
                               keep_crops=True)
    assert (oval.boxes == boxed.boxes).all() and (oval.crops[:, 0, 0] == 0).all() and (boxed.crops[:, 0, 0] > 0).any()


def test_a_model_that_normalises_stain_is_screened_with_normalised_fields(model):
    """The same boxes (found on the field as photographed), the crops cut from the field mapped to the reference stain."""
    from dataclasses import replace

    from core.fields.cuts import cut_cells
    from core.data.stain import normalize_field

    rgb = _synthetic()
    raw = screen.screen_field(rgb, model, SPEC, "f.png", keep_crops=True)
    normed = screen.screen_field(rgb, model, replace(SPEC, input=InputSpec(64, 3, field_stain="normalize")), "f.png",
                                 keep_crops=True)
    assert (normed.boxes == raw.boxes).all() and not np.array_equal(normed.crops, raw.crops)
    assert np.array_equal(normed.crops, cut_cells(normalize_field(rgb), raw.boxes))


def test_blank_picture_has_no_parasitemia(model):
    blank = np.full((480, 640, 3), 230, np.uint8)
    s = screen.screen_field(blank, model, SPEC, "blank.png")
    r = s.result(0.5, "tiny")
    assert not r["ok"] and r["n_cells"] == 0 and r["parasitemia"] is None
    assert "no red blood cells found in this image" in r["error"]


def test_case_asks_for_more_fields_until_a_thousand_cells():
    def fake(n, k):
        p = np.r_[np.ones(k), np.zeros(n - k)]
        return screen.FieldScreen("f", 640, 480, np.zeros((n, 4), np.int64), p)

    few = screen.case_result([fake(110, 2), fake(90, 1)], 0.5)
    assert few["n_cells"] == 200 and few["n_infected"] == 3 and not few["enough_cells"]
    assert "about 8 more fields" in few["advice"]  # (1000 - 200) / 100 cells per field
    enough = screen.case_result([fake(250, 5)] * 4, 0.5)
    assert enough["enough_cells"] and enough["advice"] == "" and enough["parasitemia"] == 2.0


def _scored(neg_scores: list[list[float]]) -> list[records.ScoredField]:
    out = []
    for negs in neg_scores:
        p = np.asarray(negs + [0.99])
        s = screen.FieldScreen("f", 640, 480, np.zeros((len(p), 4), np.int64), p)
        truth = np.r_[np.zeros(len(negs), np.int8), 1]
        out.append(records.ScoredField(s, truth, len(p), 1, np.array([len(p) - 1]), len(p), [np.array([len(p) - 1])]))
    return out


def test_false_alarms_split_into_annotated_cells_and_other_boxes():
    fields = _scored([[0.9, 0.1], [0.8, 0.7]])
    fields[0].annotated = np.array([True, True, True])
    fields[1].annotated = np.array([False, True, True])  # its 0.8 box matches no annotated cell
    r = records.false_alarm_sources(fields, 0.5)
    assert r["on_annotated_cells_per_field"] == 1.0 and r["on_unannotated_boxes_per_field"] == 0.5  # (0.9, 0.7) and 0.8
    assert r["unannotated_share_of_found"] == 1 / 6 and r["n_fields"] == 2


def test_field_threshold_keeps_false_alarms_within_budget():
    fields = _scored([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.05], [0.5, 0.4]])  # 5 fields: budget 1 false alarm
    thr = records.choose_field_threshold(fields, target=0.2)
    r = records.per_field(fields, thr)
    assert r["fp"].sum() == 1 and thr > 0.8  # only 0.9 passes
    assert r["fp"].sum() <= 0.2 * len(fields)
    lower = records.per_field(fields, np.nextafter(0.8, 0))
    assert lower["fp"].sum() > 1  # any lower threshold breaks the budget
    summ = records.summarise(fields, thr, n_boot=200)
    assert summ["infected_sensitivity"] == 1.0 and summ["false_positive_cells_per_field"] == pytest.approx(0.2)


def test_cli_contract(tmp_path):
    import cv2

    field_png, blank, text = tmp_path / "field.png", tmp_path / "blank.png", tmp_path / "notes.txt"
    cv2.imwrite(str(field_png), cv2.cvtColor(_synthetic(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(blank), np.full((480, 640, 3), 230, np.uint8))
    text.write_text("not an image")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "core.fields", "--model", "secondlook_long", "--threshold", "0.5",
                        str(field_png), str(blank), str(text)], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 4
    field, empty, bad, summary = lines
    assert field["ok"] and field["n_cells"] == 24 and len(field["cells"]) == 24 and field["threshold"] == 0.5
    assert set(field) >= {"file", "ok", "width", "height", "n_cells", "n_infected", "parasitemia", "parasitemia_ci", "threshold", "model", "cells"}
    assert set(field["cells"][0]) == {"x", "y", "w", "h", "probability", "infected", "counted", "review"}
    assert not empty["ok"] and "no red blood cells" in empty["error"]
    assert not bad["ok"] and "not an image format" in bad["error"]
    assert summary["summary"]["n_cells"] == 24 and summary["summary"]["n_files"] == 3
    misuse = subprocess.run([sys.executable, "-m", "core.fields", "--model", "nosuch", str(field_png)], cwd=REPO_ROOT,
                            capture_output=True, text=True, env=env, timeout=600)
    assert misuse.returncode != 0
    # --site: the profile's cell threshold counts the cells and every line names the site
    from core.models.store import read_card
    from core.site import profiles

    env["SECONDLOOK_SITES"] = str(tmp_path / "sites.sqlite")
    shipped = float(read_card("malaria", "secondlook_long")["threshold"])
    profiles.save(profiles.SiteProfile("lab1", "malaria", "secondlook_long", profiles.current_sha256("malaria", "secondlook_long"),
                                       40, 0.25, shipped, None, {}), db=tmp_path / "sites.sqlite")
    r = subprocess.run([sys.executable, "-m", "core.fields", "--model", "secondlook_long", "--site", "lab1", str(field_png)],
                       cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    field, summary = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert field["site"] == "lab1" and field["threshold"] == 0.25 and summary["summary"]["site"] == "lab1"
    assert field["n_infected"] == sum(c["probability"] >= 0.25 for c in field["cells"])
    nosite = subprocess.run([sys.executable, "-m", "core.fields", "--site", "nosuch", str(field_png)], cwd=REPO_ROOT,
                            capture_output=True, text=True, env=env, timeout=600)
    assert nosite.returncode != 0 and "nosuch" in nosite.stderr


def _require_fields() -> None:
    if fields_available():
        return
    msg = "malaria_fields dataset not found under SECONDLOOK_DATA"
    if IN_CI:
        pytest.fail("CI must have the datasets: " + msg)
    pytest.skip(msg)


def test_field_upload_on_predict_page_counts_cells_live():
    """A lab technician's field photo on Predict (malaria): cells outlined, counts that follow the operating point,
    the suspicious-cell gallery, CSVs; a single-cell crop uploaded with it is still scored as before."""
    from tests.app_support import start, use_threshold
    from tests.conftest import require_dataset

    _require_fields()
    require_dataset("malaria")
    fields, _ = __import__("core.fields.cuts", fromlist=["read_fields"]).read_fields()
    train_field = fields[fields["session"] == "S2"].iloc[0]  # a training-session field: never test data
    crop = __import__("core.data", fromlist=["load_task_manifest"]).load_task_manifest("malaria").query("split == 'test'").iloc[0]
    at = start("malaria", page="predict")
    files = [(train_field.path.split("/")[-1], open(train_field.file, "rb").read(), "image/jpeg"),
             (crop.path.split("/")[-1], open(crop.file, "rb").read(), "image/jpeg")]
    at.file_uploader(key="predict_files").set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Whole-field screening" in s.value for s in at.subheader)
    counted = {m.label: m.value for m in at.metric}
    n_cells = int(counted["Red cells counted"].replace(",", ""))
    assert n_cells >= 50
    assert "Probability of malaria parasites" in counted  # the crop went through the single-image path
    use_threshold(at, 0.0)
    assert {m.label: m.value for m in at.metric}["Infected cells"] == f"{n_cells:,}"
    use_threshold(at, 1.0)
    assert {m.label: m.value for m in at.metric}["Infected cells"] == "0"
    assert at.selectbox(key="fields_pick").options
    assert len([b for b in at.get("download_button") if "fields" in str(b.proto.label).lower() or "cells" in str(b.proto.label).lower()]) >= 2


def test_field_benchmark_structure():
    """The harness runs end to end (timings are judged by make bench, never here)."""
    from benchmarks.fields import bench_fields

    _require_fields()
    r = bench_fields(reps=2, warmup=0, case_fields=2)
    assert r["n_fields"] == 2 and r["case_fields"] == 2
    for k in ("decode", "find_and_score", "outline", "total"):
        assert 0 < r[k]["p50"] <= r[k]["p95"]
    assert r["total"]["p50"] >= r["find_and_score"]["p50"]


# The whole-field targets of issue #10 on the test fields, for the field model; misses are recorded as strict
# expected failures with the measured value, so they cannot go stale.
FIELD_BARS = {
    "red_cells_found": (">=", 0.90),
    "infected_cells_found": (">=", 0.95),
    "infected_sensitivity": (">=", 0.85),
    "false_positive_cells_per_field": ("<=", 0.5),
    "parasitemia_abs_error_median": ("<=", 0.5),
}
FIELD_MISSES = {  # secondlook_fields_all on the test fields, as measured (docs/evaluation.md "Whole smear fields")
    "red_cells_found": "0.898 of annotated cells among the counted ones (edge-cut and oversized boxes are not counted; "
                       "the learned finder alone matches 0.965)",
    "infected_cells_found": "0.925 among the counted cells (the learned finder alone finds 0.950; the count drops "
                            "edge-cut and oversized boxes)",
    "infected_sensitivity": "0.575 at the point chosen out of fold for at most 0.5 false infected cells a field "
                            "(secondlook_fields, chosen on S3 alone: 0.725 at 0.88 false cells a field)",
    "false_positive_cells_per_field": "0.52 at the point chosen for at most 0.5 on the out-of-fold validation fields",
    "parasitemia_abs_error_median": "0.85 points: part of the infected cells called at that point",
}


def _field_record() -> dict:
    rec = records.read_record(records.field_model())
    assert rec, "no fields.json for the field model: python -m core.fields.records --model <id>"
    return rec


@pytest.mark.parametrize("metric,op_,bar", [bar_param(k, op_, bar, id=k, miss=FIELD_MISSES.get(k))
                                             for k, (op_, bar) in FIELD_BARS.items()])
def test_field_model_against_the_targets(metric, op_, bar):
    v = _field_record()["test"][metric]
    assert (v >= bar) if op_ == ">=" else (v <= bar), f"{metric} {v:.4f} vs {op_} {bar}"


def test_field_model_is_validated_on_the_most_sessions_then_the_most_sensitive_at_the_same_budget():
    from core.models.store import bundled_models

    recs = {m: records.read_record(m) for m in bundled_models("malaria") if records.is_current(m)}
    sessions = {m: len(r.get("validation_sessions", ["S3"])) for m, r in recs.items()}
    chosen = records.field_model()
    peers = [r for m, r in recs.items() if sessions[m] == sessions[chosen]]
    assert len(recs) >= 2 and sessions[chosen] == max(sessions.values())
    assert all(recs[chosen]["validation"]["infected_sensitivity"] >= r["validation"]["infected_sensitivity"] for r in peers)
    assert all(r["validation"]["false_positive_cells_per_field"] <= records.FP_PER_FIELD_TARGET for r in recs.values())


def test_a_field_model_refitted_on_every_session_is_validated_out_of_fold(monkeypatch):
    """Each fold scores only the session it neither trained nor stopped on; a model with neither is refused."""
    from dataclasses import replace

    from core.registry import get_model_spec

    seen = []
    monkeypatch.setattr(records, "load_fields", lambda sessions: [sessions])
    monkeypatch.setattr(records, "load_model", lambda task, m: m)
    monkeypatch.setattr(records, "score_annotated", lambda model, spec, fields: seen.append((model, fields[0])) or [model])
    val, sessions, note = records.validation_fields("secondlook_fields_all")
    assert seen == [("secondlook_fields", ("S3",)), ("secondlook_fields_s3", ("S2",))] and sessions == ["S3", "S2"]
    assert "out-of-fold" in note and len(val) == 2
    fold_a = get_model_spec("malaria", "secondlook_fields")
    assert set(fold_a.train.site_sessions or ("S2",)).isdisjoint(records.stop_sessions(fold_a))
    monkeypatch.setattr(records, "get_model_spec", lambda task, m: replace(get_model_spec(task, "secondlook_fields_all"),
                                                                         session_folds=()))
    with pytest.raises(ValueError, match="nothing validates it"):
        records.validation_fields("secondlook_fields_all")


def test_field_record_is_reproduced_on_the_annotated_fields():
    """Re-screen the validation and test fields: the threshold rule and every recorded test number come back."""
    from core.fields.annotations import load_fields
    from core.registry import get_model_spec
    from core.models.store import load_model, read_card

    _require_fields()
    model_id = records.field_model()
    rec = _field_record()
    assert rec["model_sha256"] == read_card("malaria", model_id)["sha256"]
    assert rec.get("finder", {"kind": "classical"}) == records.current_finder(), "record made with another cell finder"
    spec, model = get_model_spec("malaria", model_id), load_model("malaria", model_id)
    val = records.flat(records.validation_fields(model_id)[0])
    assert records.choose_field_threshold(val) == pytest.approx(rec["threshold"], abs=SCORE_TOLERANCE)
    test = records.summarise(records.score_annotated(model, spec, load_fields(records.TEST_SESSIONS)), rec["threshold"])
    for k, v in rec["test"].items():
        if isinstance(v, float):
            assert test[k] == pytest.approx(v, abs=1e-6), k


def test_unannotated_found_boxes_overlap_no_cell_and_hold_no_parasitised_centre():
    from core.fields.cuts import unannotated

    annotated = np.array([[0, 0, 10, 10], [100, 100, 20, 20], [200, 0, 10, 10]])
    infected = np.array([False, True, False])
    found = np.array([[1, 1, 10, 10],      # the first cell: annotated
                      [50, 50, 10, 10],    # nothing there: a negative
                      [90, 90, 60, 60],    # a clump around the parasitised cell's centre: not a negative
                      [206, 0, 10, 10],    # IoU 4/16 with the third cell: too close to call a negative
                      [300, 300, 8, 8]])   # a platelet far away: a negative
    assert unannotated(found, annotated, infected).tolist() == [False, True, False, False, True]
    assert unannotated(found, np.zeros((0, 4)), np.zeros(0, bool)).all()


def test_hard_negatives_from_real_training_fields():
    from core.fields.cuts import FIELDS, TRAIN_SESSIONS, hard_negative_crops, read_fields, task_data_dir
    from core.fields.matching import iou_matrix
    from core.fields.screen import screening_boxes
    from core.io.images import read_image
    from tests.conftest import require_dataset

    require_dataset("malaria_fields")
    crops, boxes = hard_negative_crops(TRAIN_SESSIONS, limit=2, locate=lambda rgb: screening_boxes(rgb)[0])
    assert crops.shape == (len(boxes), 64, 64, 3) and len(boxes) > 0 and boxes["path"].nunique() <= 2
    for path, g in boxes.groupby("path"):  # the boxes screening scores, not the classical finder's
        screened = {tuple(b) for b in screening_boxes(read_image(task_data_dir(FIELDS) / path))[0].tolist()}
        assert {tuple(b) for b in g[["x", "y", "w", "h"]].to_numpy().tolist()} <= screened
    _, cells = read_fields()
    for path, g in boxes.groupby("path"):
        truth = cells[cells["path"] == path][["x", "y", "w", "h"]].to_numpy()
        assert iou_matrix(truth, g[["x", "y", "w", "h"]].to_numpy()).max() < 0.1
    assert set(cells[cells["path"].isin(boxes["path"])]["session"]) <= set(TRAIN_SESSIONS)  # never a test field


def test_cells_cut_by_the_edge_are_scored_for_review_but_not_counted(model):
    """A cell cut by the picture's edge is found, scored and flagged (`edge`), after the counted ones; the count, its
    parasitemia and the case use only the cells wholly inside the field."""
    from tests.test_fields_finder import R

    img = _field()
    for cx, cy in _grid_centres():
        _cell(img, cx, cy)
    _cell(img, R // 3, 240)  # two thirds of a cell inside the left edge
    _cell(img, 640 - R // 3, 420)  # and one at the right edge
    s = screen.screen_field(_finish(img), model, SPEC, "edge.png", keep_crops=True)
    cut = ~s.in_count
    assert s.n_counted == 24 and cut.sum() == 2 and len(s.boxes) == len(s.probabilities) == len(s.crops) == 26
    assert not cut[:24].any() and cut[24:].all()  # counted cells first
    b = s.boxes[cut]
    assert ((b[:, 0] <= 1) | (b[:, 0] + b[:, 2] >= 639)).all()
    r = s.result(0.0, "tiny")
    assert r["n_cells"] == 24 and r["n_infected"] == 24 and r["parasitemia"] == 100.0
    assert [c["counted"] for c in r["cells"]] == [True] * 24 + [False] * 2 and len(r["cells"]) == 26
    case = screen.case_result([s, s], 0.0)
    assert case["n_cells"] == 48 and case["n_infected"] == 48


def test_a_screen_without_edge_flags_counts_every_cell():
    s = screen.FieldScreen("f", 640, 480, np.zeros((3, 4), np.int64), np.array([0.1, 0.6, 0.9]))
    assert s.n_counted == 3 and s.in_count.all() and s.result(0.5)["n_infected"] == 2
