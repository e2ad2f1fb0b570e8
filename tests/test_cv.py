"""Patient-grouped cross-validation: the folds, the fold records, the card's cv block and the default-model rule."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.data import grouped_kfold, load_task_manifest, patient_column
from core.evaluation import metrics
from core.training import cv
from core.registry import TASKS, get_model_spec, get_task
from core.models.selection import RULE_CV, RULE_VALIDATION, candidates, choose, cv_summary, one_se_choice
from core.training.site_check import SITE_CHECK, SITE_CSV, seen_in_training, site_scores
from core.models.store import write_card, write_predictions
from tests.conftest import require_dataset


def _frame(n_pat: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_pat):
        infected = p % 3 != 0
        for i in range(int(rng.integers(1, 30))):
            y = int(infected and rng.random() < 0.6)
            rows.append({"path": f"P{p}_{i}.jpg", "label": "Parasitized" if y else "Uninfected", "patient_id": f"P{p}", "y": y,
                         "split": "train"})
    return pd.DataFrame(rows)


def _check_folds(df: pd.DataFrame, fold: np.ndarray, k: int, col: str) -> None:
    assert set(fold) == set(range(k))
    assert (df.groupby(df[col].astype(str))["y"].size() > 0).all()
    per_patient = pd.Series(fold).groupby(df[col].astype(str).to_numpy()).nunique()
    assert (per_patient == 1).all(), "a patient straddles folds"
    has = df.groupby(df[col].astype(str))["y"].max()
    for f in range(k):  # every fold has patients of both strata
        pats = set(df[col].astype(str)[fold == f])
        assert has[list(pats)].max() == 1 and has[list(pats)].min() == 0


@pytest.mark.parametrize("k", [3, 5])
def test_grouped_kfold_keeps_patients_whole_and_is_deterministic(k):
    df = _frame()
    task = get_task("malaria")
    fold = grouped_kfold(df, task, k, seed=1)
    _check_folds(df, fold, k, "patient_id")
    assert (grouped_kfold(df, task, k, seed=1) == fold).all()
    shuffled = df.sample(frac=1, random_state=0)
    np.testing.assert_array_equal(grouped_kfold(shuffled, task, k, seed=1), pd.Series(fold, index=df.index)[shuffled.index])
    assert not (grouped_kfold(df, task, k, seed=2) == fold).all()
    sizes = np.bincount(fold, minlength=k)
    assert sizes.max() - sizes.min() <= 35  # balanced to within about one large patient


def test_grouped_kfold_refuses_what_it_cannot_do():
    task = get_task("malaria")
    with pytest.raises(ValueError, match="k >= 2"):
        grouped_kfold(_frame(), task, 1)
    with pytest.raises(ValueError, match="cannot fill"):
        grouped_kfold(_frame(3), task, 5)
    with pytest.raises(ValueError, match="patient column"):
        grouped_kfold(_frame().drop(columns="patient_id"), task, 3)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_real_folds_use_the_patient_column(task):
    require_dataset(task)
    t = get_task(task)
    train = load_task_manifest(task).query("split == 'train'").reset_index(drop=True)
    fold = grouped_kfold(train, t, 5)
    _check_folds(train, fold, 5, patient_column(t))
    tr, va = cv.fold_frames(task, 2, 5)
    assert len(tr) + len(va) == len(train)
    assert not set(tr[patient_column(t)]) & set(va[patient_column(t)])
    assert (va["split"] == "train").all()  # test is never in a fold


def _fake_folds(root, task: str, model_id: str, k: int, aucs_from_noise: float, folds=None, params: int = 1000) -> None:
    """Fold records as train_fold writes them, with synthetic out-of-fold scores (no training)."""
    rng = np.random.default_rng(int(aucs_from_noise * 1000))
    write_card(task, model_id, {"task": task, "model_id": model_id, "parameters": params, "threshold": 0.5,
                                "validation": {"auc": 0.9}}, root)
    d = cv.cv_dir(task, model_id, root)
    d.mkdir(parents=True, exist_ok=True)
    pos = get_task(task).positive
    for f in (range(k) if folds is None else folds):
        y = rng.random(200) < 0.5
        s = 1 / (1 + np.exp(-((2 * y - 1) * 1.5 + rng.normal(0, aucs_from_noise, y.size))))
        paths = [f"f{f}_{i}.png" for i in range(y.size)]
        write_predictions(d / f"fold{f}_oof.csv", paths, [pos if v else "NORMAL" for v in y], s)
        rec = {"fold": f, "folds": k, "cv_seed": 1, "grouped_by": "split_group", "limit": 0, "val_auc": metrics.roc_auc(y, s),
               "wall_time_seconds": 10.0, "epochs_run": [5]}
        (d / f"fold{f}.json").write_text(json.dumps(rec))


def test_cv_block_summarises_every_fold(tmp_path):
    _fake_folds(tmp_path, "effusion", "secondlook_cnn", 5, 1.0)
    block = cv.aggregate_cv("effusion", "secondlook_cnn", tmp_path)
    recs = cv.read_folds("effusion", "secondlook_cnn", tmp_path)
    aucs = np.array([r["val_auc"] for r in recs])
    assert block["complete"] and block["k"] == 5 and block["fold_auc"] == aucs.tolist()
    assert block["mean_auc"] == pytest.approx(aucs.mean()) and block["sd_auc"] == pytest.approx(aucs.std(ddof=1))
    assert block["se_auc"] == pytest.approx(aucs.std(ddof=1) / np.sqrt(5))
    oof = pd.concat([pd.read_csv(cv.cv_dir("effusion", "secondlook_cnn", tmp_path) / f"fold{f}_oof.csv") for f in range(5)])
    assert block["pooled_oof_auc"] == pytest.approx(metrics.roc_auc(oof.label == "EFFUSION", oof.score))
    from core.models.store import read_card

    assert read_card("effusion", "secondlook_cnn", tmp_path)["cv"] == block


def test_incomplete_cv_is_marked(tmp_path):
    _fake_folds(tmp_path, "effusion", "secondlook_cnn", 5, 1.0, folds=[0, 2])
    block = cv.cv_block("effusion", "secondlook_cnn", tmp_path)
    assert not block["complete"] and block["folds_done"] == [0, 2]
    assert cv_summary({"cv": block}) == "2 of 5 folds done"


def test_cv_summary_reads_a_fold_ensemble_members_cv():
    block = {"complete": True, "k": 3, "mean_auc": 0.85914, "sd_auc": 0.00436, "folds_done": [0, 1, 2]}
    assert cv_summary({"cv": block}) == cv_summary({"members_cv": block}) == "0.859 ± 0.004 (3-fold)"
    assert cv_summary({}) == "—"
    tight = {**block, "mean_auc": 0.99822, "sd_auc": 0.00029}  # pneumonia: a spread that 3 decimals would print as 0
    assert cv_summary({"cv": tight}) == "0.9982 ± 0.0003 (3-fold)"


def test_one_se_rule_prefers_the_smaller_model_when_close():
    cvs = {"big": {"mean_auc": 0.900, "se_auc": 0.010}, "small": {"mean_auc": 0.893, "se_auc": 0.012},
           "weak": {"mean_auc": 0.850, "se_auc": 0.010}}
    params = {"big": 1_000_000, "small": 100_000, "weak": 10}
    assert one_se_choice(cvs, params, ["big", "small", "weak"]) == "small"
    cvs["small"]["mean_auc"] = 0.880  # more than one SE below the best
    assert one_se_choice(cvs, params, ["big", "small", "weak"]) == "big"


def test_equal_size_ties_go_to_the_candidate_that_holds_on_the_second_site():
    """malaria: three recipes of one architecture, within a few thousandths in CV; registry order must not decide."""
    cvs = {"nih": {"mean_auc": 0.9930, "se_auc": 0.0010}, "long": {"mean_auc": 0.9934, "se_auc": 0.0006},
           "twosite": {"mean_auc": 0.9929, "se_auc": 0.0008}}
    params = dict.fromkeys(cvs, 421_897)
    order = list(cvs)
    assert one_se_choice(cvs, params, order) == "nih"  # without a second site: the earlier entry
    assert one_se_choice(cvs, params, order, {"nih": 0.70, "long": 0.72, "twosite": 0.90}) == "twosite"
    cvs["twosite"]["mean_auc"] = 0.9920  # more than one SE below the best: travelling well does not rescue it
    assert one_se_choice(cvs, params, order, {"nih": 0.70, "long": 0.72, "twosite": 0.90}) == "long"
    params["nih"] = 100_000  # a smaller model still wins before the second site is asked
    assert one_se_choice(cvs, params, order, {"nih": 0.70, "long": 0.72, "twosite": 0.90}) == "nih"


def test_site_scores_are_rates_at_the_threshold():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.4, 0.3, 0.2, 0.1, 0.05])
    r = site_scores(y, s, 0.5)
    assert (r["n"], r["n_positive"]) == (10, 4)
    assert r["sensitivity"] == pytest.approx(0.75) and r["specificity"] == pytest.approx(5 / 6)
    assert r["balanced_accuracy"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert r["auc"] == pytest.approx(metrics.roc_auc(y, s))


@pytest.mark.parametrize("model_id", candidates(get_task("malaria")))
def test_bundled_second_site_checks_are_their_cells_scores(model_id):
    """The malaria tie-break's figures are what the stored per-cell scores give, and those scores are the fold models'
    (a few cells re-scored); every candidate with a complete CV has one."""
    from core.training.fold_ensemble import load_members, operating_point
    from core.models.store import read_card

    card, block = read_card("malaria", model_id), cv.cv_block("malaria", model_id)
    if not (block and block["complete"]):
        assert SITE_CHECK not in card
        return
    check = card[SITE_CHECK]
    cells = pd.read_csv(cv.cv_dir("malaria", model_id) / SITE_CSV)
    again = site_scores(cells["infected"], cells["score"], check["threshold"])
    assert {k: check[k] for k in again} == pytest.approx(again, abs=1e-12)
    assert check["n_fields"] == cells["path"].nunique() and set(cells["session"]) == set(check["sessions"])
    assert check["seen_in_training"] == seen_in_training(get_model_spec("malaria", model_id))
    assert ("optimistic" in check["seen_in_training"]) == bool(get_model_spec("malaria", model_id).train.second_site)
    cal, _, threshold, _ = operating_point("malaria", cv.pooled_oof("malaria", model_id))
    assert check["threshold"] == pytest.approx(threshold, abs=1e-12)
    require_dataset("malaria_fields")
    from core.fields import cuts as fc
    from core.io.images import read_image
    from core.inference.calibrate import apply_calibration
    from core.inference.forward import predict_tensors
    from core.inference.preprocess import prepare
    from core.models.networks import ensemble

    rows = cells.iloc[np.r_[np.flatnonzero(cells["infected"] == 1)[:4], np.flatnonzero(cells["infected"] == 0)[:4]]]
    root = fc.task_data_dir(fc.FIELDS)
    crops = [fc.cut_cells(read_image(root / r.path), np.array([[r.x, r.y, r.w, r.h]]), 64)[0] for r in rows.itertuples()]
    x = np.stack([prepare(c, get_model_spec("malaria", model_id).input) for c in crops])
    model = ensemble(load_members("malaria", model_id, block["k"], block=block), "check")
    assert np.abs(apply_calibration(predict_tensors(model, x), cal) - rows["score"].to_numpy()).max() <= 1e-6


def test_default_falls_back_to_validation_until_every_candidate_has_cv(tmp_path):
    task = get_task("effusion")
    ours = candidates(task)
    for i, m in enumerate(ours[:-1]):
        _fake_folds(tmp_path, "effusion", m, 5, 0.5 + 0.5 * i, params=1000 * (i + 1))
    from core.models.store import read_card

    write_card("effusion", ours[-1], {"parameters": 10, "validation": {"auc": 0.99}}, tmp_path)
    for m in ours[:-1]:
        cv.aggregate_cv("effusion", m, tmp_path)
    card_of = lambda m: read_card("effusion", m, tmp_path)  # noqa: E731
    c = choose(task, card_of)
    assert c.rule == RULE_VALIDATION and c.model_id == ours[-1] and ours[-1] in c.note
    _fake_folds(tmp_path, "effusion", ours[-1], 5, 9.0, params=10)  # noisy: the worst CV mean
    cv.aggregate_cv("effusion", ours[-1], tmp_path)
    c = choose(task, card_of)
    assert c.rule == RULE_CV
    means = {m: card_of(m)["cv"]["mean_auc"] for m in ours}
    assert means[c.model_id] >= max(means.values()) - card_of(max(means, key=means.get))["cv"]["se_auc"] - 1e-12
    assert c.model_id != ours[-1]


def test_models_bundled_for_comparison_only_are_never_the_default():
    for task in TASKS.values():
        out = [m for m in task.models if m.not_a_candidate]
        assert all(not m.baseline and len(m.not_a_candidate) > 40 for m in out)  # a SecondLook model, with its reason
        assert not {m.id for m in out} & set(candidates(task))
    assert [m.id for m in get_task("effusion").models if m.not_a_candidate] == ["secondlook_ensemble"]


def test_fold_smoke_run_writes_records_and_its_weights(tmp_path):
    require_dataset("effusion")
    from tests.test_cli import run

    out = tmp_path / "cv"
    r = run("core.train", "--task", "effusion", "--model", "seed_lenet", "--fold", "1", "--folds", "3", "--limit", "120",
            "--epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((out / "fold1.json").read_text())
    assert rec["fold"] == 1 and rec["folds"] == 3 and rec["epochs_run"] == [1] and rec["limit"] == 120
    assert 0 <= rec["val_auc"] <= 1 and rec["grouped_by"] == "split_group"
    oof = pd.read_csv(out / "fold1_oof.csv")
    assert list(oof.columns) == ["path", "label", "score"] and len(oof) == rec["n_val"]
    _, va = cv.fold_frames("effusion", 1, 3)
    assert set(oof.path) <= set(va.path)  # every out-of-fold image is from the held-out fold
    import keras

    from core.data import load_task_manifest
    from core.inference.forward import score_sources
    from core.registry import get_model_spec

    fold_model = keras.models.load_model(out / "fold1.keras", compile=False, safe_mode=True)
    files = load_task_manifest("effusion").set_index("path").loc[oof.path[:16], "file"].tolist()
    again = score_sources(fold_model, get_model_spec("effusion", "seed_lenet").input, files)
    assert np.abs(again - oof.score[:16].to_numpy()).max() <= 1e-6  # the kept weights are the fold's model
    assert run("core.train", "--task", "effusion", "--model", "seed_lenet", "--fold", "3", "--folds", "3").returncode != 0


@pytest.mark.parametrize("task,model_id", [(t.name, m.id) for t in TASKS.values() for m in t.models])
def test_bundled_cv_blocks_are_the_fold_records(task, model_id):
    """A card's cv block is exactly what its committed fold records give; out-of-fold images are train images."""
    from core.models.store import read_card

    card = read_card(task, model_id)
    if not cv.read_folds(task, model_id):
        assert "cv" not in card
        return
    block = cv.cv_block(task, model_id)
    assert card["cv"] == block
    require_dataset(task)
    train_paths = set(load_task_manifest(task).query("split == 'train'")["path"])
    for r in cv.read_folds(task, model_id):
        oof = pd.read_csv(cv.cv_dir(task, model_id) / f"fold{r['fold']}_oof.csv")
        assert set(oof["path"]) <= train_paths and len(oof) == r["n_val"]
        assert r["val_auc"] == pytest.approx(metrics.roc_auc(oof["label"] == get_task(task).positive, oof["score"]), abs=1e-9)


