"""The CLI contracts other tools rely on: core.predict, core.evaluate and a smoke run of core.train."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import REPO_ROOT
from core.data import load_task_manifest
from core.models.selection import default_model
from core.models.store import model_dir, read_card
from tests.conftest import SCORE_TOLERANCE, require_dataset


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_predict_scores_good_files_and_explains_bad_ones(tmp_path):
    require_dataset("effusion")
    test = load_task_manifest("effusion").query("split == 'test'").head(2)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    files = [test.file.iloc[0], str(bad), str(empty), str(tmp_path / "missing.png"), test.file.iloc[1]]
    r = run("core.predict", "--task", "effusion", *files)
    assert r.returncode == 0, r.stderr
    rows = _json_lines(r.stdout)
    assert [row["file"] for row in rows] == files
    assert [row["ok"] for row in rows] == [True, False, False, False, True]
    for row in rows[1:4]:
        assert row["error"] and "Traceback" not in row["error"]
    # One image alone scores exactly as it does in a batch of 128 here, and as the evaluation run that wrote
    # test_predictions.csv (on its machine's CPU, within SCORE_TOLERANCE).
    from core.inference.calibrate import apply_calibration, card_calibration
    from core.batch._core import input_spec
    from core.inference.forward import score_sources
    from core.models.store import load_model

    mid = default_model("effusion")
    batch = load_task_manifest("effusion").query("split == 'test'").file.head(128).tolist()
    in_batch = dict(zip(batch, apply_calibration(
        score_sources(load_model("effusion", mid), input_spec("effusion", mid), batch),
        card_calibration("effusion", mid))))
    preds = pd.read_csv(model_dir("effusion", mid) / "test_predictions.csv").set_index("path")
    for row, k in ((rows[0], 0), (rows[4], 1)):
        assert row["probability"] == in_batch[test.file.iloc[k]]
        assert abs(row["probability"] - preds.score[test.path.iloc[k]]) <= SCORE_TOLERANCE
        thr = read_card("effusion", mid)["threshold"]
        assert row["decision"] == ("EFFUSION" if row["probability"] >= thr else "NORMAL")


def test_predict_misuse_exits_nonzero():
    assert run("core.predict", "--task", "nosuchtask", "x.png").returncode != 0
    assert run("core.predict", "--task", "effusion", "--model", "nosuchmodel", "x.png").returncode != 0


def test_evaluate_on_a_custom_manifest_prints_json_last(tmp_path):
    require_dataset("malaria")
    df = load_task_manifest("malaria").query("split == 'test'")
    sub = pd.concat([df[df.y == 1].head(15), df[df.y == 0].head(15)])
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": sub.file, "label": sub.label}).to_csv(manifest, index=False)
    out = tmp_path / "scores.csv"
    r = run("core.evaluate", "--task", "malaria", "--manifest", str(manifest), "--out", str(out))
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("n", "auc", "accuracy", "sensitivity", "specificity", "threshold"):
        assert k in last
    assert last["n"] == 30
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["path", "label", "score"] and len(scores) == 30
    # The custom-manifest scores agree with the bundled test predictions for the same images.
    preds = pd.read_csv(model_dir("malaria", default_model("malaria")) / "test_predictions.csv").set_index("path")
    np.testing.assert_allclose(scores.score.to_numpy(), preds.score[sub.path].to_numpy(), atol=SCORE_TOLERANCE)


def test_evaluate_writes_records_only_when_asked(monkeypatch):
    """A look at the own test split must not rewrite test_predictions.csv or the card; --update-records does."""
    from core import evaluate
    from core.cards import records

    frame = pd.DataFrame({"file": ["a.png", "b.png"], "path": ["a.png", "b.png"], "label": ["x", "y"],
                          "y": [0, 1], "split": ["test", "test"]})
    writes: list[str] = []
    monkeypatch.setattr(records, "load_task_manifest", lambda task: frame)
    monkeypatch.setattr(records, "evaluate_frame", lambda task, mid, df, threshold=None: (np.array([0.2, 0.8]), {"n": 2}))

    def bundled(task, mid, update_card=False):
        writes.append(mid)
        return {"n": 2}

    monkeypatch.setattr(records, "evaluate_bundled", bundled)
    monkeypatch.setattr(evaluate, "evaluate_split", records.evaluate_split)
    monkeypatch.setattr(records, "model_dir", lambda task, mid: Path("/nonexistent"))
    assert evaluate.main(["--task", "effusion", "--model", "m1"]) == 0
    assert writes == []
    with pytest.raises(FileNotFoundError):  # the write path reads back the predictions it wrote (here: nowhere)
        evaluate.main(["--task", "effusion", "--model", "m2", "--update-records"])
    assert writes == ["m2"]


def test_train_smoke_run(tmp_path):
    require_dataset("effusion")
    out = tmp_path / "m"
    r = run("core.train", "--task", "effusion", "--model", "seed_lenet", "--limit", "200", "--epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["epochs_run"] == 1 and card["data"]["n_train"] == 200
    assert (out / "model.keras").is_file() and (out / "val_predictions.csv").is_file()
    assert 0 <= card["threshold"] <= 1
    # shown probabilities are calibrated on validation, or the card says why not (a 1-epoch model may rank backwards)
    assert card["calibration"]["a"] > 0 if card["calibration"] else card["calibration_check"]["not_fitted"]


def test_secondlook_script_runs_the_same_commands(capsys):
    from core.cli import VERBS, main
    from core.cards.report import evaluation_tables

    assert main(["report"]) == 0
    assert capsys.readouterr().out.strip() == "\n\n".join(evaluation_tables()).strip()
    assert main(["no-such-verb"]) == 2
    assert "verbs: " + ", ".join(VERBS) in capsys.readouterr().err
    for verb, module in VERBS.items():  # every verb is a command module with a main()
        assert callable(__import__(module, fromlist=["main"]).main), verb
