"""Site profiles: pure local validation, the case readers' bad-input messages, the SQLite store, and the CLI."""
from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from core.config import REPO_ROOT
from core.evaluation import metrics
from core.site import build, cases, profiles, validate
from tests.imagegen import encode, gradient

SHA = "a" * 64


def _cell(seed: int, size: int = 64) -> np.ndarray:
    """A textured pink disc on black (a segmented red-cell crop), different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    disc = (y - size / 2) ** 2 + (x - size / 2) ** 2 < (size * 0.4) ** 2
    img = np.zeros((size, size, 3))
    img[disc] = (200 + rng.integers(-20, 20), 120 + rng.integers(-20, 20), 150)
    if seed % 2:  # a dark purple dot, like a parasite
        cy, cx = rng.integers(20, 44, 2)
        img[(y - cy) ** 2 + (x - cx) ** 2 < 25] = (90, 40, 120)
    img += rng.normal(0, 5, img.shape) * disc[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _scores(n_pos=60, n_neg=200, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(int)
    s = np.clip(np.r_[rng.beta(5, 2, n_pos), rng.beta(2, 5, n_neg)], 1e-4, 1 - 1e-4)
    return y, s


# ------------------------------------------------------------------------------------------------ validate

def test_report_has_every_metric_and_the_rule_threshold():
    y, s = _scores()
    rep = validate.evaluate_site(y, s, 0.5, "youden_min_sensitivity_0.95")
    assert rep["n"] == 260 and rep["n_positive"] == 60
    assert rep["proposed_threshold"] == metrics.choose_threshold("youden_min_sensitivity_0.95", y, s)
    assert rep["proposed"]["sensitivity"] >= 0.95
    for pt in (rep["current"], rep["proposed"]):
        for k in validate.RATE_KEYS:
            lo, hi = pt["ci"][k]
            assert lo <= pt[k] + 1e-9 and pt[k] <= hi + 1e-9, (k, lo, pt[k], hi)
    assert rep["current"]["ci_method"].startswith("image-level")
    assert rep["roc"]["fpr"][0] == 0 and rep["roc"]["tpr"][-1] == 1
    assert rep["recalibration"]["a"] > 0
    assert rep["calibration_after"]["ece"] <= rep["calibration"]["ece"] + 1e-9


def test_too_small_shows_intervals_and_recommends_no_change():
    y, s = _scores(n_pos=12, n_neg=200)
    rep = validate.evaluate_site(y, s, 0.5, "youden")
    assert rep["proposed_threshold"] is None and rep["proposed"] is None and rep["recalibration"] is None
    assert "12 positive" in rep["too_small"] and "20" in rep["too_small"]
    assert rep["current"]["ci"]["sensitivity"][1] - rep["current"]["ci"]["sensitivity"][0] > 0.2
    p = build.make_profile("tiny", "malaria", "secondlook_cnn", SHA, 0.5, rep)
    assert p.threshold == 0.5 and not p.changes_threshold and p.calibration is None


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="same label"):
        validate.evaluate_site(np.ones(30), np.linspace(0, 1, 30), 0.5, "youden")


def test_cluster_bootstrap_is_wider_than_images_when_patients_are_correlated():
    """20 patients x 10 images, each patient's images nearly identical: patient-level intervals must be wider."""
    rng = np.random.default_rng(1)
    y = np.repeat(rng.integers(0, 2, 20), 10)
    base = np.repeat(rng.random(20), 10)
    s = np.clip(np.where(y == 1, 0.3 + 0.7 * base, 0.7 * base) + rng.normal(0, 0.01, 200), 0, 1)
    groups = np.repeat([f"p{i}" for i in range(20)], 10)
    img, how_i = validate.intervals(y, s, 0.5)
    pat, how_p = validate.intervals(y, s, 0.5, groups)
    assert "patient-level" in how_p and "20 patients" in how_p and how_i.startswith("image-level")
    width = lambda ci: ci["sensitivity"][1] - ci["sensitivity"][0]  # noqa: E731
    assert width(pat) > 1.5 * width(img)


def test_cluster_bootstrap_matches_a_slow_reference():
    y, s = _scores(30, 50, seed=3)
    groups = np.arange(80) // 4
    fast = validate.cluster_bootstrap_rates(y, s, 0.5, groups, n_boot=4000, seed=0)
    rng = np.random.default_rng(7)
    ids = np.unique(groups)
    vals = []
    for _ in range(4000):
        pick = np.concatenate([np.flatnonzero(groups == g) for g in rng.choice(ids, ids.size)])
        vals.append(metrics.metrics_at(y[pick], s[pick], 0.5)["sensitivity"])
    ref = np.quantile(vals, [0.025, 0.975])
    assert np.allclose(fast["sensitivity"], ref, atol=0.03), (fast["sensitivity"], ref)


