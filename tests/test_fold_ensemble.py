"""Fold ensembles: a complete CV's fold models put together, calibrated and thresholded on their out-of-fold scores."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from core.evaluation import calibration, metrics
from core.training import cv, fold_ensemble
from core.registry import ModelSpec, get_model_spec, get_task
from core.models.selection import RULE_CV, RULE_CV_FOLDS, candidates, choose
from core.models.store import read_card, read_predictions, write_card, write_predictions
from tests.modelgen import tiny_model

TASK, RECIPE, K = "effusion", "seed_lenet", 3  # seed_lenet: 64x64x1, [0, 1] input


def _spec(k: int = K) -> ModelSpec:
    r = get_model_spec(TASK, RECIPE)
    return replace(r, id=f"{RECIPE}_folds", title="test fold ensemble", baseline=False, members=k, fold_ensemble_of=RECIPE)


@pytest.fixture()
def cv_run(tmp_path):
    """A complete 3-fold CV on disk as train_fold leaves it: fold records, out-of-fold scores, fold weights."""
    from core.inference.forward import score_sources

    rng = np.random.default_rng(0)
    spec = get_model_spec(TASK, RECIPE).input
    d = cv.cv_dir(TASK, RECIPE, tmp_path)
    d.mkdir(parents=True)
    write_card(TASK, RECIPE, {"task": TASK, "model_id": RECIPE, "parameters": 10, "threshold": 0.5}, tmp_path)
    files, members = {}, []
    for f in range(K):
        member = tiny_model((64, 64, 1), seed=f)
        members.append(member)
        paths = []
        for i in range(40):
            p = tmp_path / "img" / f"f{f}_{i}.png"
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8) // (1 + i % 4)).save(p)
            paths.append(p.name)
            files[p.name] = str(p)
        raw = score_sources(member, spec, [files[p] for p in paths])
        y = (raw + rng.normal(0, 0.3 * raw.std(), raw.size)) > np.median(raw)  # informative labels, not perfect
        write_predictions(d / f"fold{f}_oof.csv", paths, ["EFFUSION" if v else "NORMAL" for v in y], raw)
        member.save(d / f"fold{f}.keras")
        (d / f"fold{f}.json").write_text(json.dumps({
            "fold": f, "folds": K, "cv_seed": 1, "seed": 42, "grouped_by": "split_group", "limit": 0, "n_val": 40,
            "val_auc": metrics.roc_auc(y, raw), "wall_time_seconds": 5.0, "epochs_run": [3], "best_epoch": [2]}))
    return tmp_path, files, members


def test_members_are_the_fold_models_and_a_swap_is_caught(cv_run):
    root, files, _ = cv_run
    members = fold_ensemble.load_members(TASK, RECIPE, K, root)
    oof = cv.pooled_oof(TASK, RECIPE, root)
    assert len(oof) == 3 * 40 and sorted(oof["fold"].unique()) == [0, 1, 2]
    spec = get_model_spec(TASK, RECIPE).input
    assert fold_ensemble.check_members(members, spec, oof, files) <= 1e-6
    with pytest.raises(fold_ensemble.FoldEnsembleError, match="do not reproduce"):
        fold_ensemble.check_members([members[1], members[0], members[2]], spec, oof, files)


def test_an_incomplete_cv_or_lost_weights_cannot_be_shipped(cv_run):
    root, _, _ = cv_run
    d = cv.cv_dir(TASK, RECIPE, root)
    (d / "fold2.keras").unlink()
    with pytest.raises(fold_ensemble.FoldEnsembleError, match=r"fold2.keras.*retrain"):
        fold_ensemble.load_members(TASK, RECIPE, K, root)
    (d / "fold2.json").unlink()
    with pytest.raises(fold_ensemble.FoldEnsembleError, match="complete 3-fold CV"):
        fold_ensemble.load_members(TASK, RECIPE, K, root)


def test_record_calibrates_and_thresholds_on_the_out_of_fold_scores(cv_run):
    import keras

    from core.inference.forward import score_sources
    from core.models.store import model_path, sha256_file

    root, files, members = cv_run
    oof = cv.pooled_oof(TASK, RECIPE, root)
    card = fold_ensemble.record(TASK, _spec(), fold_ensemble.load_members(TASK, RECIPE, K, root), oof, root)
    assert read_card(TASK, _spec().id, root)["threshold"] == card["threshold"]
    cal = card["calibration"]
    assert cal["fitted_on"] == calibration.OUT_OF_FOLD and cal["n"] == len(oof)
    ref, check = calibration.choose_map(oof["y"], oof["raw"], oof["fold"])
    assert cal == pytest.approx(ref) and cal["chosen_by"] == calibration.CHOSEN_BY
    loss = {m: check["raw" if m == "none" else m]["log_loss"] for m in calibration.MAPS}
    assert loss[cal["method"]] == min(loss.values())
    val = read_predictions(TASK, _spec().id, "val", root)
    assert val["path"].tolist() == oof["path"].tolist() and len(val) == card["data"]["n_val"]
    assert metrics.choose_threshold(get_task(TASK).threshold_rule, val["y"], val["score"]) == pytest.approx(card["threshold"], abs=1e-12)
    assert card["validation"]["auc"] == pytest.approx(metrics.roc_auc(oof["y"], oof["raw"]), abs=1e-12)  # monotone map
    assert card["members_cv"]["fold_auc"] == [json.loads((cv.cv_dir(TASK, RECIPE, root) / f"fold{f}.json").read_text())["val_auc"] for f in range(K)]
    path = model_path(TASK, _spec().id, root)
    assert card["sha256"] == sha256_file(path)
    shipped = keras.saving.load_model(path, safe_mode=True, compile=False)
    some = [files[p] for p in oof["path"][::17]]
    spec = get_model_spec(TASK, RECIPE).input
    z = np.mean([calibration.logit(score_sources(m, spec, some)) for m in members], axis=0)
    np.testing.assert_allclose(calibration.logit(score_sources(shipped, spec, some)), z, atol=1e-5)  # logits averaged


def test_the_chosen_recipe_ships_as_its_fold_ensemble_when_bundled(tmp_path):
    from tests.test_cv import _fake_folds

    base = get_task(TASK)
    ours = candidates(base)
    task = replace(base, models=(*base.models, replace(_spec(5), fold_ensemble_of=ours[0], id=f"{ours[0]}_folds")))
    assert candidates(task) == ours  # a fold ensemble is not a candidate of its own
    for i, m in enumerate(ours):
        _fake_folds(tmp_path, TASK, m, 5, 0.5 if i == 0 else 4.0, params=1000)  # ours[0]: the best CV mean
        cv.aggregate_cv(TASK, m, tmp_path)
    card_of = lambda m: read_card(TASK, m, tmp_path)  # noqa: E731
    assert choose(task, card_of).model_id == ours[0] and choose(task, card_of).rule == RULE_CV  # not bundled yet
    write_card(TASK, f"{ours[0]}_folds", {"threshold": 0.4, "parameters": 5000}, tmp_path)
    c = choose(task, card_of)
    assert c.model_id == f"{ours[0]}_folds" and c.rule == RULE_CV_FOLDS and ours[0] in c.note
    other_k = replace(base, models=(*base.models, replace(_spec(3), fold_ensemble_of=ours[0], id=f"{ours[0]}_folds")))
    assert choose(other_k, card_of).model_id == ours[0]  # a 3-fold ensemble of a 5-fold CV is not its fold models
