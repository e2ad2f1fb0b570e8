"""The learned cell finder: its targets, augmentation and decoding on boxes drawn in code, its file check, and how
screening picks between it and the classical finder."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.fields import detector as D
from core.fields import screen
from core.fields.detector_train import CROP, Prepared, sample, targets
from core.fields.matching import iou_matrix


def _boxes(n: int = 12, side: int = 24, seed: int = 0) -> np.ndarray:
    """Non-overlapping square boxes (input pixels) on a grid inside a CROP x CROP image."""
    rng = np.random.default_rng(seed)
    cells = [(x, y) for x in range(8, CROP - side - 8, side + 10) for y in range(8, CROP - side - 8, side + 10)]
    pick = rng.choice(len(cells), n, replace=False)
    return np.array([[*cells[i], side + rng.integers(-3, 4), side + rng.integers(-3, 4)] for i in pick], np.float64)


def test_targets_decode_back_to_the_boxes():
    """A perfect network output (the targets themselves) gives every box back, one each, IoU > 0.8."""
    b = _boxes()
    t = targets(b, np.zeros((CROP, CROP), bool), CROP)
    out = np.concatenate([t[..., :1], t[..., 1:3]], axis=-1)
    found, scores = D.decode(out, 1.0, 24.0, 0.99, (CROP, CROP))  # scale 1: original pixels = input pixels
    assert len(found) == len(b) and np.all(scores >= 0.99)
    iou = iou_matrix(b, found)
    assert np.all(iou.max(axis=1) > 0.8) and np.all((iou > 0.5).sum(axis=1) == 1)


def test_loss_weight_is_off_on_unboxed_foreground_but_never_at_a_centre():
    b = _boxes(4)
    ignore = np.ones((CROP, CROP), bool)  # everything "unboxed stained foreground"
    t = targets(b, ignore, CROP)
    peaks = t[..., 0] >= 0.999
    assert peaks.sum() == 4 and np.all(t[..., 4][peaks] == 1.0)
    assert t[..., 4][t[..., 0] < 0.01].max() == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_augmented_crop_keeps_boxes_on_their_cells(seed):
    """Flips, quarter turns and scale jitter move the image and the boxes alike: every target centre lands on a
    drawn (dark) cell."""
    img = np.full((300, 300, 3), 230, np.uint8)
    boxes = []
    for cx, cy in [(40, 50), (150, 60), (250, 200), (90, 220), (200, 120)]:
        cv2.circle(img, (cx, cy), 12, (120, 60, 90), -1)
        boxes.append([cx - 12, cy - 12, 24, 24])
    p = Prepared(field=None, image=img, boxes=np.array(boxes, np.float64), ignore=np.zeros((300, 300), bool),
                 scale=1.0, cell_diameter=24.0, shape=(300, 300))
    x, t = sample(p, np.random.default_rng(seed))
    ys, xs = np.nonzero(t[..., 0] >= 0.999)
    assert len(ys) >= 1
    for y, x_ in zip(ys, xs):
        cy, cx = int((y + 0.5) * D.STRIDE), int((x_ + 0.5) * D.STRIDE)
        assert x[cy, cx].mean() < 170, f"centre ({cx},{cy}) is on background"


def test_close_peaks_are_one_cell():
    heat = np.zeros((40, 40, 3), np.float32)
    heat[10, 10, 0], heat[10, 13, 0], heat[30, 30, 0] = 0.9, 0.8, 0.7  # first two 6 px apart at stride 2
    found, scores = D.decode(heat, 1.0, 24.0, 0.5, (80, 80))
    assert len(found) == 2 and list(np.round(scores, 2)) == [0.9, 0.7]


def test_work_scale_is_bounded():
    assert D.work_scale(48.0, (960, 1280)) == pytest.approx(0.5)
    assert D.work_scale(1.0, (100, 100)) == 2.0  # never more than 2x up
    s = D.work_scale(1.0, (960, 1280))  # tiny cells in a big picture: the work image stays bounded
    assert s < 2.0 and s * 960 * s * 1280 <= D.MAX_WORK_PIXELS * 1.0001
    assert D.to_work(np.zeros((50, 70, 3), np.uint8), 1.0).shape[:2] == (64, 80)


def test_changed_detector_file_is_refused(tmp_path):
    assert D.load_detector(tmp_path) is None  # nothing bundled there: classical finding
    (tmp_path / "model.keras").write_bytes(b"not the trained file")
    (tmp_path / "card.json").write_text(json.dumps({"sha256": "0" * 64, "threshold": 0.3}))
    with pytest.raises(ValueError, match="does not match its card"):
        D.load_detector(tmp_path)


def test_classical_finder_on_request_and_checks_always_classical():
    from tests.test_fields_finder import _cell, _field, _finish, _grid_centres

    img = _field()
    for cx, cy in _grid_centres():
        _cell(img, cx, cy)
    img = _finish(img)
    boxes, found = screen.locate_cells(img, "classical")
    assert np.array_equal(boxes, found.boxes)
    blank = np.full((480, 640, 3), 200, np.uint8)
    boxes, found = screen.locate_cells(blank)  # not a field: the detector is not asked
    assert len(boxes) == 0 and "no_cells" in found.flags
    with pytest.raises(ValueError, match="unknown finder"):
        screen.locate_cells(img, "magic")


def test_bundled_detector_reproduces_its_test_record():
    """The card's test-session figures come back from `finder_eval --sessions S1` with the bundled file."""
    from core.fields.finder_eval import evaluate_finder
    from tests.conftest import require_dataset

    require_dataset("malaria_fields")
    card = json.loads((D.DETECTOR_DIR / "card.json").read_text())
    assert D.load_detector() is not None and card["test_looks"], "bundled detector without a test record"
    got = evaluate_finder("S1", n_boot=200)["summary"]
    for k in ("annotated_recall", "infected_recall", "n_annotated", "n_infected", "mean_found_per_field"):
        assert got[k] == pytest.approx(card["test"][k], abs=1e-9), k