def test_a_fine_tuning_recipe_starts_each_fold_from_its_sources_same_fold(tmp_path, monkeypatch):
    """malaria/secondlook_twosite fine-tunes secondlook_long: in CV, from long's model of the same fold (which never
    saw the fold's patients), never from the bundled long model (trained on all of train)."""
    import keras

    from core.models.networks import build
    from core.registry import get_model_spec

    assert get_model_spec("malaria", "secondlook_twosite").train.init_from == "secondlook_long"
    monkeypatch.setattr(cv, "cv_dir", lambda task, model_id, root=None: tmp_path / model_id)
    with pytest.raises(FileNotFoundError, match="fine-tunes secondlook_long's fold 1; train it first"):
        cv.fold_init("malaria", "secondlook_long", 1, 3)
    (tmp_path / "secondlook_long").mkdir()
    keras.utils.set_random_seed(5)
    source = build(get_model_spec("malaria", "secondlook_long"))
    source.save(tmp_path / "secondlook_long" / "fold1.keras")
    rec = {"fold": 1, "folds": 3, "cv_seed": cv.CV_SEED, "limit": 0}
    (tmp_path / "secondlook_long" / "fold1.json").write_text(json.dumps(rec))
    got = cv.fold_init("malaria", "secondlook_long", 1, 3)
    for a, b in zip(got.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError):  # a fold of another k is not this fold
        cv.fold_init("malaria", "secondlook_long", 1, 5)
