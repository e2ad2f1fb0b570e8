"""One decision rule: withheld on the wrong kind of image (measured on every real test split), caution kept for
unusual images; routing by modality; the CLI's JSON contract (withheld rows, --task auto)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from core.config import REPO_ROOT
from core.inference import routing
from core.inference.decision import NOT_ASSESSED, UNUSUAL_CAUTION, decide, modality_verdict
from core.registry import TASKS
from tests.conftest import require_dataset
from tests.imagegen import gradient


def _cell(size: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    disc = (y - size / 2) ** 2 + (x - size / 2) ** 2 < (size * 0.4) ** 2
    img = np.zeros((size, size, 3), np.uint8)
    img[disc] = (200, 120, 150)
    return img


def test_decide_flags_clears_withholds_and_cautions():
    d = decide(0.7, 0.5, "pneumonia", None)
    assert d.assessed and d.label == "PNEUMONIA" and d.flagged and d.short("PNEUMONIA") == "Flag: PNEUMONIA"
    assert decide(0.5, 0.5, "pneumonia", None).flagged  # score >= threshold, as every metric counts it
    assert decide(0.2, 0.5, "pneumonia", None).fields() == {"decision": "NORMAL", "withheld": None, "caution": None}
    w = decide(0.99, 0.5, "pneumonia", "colour image: not a radiograph")
    assert not w.assessed and w.label is None and w.flagged is None and w.short("PNEUMONIA") == NOT_ASSESSED
    assert w.fields() == {"decision": None, "withheld": "colour image: not a radiograph", "caution": None}
    c = decide(0.9, 0.5, "malaria", None, ood_flag=True)
    assert c.assessed and c.label == "Parasitized" and c.caution == UNUSUAL_CAUTION  # caution keeps the decision
    assert decide(None, 0.5, "malaria", None).label is None


def test_verdict_and_routing_on_drawn_images():
    xray, cell = gradient(128, 128), _cell()
    assert modality_verdict(xray, "pneumonia") is None and modality_verdict(cell, "malaria") is None
    assert "colour image" in modality_verdict(cell, "effusion") and "greyscale" in modality_verdict(xray, "malaria")
    assert routing.route(cell).tasks == ("malaria",) and not routing.route(cell).ambiguous
    r = routing.route(xray)
    assert r.tasks == ("pneumonia", "effusion") and r.ambiguous
    assert routing.route(xray, available=("effusion", "malaria")).tasks == ("effusion",)
    assert routing.switch_suggestion(cell, "pneumonia").tasks == ("malaria",)
    assert routing.switch_suggestion(cell, "malaria") is None
    assert routing.population("pneumonia") == "pediatric" and routing.population("effusion") == "adult"


def test_no_decision_on_another_tasks_test_images_and_at_most_1pct_withheld_on_own():
    """Every task's full test split sent to every task. Whether a decision exists depends on the image only
    (the modality check), never on the score, so the probability here is a placeholder."""
    from core.data import load_task_manifest
    from core.io.images import read_image

    for t in TASKS:
        require_dataset(t)
    counts = {(src, dst): [0, 0] for src in TASKS for dst in TASKS}
    for src in TASKS:
        df = load_task_manifest(src)
        for f in df.loc[df["split"] == "test", "file"]:
            px = read_image(f)
            for dst in TASKS:
                route = routing.route(px)
                d = decide(0.5, 0.5, dst, modality_verdict(px, dst))
                c = counts[(src, dst)]
                c[0] += d.assessed
                c[1] += 1
                assert d.assessed == route.fits(dst)  # routing and the check agree on every image
    lines = {f"{s} -> {d}": f"{k}/{n} decided" for (s, d), (k, n) in counts.items()}
    print(json.dumps(lines, indent=1))
    for (src, dst), (k, n) in counts.items():
        if TASKS[src].modality != TASKS[dst].modality:
            assert k == 0, (src, dst, k, n)
        else:
            assert (n - k) / n <= 0.01, (src, dst, n - k, n)


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_cli_withholds_on_the_wrong_modality_and_routes_auto(tmp_path):
    from core.data import load_task_manifest

    for t in ("pneumonia", "malaria"):
        require_dataset(t)
    xray = load_task_manifest("pneumonia").query("split == 'test'").file.iloc[0]
    cell = load_task_manifest("malaria").query("split == 'test'").file.iloc[0]
    r = _run("core.predict", "--task", "malaria", xray, cell)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert rows[0]["ok"] and rows[0]["decision"] is None and "greyscale" in rows[0]["withheld"]
    assert rows[0]["probability"] is None and 0 <= rows[0]["score_out_of_scope"] <= 1
    assert rows[1]["decision"] in ("Parasitized", "Uninfected") and rows[1]["withheld"] is None
    r = _run("core.predict", "--task", "auto", xray, cell, str(tmp_path / "missing.png"))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [(x["file"], x.get("task")) for x in rows] == [(xray, "pneumonia"), (xray, "effusion"), (cell, "malaria"),
                                                          (str(tmp_path / "missing.png"), None)]
    assert all(x["routed"] for x in rows) and [x.get("kind") for x in rows[:3]] == ["radiograph"] * 2 + ["cell"]
    assert [x.get("trained_on") for x in rows[:2]] == ["pediatric", "adult"]  # the models' population
    assert rows[0]["population"].startswith("child (image check") and rows[0]["population"] == rows[1]["population"]
    assert rows[0]["decision"] is not None and rows[2]["decision"] is not None and rows[3]["ok"] is False
    assert rows[1]["decision"] is None and "trained on adults" in rows[1]["withheld"]  # a child's film: no effusion call
    plain = [json.loads(x) for x in _run("core.predict", xray, cell).stdout.splitlines() if x.startswith("{")]
    assert plain == rows[:3]  # --task is optional: without it, every file is routed
    assert _run("core.predict", "--task", "auto", "--site", "x", xray).returncode != 0


def test_worklist_and_csv_use_the_same_rule():
    from core.inference import scoring

    rows = [{"file": "a", "probability": 0.9, "withheld": None}, {"file": "b", "probability": 0.2},
            {"file": "x", "probability": 0.95, "withheld": "colour image"}, {"file": "c", "probability": None}]
    wl = scoring.worklist(rows, 0.5, "pneumonia")
    assert list(wl["file"]) == ["a", "b", "x", "c"]  # withheld after the assessed, even with a high score
    assert list(wl["decision"]) == ["Flag: PNEUMONIA", "NORMAL", NOT_ASSESSED, "could not read"]
    csv = scoring.worklist_csv(wl, 0.5, "pneumonia", "secondlook_cnn").decode().splitlines()
    assert csv[0].startswith("rank,file,probability,decision,withheld") and ",Not assessed,colour image" in csv[3]


def test_whole_smear_fields_are_withheld_on_the_cell_task_but_cells_cut_from_them_are_not():
    """All 315 malaria_fields fields (1280x960) withheld; the 64 px cells cut from the S1 fields assessed."""
    import pandas as pd

    from core.config import task_data_dir
    from core.fields.cuts import cut_cells
    from core.io.images import read_image

    require_dataset("malaria_fields")
    root = task_data_dir("malaria_fields")
    fields = pd.read_csv(root / "manifest.csv")
    cells = pd.read_csv(root / "cells.csv")
    withheld = 0
    for p in fields.path:
        px = read_image(root / p)
        msg = modality_verdict(px, "malaria")
        withheld += bool(msg and "whole blood-smear field" in msg)
        assert modality_verdict(px, "pneumonia") is not None  # and never a chest decision
    assert withheld == len(fields) == 315
    for p in fields.path[:5]:
        boxes = cells.loc[cells.path == p, ["x", "y", "w", "h"]].to_numpy()
        crops = cut_cells(read_image(root / p), boxes)
        assert all(modality_verdict(c, "malaria") is None for c in crops)