def test_bundled_finder_meets_issue_10_cell_finding_floors():
    """Issue #10's cell-finding rows are the finder's own figures on the test fields (the record above, re-derived by
    the test before): annotated red cells found at IoU >= 0.5 >= 0.90, infected cells found >= 0.95. Screening then
    counts fewer (edge-cut cells are not counted, tests/test_fields_screen.py), which the end-to-end rows pay for."""
    t = json.loads((D.DETECTOR_DIR / "card.json").read_text())["test"]
    assert t["annotated_recall"] >= 0.90, t["annotated_recall"]
    assert t["infected_recall"] >= 0.95, f"{t['infected_recall']:.4f} of {t['n_infected']} infected cells"


def test_bundled_predictions_agree_with_the_card():
    """test_predictions.csv (one row per found box) gives the card's recorded test recall and box count."""
    import pandas as pd

    card = json.loads((D.DETECTOR_DIR / "card.json").read_text())
    rows = pd.read_csv(D.DETECTOR_DIR / "test_predictions.csv", keep_default_na=False)
    t = card["test"]
    matched = rows["matched_type"]
    assert len(rows) == pytest.approx(t["mean_found_per_field"] * t["n_fields"])
    assert ((matched != "") & (matched != "difficult")).sum() == round(t["annotated_recall"] * t["n_annotated"])
    infected = matched.isin(["ring", "trophozoite", "schizont", "gametocyte"]).sum()
    assert infected == round(t["infected_recall"] * t["n_infected"])
    assert (rows["score"] >= card["threshold"]).all()


def test_a_field_record_made_with_another_finder_is_not_current():
    from core.fields import records

    m = records.field_model()
    rec = records.read_record(m)
    assert rec["finder"] == records.current_finder() and records.is_current(m, rec)
    assert not records.is_current(m, dict(rec, finder={"kind": "classical"}))
    assert not records.is_current(m, {k: v for k, v in rec.items() if k != "finder"})  # older records: classical
    assert rec["scoring"] == records.current_scoring()
    assert not records.is_current(m, dict(rec, scoring=dict(rec["scoring"], rotations=1)))
    assert not records.is_current(m, {k: v for k, v in rec.items() if k != "scoring"})  # made before the second look