def test_platt_recovers_a_known_miscalibration():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    s = 1 / (1 + np.exp(-(2 * z + 1)))  # over-confident and shifted: truth is sigmoid((logit(s) - 1) / 2)
    cal = validate.fit_platt(y, s)
    assert abs(cal["a"] - 0.5) < 0.03 and abs(cal["b"] + 0.5) < 0.05
    out = validate.apply_calibration(s, cal)
    assert metrics.roc_auc(y, out) == pytest.approx(metrics.roc_auc(y, s))  # monotone: ranking kept
    assert validate.apply_calibration(0.3, None) == 0.3


# ------------------------------------------------------------------------------------------------ cases

def _write(tmp_path, rows, header="path,label", n=24):
    for i in range(n):
        (tmp_path / f"c{i}.png").write_bytes(encode(_cell(i), "PNG"))
    (tmp_path / "m.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def test_manifest_reads_labels_patients_and_relative_paths(tmp_path):
    rows = [f"c{i}.png,{'Parasitized' if i % 2 else 'uninfected'},p{i // 3}" for i in range(24)]
    c = cases.from_manifest(_write(tmp_path, rows, "path,label,patient_id"), "malaria")
    assert len(c) == 24 and c.y.tolist() == [i % 2 for i in range(24)] and c.groups[:4] == ["p0", "p0", "p0", "p1"]
    assert c.pixels[0].shape == (64, 64, 3)


@pytest.mark.parametrize("rows, expect", [
    (["c0.png,Parasitized", "c1.png,maybe"], "row 3 ('c1.png'): unknown label 'maybe'"),
    (["c0.png,Parasitized", "nope.png,Uninfected"], "row 3: file 'nope.png' not found"),
    (["c0.png,Parasitized", "c1.png,Uninfected", "c0.png,Uninfected"], "row 4: 'c0.png' is a duplicate of row 2"),
    (["c0.png,1", "c1.png,1"], "all 2 cases are labelled Parasitized"),
])
def test_bad_manifests_name_the_row_or_file(tmp_path, rows, expect):
    with pytest.raises(cases.SiteInputError) as e:
        cases.from_manifest(_write(tmp_path, rows), "malaria")
    assert expect in str(e.value), str(e.value)


def test_identical_images_and_unreadable_files_are_named(tmp_path):
    m = _write(tmp_path, ["c0.png,1", "copy.png,0", "bad.png,0"])
    (tmp_path / "copy.png").write_bytes((tmp_path / "c0.png").read_bytes())
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(cases.SiteInputError) as e:
        cases.from_manifest(m, "malaria")
    msg = str(e.value)
    assert "'copy.png' is the same image as 'c0.png'" in msg and "'bad.png' could not be read" in msg


def test_missing_columns_and_partial_patient_ids(tmp_path):
    with pytest.raises(cases.SiteInputError, match="'path' .*'label'"):
        cases.from_uploads({}, b"name,y\na,1\n", "malaria")
    with pytest.raises(cases.SiteInputError, match="patient_id is empty on row"):
        cases.from_uploads({"a.png": encode(_cell(0), "PNG"), "b.png": encode(_cell(1), "PNG")},
                           b"path,label,patient_id\na.png,1,p1\nb.png,0,\n", "malaria")


def test_uploads_and_zip_in_memory():
    files = {f"dir/c{i}.png": encode(_cell(i), "PNG") for i in range(6)}
    csv = "path,label\n" + "".join(f"c{i}.png,{i % 2}\n" for i in range(6))
    c = cases.from_uploads(files, csv.encode(), "malaria")
    assert len(c) == 6 and c.groups is None
    with pytest.raises(cases.SiteInputError, match="image 'extra.png' is not in the labels CSV"):
        cases.from_uploads({**files, "extra.png": encode(_cell(9), "PNG")}, csv.encode(), "malaria")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("site/labels.csv", csv)
        for k, v in files.items():
            z.writestr("site/" + k.split("/")[-1], v)
    assert cases.from_zip(buf.getvalue(), "malaria").y.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(cases.SiteInputError, match="not a readable zip"):
        cases.from_zip(b"PK nonsense", "malaria")


def test_wrong_kind_of_image_is_a_bad_input_not_a_score():
    c = cases.SiteCases(["xray.png", "cell.png"], np.array([0, 1]), [gradient(64, 64), _cell(1)])
    with pytest.raises(cases.SiteInputError, match="'xray.png': not assessed"):
        build.score_cases(None, "malaria", "secondlook_cnn", c)


# ------------------------------------------------------------------------------------------------ profiles

def _profile(name="lab", thr=0.3, sha=SHA, model="secondlook_cnn"):
    y, s = _scores()
    rep = validate.evaluate_site(y, s, thr, "youden_min_sensitivity_0.95")
    return build.make_profile(name, "malaria", model, sha, thr, rep)


def test_store_roundtrip_get_and_default_path(tmp_path, monkeypatch):
    db = tmp_path / "s.sqlite"
    p = profiles.save(_profile(), db)
    got = profiles.get("lab", "malaria", "secondlook_cnn", db)
    assert got.threshold == p.threshold and got.calibration == p.calibration and got.metrics["n"] == 260
    assert profiles.get("lab", "malaria", db=db).model_id == "secondlook_cnn"  # the only one
    with pytest.raises(profiles.ProfileError, match="no site profile 'lab' for malaria/secondlook_long .*exists for secondlook_cnn"):
        profiles.get("lab", "malaria", "secondlook_long", db)
    monkeypatch.delenv("SECONDLOOK_SITES", raising=False)
    monkeypatch.setenv("SECONDLOOK_REVIEWS", str(tmp_path / "r" / "reviews.sqlite"))
    assert profiles.db_path() == tmp_path / "r" / "sites.sqlite"
    monkeypatch.setenv("SECONDLOOK_SITES", str(tmp_path / "elsewhere.sqlite"))
    assert profiles.db_path() == tmp_path / "elsewhere.sqlite"


def test_profile_is_refused_for_a_changed_model_file(tmp_path):
    p = profiles.save(_profile(), tmp_path / "s.sqlite")
    profiles.check_model(p, SHA)
    with pytest.raises(profiles.ProfileError, match="measured on malaria/secondlook_cnn with model file aaaaaaaaaaaa…, but the model file is now bbbbbbbbbbbb…. .*rebuild"):
        profiles.check_model(p, "b" * 64)


def test_export_import_and_nothing_half_saved(tmp_path):
    db = tmp_path / "s.sqlite"
    data = profiles.export_json(_profile())
    obj = json.loads(data)  # strict JSON: NaN became null
    assert obj["format"] == profiles.FORMAT
    with pytest.raises(profiles.ProfileError, match="model file is now bbbbbbbbbbbb"):
        profiles.import_json(data, db, sha256="b" * 64)
    assert profiles.list_profiles(db=db) == []  # refused -> nothing saved
    got = profiles.import_json(data, db, sha256=SHA)
    assert got.name == "lab" and len(profiles.list_profiles(db=db)) == 1
    with pytest.raises(profiles.ProfileError, match="already exists"):
        profiles.import_json(data, db, sha256=SHA)
    bad = dict(obj, threshold=7)
    with pytest.raises(profiles.ProfileError, match="threshold must be a probability"):
        profiles.import_json(json.dumps(bad), db, sha256=SHA)
    with pytest.raises(profiles.ProfileError, match="not valid JSON"):
        profiles.import_json(b"{", db)
    with pytest.raises(profiles.ProfileError, match="missing metrics"):
        profiles.import_json(json.dumps({k: v for k, v in obj.items() if k != "metrics"}), db, sha256=SHA)
    # a failed replace keeps the stored profile exactly as it was
    with sqlite3.connect(db) as con:
        before = con.execute("SELECT * FROM site_profiles").fetchall()
    broken = profiles.SiteProfile("lab", "malaria", "secondlook_cnn", SHA, 5, 7.0, 0.3, None, {})
    with pytest.raises(profiles.ProfileError):
        profiles.save(broken, db)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT * FROM site_profiles").fetchall() == before


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(profiles.ProfileError, match="unknown model 'nosuch'"):
        profiles.save(_profile(model="nosuch"), tmp_path / "s.sqlite")


# ------------------------------------------------------------------------------------------------ CLI

def _run(env_extra, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_cli_builds_a_profile_and_predict_uses_it(tmp_path):
    from core.models.store import bundled_models
    from tests.app_support import need

    need("secondlook_cnn" in bundled_models("malaria"), "malaria/secondlook_cnn not bundled")
    rows = [f"c{i}.png,{i % 2},p{i // 2}" for i in range(44)]
    m = _write(tmp_path, rows, "path,label,patient_id", n=44)
    env = {"SECONDLOOK_SITES": str(tmp_path / "sites.sqlite")}
    r = _run(env, "core.site", "--task", "malaria", "--model", "secondlook_cnn", "--manifest", str(m), "--name", "lab1", "--n-boot", "200")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1
    line = lines[0]
    assert line["site"] == "lab1" and line["n"] == 44 and line["n_positive"] == 22
    assert "patient-level" in line["current"]["ci_method"] and "22 patients" in line["current"]["ci_method"]
    assert line["proposed_threshold"] is not None and line["proposed"]["sensitivity"] >= 0.95
    r2 = _run(env, "core.predict", "--task", "malaria", "--model", "secondlook_cnn", "--site", "lab1", str(tmp_path / "c1.png"))
    assert r2.returncode == 0, r2.stderr[-2000:]
    row = json.loads(r2.stdout.strip().splitlines()[-1])
    assert row["site"] == "lab1" and row["threshold"] == pytest.approx(line["proposed_threshold"])
    assert row["decision"] == ("Parasitized" if row["probability"] >= row["threshold"] else "Uninfected")
    assert 0 <= row["calibrated_probability"] <= 1
    # a bad manifest: exit 2, the row named, nothing saved
    (tmp_path / "bad.csv").write_text("path,label\nc0.png,1\nc1.png,what\n")
    r3 = _run(env, "core.site", "--task", "malaria", "--manifest", str(tmp_path / "bad.csv"), "--name", "lab2")
    assert r3.returncode == 2 and "row 3 ('c1.png'): unknown label 'what'" in r3.stderr
    assert [p.name for p in profiles.list_profiles(db=tmp_path / "sites.sqlite")] == ["lab1"]
    r4 = _run(env, "core.predict", "--task", "malaria", "--site", "nosuch", str(tmp_path / "c1.png"))
    assert r4.returncode != 0 and "no site profile 'nosuch'" in r4.stderr


def test_site_benchmark_structure():
    """Structure only (timings live in benchmarks/site.py): 40 cases end to end."""
    from benchmarks.site import TARGET_S, bench_site
    from core.models.store import bundled_models
    from tests.app_support import need

    need(bool(bundled_models("malaria")), "no malaria model bundled")
    r = bench_site(40, n_boot=100)
    assert r["n"] == 40 and r["target_s"] == TARGET_S and r["result"] in ("PASS", "FAIL")
    assert r["total_s"] >= r["score_s"] > 0 and "cluster bootstrap" in r["ci_method"]


def test_reading_profiles_never_creates_the_database(tmp_path):
    db = tmp_path / "none.sqlite"
    assert profiles.list_profiles(db=db) == [] and not db.exists()


def test_field_cells_as_a_new_site_and_the_evaluation_doc_table():
    """The real case (cells cut from the malaria_fields test session S1), not saved: docs/evaluation.md's table is
    `python -m core.site --task malaria --fields-session S1 --name iml-s1 --model ... --markdown`."""
    from core.config import REPO_ROOT
    from core.models.store import bundled_models
    from core.site.fields import field_study, markdown_table
    from tests.app_support import need
    from tests.conftest import require_dataset

    require_dataset("malaria_fields")
    ids = ["secondlook_twosite", "secondlook_long", "secondlook_cnn"]
    need(set(ids) <= set(bundled_models("malaria")), "the three malaria cell models are not bundled")
    rows = field_study(ids, "t", n_boot=1000, save=False)
    row = rows[2]
    f = row["fields"]
    assert row["n"] == 6123 and row["n_positive"] == 80 and f["n_fields"] == 52 and f["cluster"] == "field"
    assert "field-level cluster bootstrap (52 fields" in row["current"]["ci_method"]
    assert f["shipped"]["threshold"] == row["current"]["threshold"] and f["shipped"]["sensitivity"] == row["current"]["sensitivity"]
    assert f["site_rule_same_cells"]["sensitivity"] >= 0.95  # the task's rule, on the cells it was chosen on
    assert f["site_specificity_0.97_same_cells"]["specificity"] >= 0.97
    assert len(f["split"]) == 2 and sum(s["n_eval"] for s in f["split"]) == row["n"]
    assert f["cross_session"]["chosen_on"] == ["S3"] and f["cross_session"]["n_chosen_on"] > 10_000
    assert markdown_table(rows) in (REPO_ROOT / "docs" / "evaluation.md").read_text()
