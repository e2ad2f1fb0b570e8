"""Every bundled model: complete card, intact file, size limits, and its card reproduced by re-evaluation.

CI re-scores every model on its task's test split and fails if any metric moved by more than 1e-4 or
the SecondLook model misses the product's bars.
"""
from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest

from core.config import MODELS_DIR
from core.data import load_task_manifest
from core.evaluation import metrics
from core.cards.records import DEGENERATE_MAX_ONE_CLASS, evaluate_frame
from core.registry import TASKS
from core.models.selection import default_model
from core.models.store import load_model, model_dir, model_path, read_card, sha256_file
from tests.conftest import SCORE_TOLERANCE, bar_param, require_dataset

ALL = [(t.name, m.id) for t in TASKS.values() for m in t.models]

# Bars on the test split at the validation-chosen threshold, for the task's SecondLook model.
BARS = {
    "pneumonia": {"auc": 0.965, "sensitivity": 0.95, "accuracy": 0.90},
    "malaria": {"auc": 0.99, "accuracy": 0.965},
    "effusion": {"auc": 0.88},
}
CARD_KEYS = {"task", "model_id", "architecture", "parameters", "input", "preprocessing", "training", "data",
             "threshold", "threshold_rule", "validation", "test", "sha256"}


@pytest.mark.parametrize("task,model_id", ALL)
def test_bundle_is_complete(task, model_id):
    d = model_dir(task, model_id)
    for f in ("model.keras", "card.json", "val_predictions.csv", "test_predictions.csv"):
        assert (d / f).is_file(), f"{d / f} missing: train it with python -m core.train --task {task} --model {model_id}"
    card = read_card(task, model_id)
    assert CARD_KEYS <= set(card), CARD_KEYS - set(card)
    assert card["sha256"] == sha256_file(model_path(task, model_id))
    assert model_path(task, model_id).stat().st_size < 10 * 2**20
    with zipfile.ZipFile(model_path(task, model_id)) as z:
        groups = set(h5py.File(io.BytesIO(z.read("model.weights.h5"))).keys())
    assert "optimizer" not in groups, "optimizer state bundled: re-save with python -m core.models.store task/model_id"
    from core.inference.guard import OOD_FILE, FeatureOOD

    _, info = FeatureOOD.load(d / OOD_FILE)
    assert info.get("model_sha256") == card["sha256"], f"{OOD_FILE} is stale: python -m core.guard fit-ood --task {task} --model {model_id}"
    assert card["training"]["limit"] == 0, "bundled models are trained on the full training split"
    assert card["threshold_chosen_on"].startswith("validation")


def test_models_folder_under_128_mb():
    """A checkout stays small and nothing large slips in (optimizer state, a dataset). Raised from 60 MB when fold
    weights began to be committed (a fold ensemble needs all k of them, and uncommitted ones were once lost with a
    machine), and from 100 MB when malaria's three candidates each kept their three folds (the site check re-scores
    cells with them) and the field-trained cell model came: each fold of a recipe is about one bundled model."""
    total = sum(p.stat().st_size for p in MODELS_DIR.rglob("*") if p.is_file())
    assert total < 128 * 2**20, f"models/ holds {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_at_least_three_models_per_task(task):
    assert sum(model_path(task, m.id).is_file() for m in TASKS[task].models) >= 3


@pytest.mark.parametrize("task,model_id", ALL)
def test_threshold_is_reproduced_from_validation_predictions(task, model_id):
    card = read_card(task, model_id)
    val = pd.read_csv(model_dir(task, model_id) / "val_predictions.csv")
    y = (val.label == TASKS[task].positive).to_numpy()
    assert metrics.choose_threshold(card["threshold_rule"], y, val.score.to_numpy()) == pytest.approx(card["threshold"], abs=1e-12)
    assert len(val) == card["data"]["n_val"]


@pytest.mark.parametrize("task,model_id", ALL)
def test_card_reproduced_on_test_split(task, model_id):
    """Re-score the test images from scratch and compare every headline number with the card."""
    require_dataset(task)
    card = read_card(task, model_id)
    df = load_task_manifest(task)
    test = df[df.split == "test"].reset_index(drop=True)
    scores, summ = evaluate_frame(task, model_id, test, model=load_model(task, model_id))
    for k in ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1"):
        assert abs(summ[k] - card["test"][k]) <= 1e-4, (k, summ[k], card["test"][k])
    for k in ("tp", "fp", "fn", "tn", "n"):
        assert summ[k] == card["test"][k], k
    saved = pd.read_csv(model_dir(task, model_id) / "test_predictions.csv")
    assert saved.path.tolist() == test.path.tolist()
    np.testing.assert_allclose(saved.score.to_numpy(), scores, atol=SCORE_TOLERANCE)
    share_pos = float(np.mean(scores >= card["threshold"]))
    assert max(share_pos, 1 - share_pos) < DEGENERATE_MAX_ONE_CLASS, "degenerate: nearly all one class"
    assert summ["auc"] >= 0.6, "degenerate: AUC below 0.6"


@pytest.mark.parametrize("task,model_id", ALL)
def test_fast_inference_path_agrees_with_keras_on_real_images(task, model_id):
    """Scores come from a traced graph with BatchNorm folded (core.models.fold); it must be the trained model's function."""
    require_dataset(task)
    from core.data import load_arrays
    from core.inference.forward import predict_tensors
    from core.registry import get_model_spec

    df = load_task_manifest(task)
    files = df[df.split == "test"].file.tolist()[::max(1, len(df[df.split == "test"]) // 48)][:48]
    x = load_arrays(files, get_model_spec(task, model_id).input)
    model = load_model(task, model_id)
    eager = np.asarray(model(x, training=False), dtype=np.float64).reshape(-1)
    np.testing.assert_allclose(predict_tensors(model, x), eager, rtol=0, atol=2e-6)


# Bars the bundled SecondLook models do not reach yet, as measured (see docs/evaluation.md, "Against the product's
# bars"). Strict: the day a retrained model clears one, this test fails until the entry is removed, so the list
# cannot go stale.
KNOWN_MISSES = {
    ("pneumonia", "accuracy"): "test accuracy 0.875 vs bar 0.90 for secondlook_cnn_folds: specificity 0.675 at the "
                               "threshold that keeps out-of-fold sensitivity >= 0.97 (test sensitivity 0.995)",
}


@pytest.mark.parametrize("task,metric,bar", [bar_param(task, metric, bar, id=f"{task}-{metric}", miss=KNOWN_MISSES.get((task, metric)))
                                              for task, bars in sorted(BARS.items()) for metric, bar in bars.items()])
def test_secondlook_model_meets_bars(task, metric, bar):
    """The task's default (core.models.selection: by CV once complete) against the product's bars on test."""
    card = read_card(task, default_model(task))
    assert card["test"][metric] >= bar, f"{task}: test {metric} {card['test'][metric]:.4f} < {bar}"


def test_effusion_reports_the_known_patient_subset():
    card = read_card("effusion", default_model("effusion"))
    sub = card["test_patient_id_known"]
    assert sub["n"] == 28 and 0 <= sub["auc"] <= 1


def test_evaluation_results_table_matches_the_cards():
    """docs/evaluation.md's Results table is core.report's rendering of the bundled cards (regenerate it, never hand-edit)."""
    from core.config import REPO_ROOT
    from core.cards.report import results_table

    assert results_table() in (REPO_ROOT / "docs" / "evaluation.md").read_text(), \
        "docs/evaluation.md results are stale: python -m core.report --write"
