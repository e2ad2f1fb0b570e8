"""core.batch: inputs, resume, duplicates, refusal to mix scorers, bad files as rows, and Ray == embedded scores."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.batch import run_batch
from core.batch.inputs import InputListError, expand_inputs
from core.batch.ledger import Ledger
from core.batch.output import OutputError, read_rows
from core.inference.rows import COLUMNS
from tests.conftest import require_dataset

TASK, MODEL = "malaria", "seed_model3"  # the smallest bundled model: real card, real checksum, no dataset needed
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    from core.models.store import load_model

    return load_model(TASK, MODEL)


def png(path: Path, seed: int, size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def batch(model, inputs, out, **kw):
    return run_batch(TASK, [str(i) for i in inputs], str(out), MODEL, progress=False, model=model, **kw)


# ------------------------------------------------------------------------------------------------ inputs


def test_inputs_expand_folders_globs_and_manifests(tmp_path):
    a = png(tmp_path / "d" / "a.png", 1)
    b = png(tmp_path / "d" / "sub" / "b.PNG", 2)
    (tmp_path / "d" / "notes.txt").write_text("not an image")
    (tmp_path / "d" / ".hidden.png").write_bytes(a.read_bytes())
    c = png(tmp_path / "e" / "c.jpg", 3)
    (tmp_path / "m").mkdir()
    pd.DataFrame({"path": ["../d/a.png", "x/missing.png", str(c)]}).to_csv(tmp_path / "m" / "list.csv", index=False)
    got = expand_inputs([str(tmp_path / "d"), str(tmp_path / "e" / "*.jpg"), str(tmp_path / "m" / "list.csv"),
                         str(tmp_path / "gone.png")])
    assert got[:3] == [str(a), str(b), str(c)]  # recursive, suffix case-insensitive, hidden and .txt left out
    assert got[3] == os.path.join(tmp_path / "m", "x/missing.png")  # relative to the CSV; ../d/a.png deduplicated
    assert got[4] == str(tmp_path / "gone.png")  # a named file is kept even when missing: it gets an error row
    assert len(got) == 5


def test_inputs_that_expand_to_nothing_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("file\nx.png\n")
    with pytest.raises(InputListError, match="no image"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(InputListError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.png")])
    with pytest.raises(InputListError, match="'path' column"):
        expand_inputs([str(tmp_path / "bad.csv")])


def grey(path: Path, seed: int, size: int = 96) -> Path:
    """A greyscale picture: the wrong kind of image for the cell task (the modality check withholds it)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 255, size)[:, None] * np.ones((1, size))
    arr = np.clip(y + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_ledger_skips_known_pairs_and_marks_duplicates():
    led = Ledger([{"file": "a", "sha256": "h1", "probability": 0.5, "error": None, "withheld": None,
                   "score_out_of_scope": None, "population": "child (DICOM age 3 years)"},
                  {"file": "w", "sha256": "h3", "probability": None, "error": None, "withheld": "greyscale",
                   "score_out_of_scope": 0.25, "population": None}])
    assert led.triage("a", "h1") == "skip"
    assert led.triage("b", "h1") == "duplicate" and led.result("h1") == (0.5, None, None, "child (DICOM age 3 years)")
    assert led.result("h3") == (0.25, None, "greyscale", None)  # a withheld file keeps its score and its reason
    assert led.triage("c", "h2") == "new" and led.triage("d", "h2") == "duplicate" and led.result("h2") is None
    assert led.triage("e", None) == "new" and led.triage("e", None) == "skip"


# ------------------------------------------------------------------------------------------------ runs


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_resume_appends_only_new_files(tmp_path, model, suffix):
    files = [png(tmp_path / "in" / f"{i}.png", i) for i in range(6)]
    out = tmp_path / f"out{suffix}"
    s1 = batch(model, [tmp_path / "in"], out)
    assert (s1.rows_written, s1.scored, s1.skipped) == (6, 6, 0)
    first = {r["file"]: r["probability"] for r in read_rows(out)}
    files += [png(tmp_path / "in" / f"new{i}.png", 100 + i) for i in range(3)]
    s2 = batch(model, [tmp_path / "in"], out)
    assert (s2.rows_written, s2.skipped) == (3, 6)
    rows = read_rows(out)
    assert sorted(r["file"] for r in rows) == sorted(str(f) for f in files)  # every file exactly once
    assert {r["file"]: r["probability"] for r in rows if r["file"] in first} == first
    assert list(rows[0]) == list(COLUMNS) and all(r["ok"] and r["decision"] for r in rows)
    assert batch(model, [tmp_path / "in"], out).rows_written == 0


def test_a_torn_last_csv_line_is_dropped_and_that_file_scored_again(tmp_path, model):
    files = [png(tmp_path / "in" / f"{i}.png", i) for i in range(4)]
    out = tmp_path / "out.csv"
    batch(model, files, out)
    text = out.read_text()
    out.write_text(text[: len(text) - 30])  # a run killed while writing its last row
    s = batch(model, files, out)
    assert s.rows_written == 1 and len(read_rows(out)) == 4


def test_duplicates_are_scored_once_and_each_gets_a_row(tmp_path, model):
    a = png(tmp_path / "a.png", 1)
    shutil.copy(a, tmp_path / "copy.png")
    png(tmp_path / "b.png", 2)
    (tmp_path / "sub").mkdir()
    shutil.copy(a, tmp_path / "sub" / "again.png")
    out = tmp_path / "out.csv"
    s = batch(model, [tmp_path], out)
    rows = read_rows(out)
    assert (s.rows_written, s.duplicates) == (4, 2)
    sha_a = hashlib.sha256(Path(a).read_bytes()).hexdigest()  # rows arrive in completion order, not file order
    same = [r for r in rows if r["sha256"] == sha_a]
    assert sorted(Path(r["file"]).name for r in same) == ["a.png", "again.png", "copy.png"]
    assert len({r["probability"] for r in same}) == 1
    # a copy that appears only in a later run is not scored again either: it takes the stored result, as shown
    # (calibrated once: the ledger keeps the shown probability, not the raw output)
    shutil.copy(a, tmp_path / "late.png")
    s2 = batch(model, [tmp_path], out)
    assert (s2.rows_written, s2.duplicates, s2.skipped) == (1, 1, 4)
    late = [r for r in read_rows(out) if r["file"].endswith("late.png")]
    assert len(late) == 1 and late[0]["probability"] == same[0]["probability"]


def test_the_wrong_kind_of_image_gets_a_row_without_a_decision(tmp_path, model):
    """The modality check runs in batch as in core.predict: same withheld rows, duplicates and resumes keep it."""
    from core import predict

    cells = [png(tmp_path / f"c{i}.png", i) for i in range(2)]
    xray = grey(tmp_path / "xray.png", 1)
    out = tmp_path / "out.csv"
    s = batch(model, [*cells, xray], out)
    rows = {Path(r["file"]).name: r for r in read_rows(out)}
    w = rows["xray.png"]
    assert w["ok"] and w["decision"] is None and w["probability"] is None and "greyscale" in w["withheld"]
    assert 0 <= w["score_out_of_scope"] <= 1 and s.withheld == 1 and "1 not assessed" in s.line()
    assert all(rows[c.name]["decision"] and rows[c.name]["withheld"] is None for c in cells)
    shutil.copy(xray, tmp_path / "xray_copy.png")  # a later run's duplicate of a withheld file: still withheld
    batch(model, [*cells, xray, tmp_path / "xray_copy.png"], out)
    copy = [r for r in read_rows(out) if r["file"].endswith("xray_copy.png")][0]
    assert {k: copy[k] for k in ("decision", "withheld", "score_out_of_scope")} == \
        {k: w[k] for k in ("decision", "withheld", "score_out_of_scope")}
    assert predict.predict_file(model, TASK, MODEL, str(xray), w["threshold"]) == w  # the CLI's row, key for key


def test_a_site_profile_sets_the_point_names_the_site_and_cannot_be_mixed(tmp_path, model, monkeypatch):
    from core.site import profiles

    monkeypatch.setenv("SECONDLOOK_SITES", str(tmp_path / "sites.sqlite"))
    from core.models.store import read_card

    shipped = float(read_card(TASK, MODEL)["threshold"])
    profiles.save(profiles.SiteProfile("lab1", TASK, MODEL, profiles.current_sha256(TASK, MODEL), 40, 0.123, shipped,
                                       {"method": "platt_logit", "a": 0.5, "b": -1.0}, {}))
    files = [png(tmp_path / f"{i}.png", i) for i in range(3)]
    out = tmp_path / "site.csv"
    batch(model, files, out, site="lab1")
    rows = read_rows(out)
    assert all(r["site"] == "lab1" and r["threshold"] == 0.123 for r in rows)
    for r in rows:
        assert r["decision"] == ("Parasitized" if r["probability"] >= 0.123 else "Uninfected")
        assert r["calibrated_probability"] != r["probability"] and 0 < r["calibrated_probability"] < 1
    with pytest.raises(OutputError, match="another scorer"):  # the same file without the site: refused
        batch(model, files, out)
    with pytest.raises(ValueError, match="nosuch"):
        batch(model, files, tmp_path / "o2.csv", site="nosuch")
    batch(model, files, tmp_path / "plain.csv")
    assert all(r["site"] is None and r["calibrated_probability"] is None for r in read_rows(tmp_path / "plain.csv"))


def test_an_output_from_another_scorer_is_refused(tmp_path, model):
    f = png(tmp_path / "a.png", 1)
    out = tmp_path / "out.csv"
    batch(model, [f], out)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="another scorer"):
        run_batch(TASK, [str(f)], str(out), "seed_base_cnn", progress=False)
    with pytest.raises(OutputError, match="another scorer"):
        batch(model, [f], out, threshold=0.9)
    assert out.read_bytes() == before
    other = tmp_path / "other.csv"
    other.write_text("path,label\nx.png,a\n")
    with pytest.raises(OutputError, match="not a core.batch output"):
        batch(model, [f], other)
    with pytest.raises(OutputError, match=".csv or .parquet"):
        batch(model, [f], tmp_path / "out.json")


def test_bad_files_get_rows_and_never_stop_the_run(tmp_path, model):
    good = [png(tmp_path / f"g{i}.png", i) for i in range(3)]
    (tmp_path / "truncated.png").write_bytes(good[0].read_bytes()[:60])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    png(tmp_path / "tiny.png", 9, size=8)
    out = tmp_path / "out.parquet"
    s = batch(model, [tmp_path, tmp_path / "missing.png"], out)
    rows = {Path(r["file"]).name: r for r in read_rows(out)}
    assert s.rows_written == len(rows) == 8 and s.errors == 5
    for name in ("truncated.png", "empty.png", "text.jpg", "tiny.png", "missing.png"):
        r = rows[name]
        assert not r["ok"] and r["error"] and r["probability"] is None and r["decision"] is None
        assert "Traceback" not in r["error"]
    assert "empty" in rows["empty.png"]["error"] and "32" in rows["tiny.png"]["error"]
    assert all(rows[g.name]["ok"] for g in good)


def test_batch_rows_equal_core_predict_json(tmp_path, model, capsys):
    """The two surfaces share core.inference.rows: same keys, same values, for good and bad files alike."""
    from core import predict

    files = [str(png(tmp_path / f"{i}.png", i)) for i in range(3)] + [str(tmp_path / "missing.png")]
    out = tmp_path / "out.csv"
    batch(model, files, out)
    assert predict.main(["--task", TASK, "--model", MODEL, *files]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == read_rows(out)


def test_quiet_when_not_a_terminal(tmp_path, model, capsys):
    batch_files = [png(tmp_path / f"{i}.png", i) for i in range(2)]
    run_batch(TASK, [str(f) for f in batch_files], str(tmp_path / "o.csv"), MODEL, model=model)  # progress=None: auto
    assert capsys.readouterr().err == ""


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "core.batch", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_runs_and_refuses_misuse_with_a_message(tmp_path):
    png(tmp_path / "in" / "a.png", 1)
    r = _cli("--task", TASK, "--model", MODEL, str(tmp_path / "in"), "--out", str(tmp_path / "o.csv"))
    assert r.returncode == 0, r.stderr
    assert "1 rows written" in r.stderr and len(read_rows(tmp_path / "o.csv")) == 1
    r = _cli("--task", TASK, str(tmp_path / "nothing*.png"), "--out", str(tmp_path / "o.csv"))
    assert r.returncode == 2 and "matches no file" in r.stderr
    r = _cli("--task", TASK, "--model", MODEL, "--engine", "ray", "--ray-address", "127.0.0.1:1",
             str(tmp_path / "in"), "--out", str(tmp_path / "r.csv"))
    assert r.returncode == 2 and "--engine local" in r.stderr and "Traceback" not in r.stderr


def test_no_batch_decision_on_another_tasks_test_images(tmp_path):
    """Issue #11's target on the batch surface: every test image of the other modality, through core.batch."""
    from benchmarks.common import test_split
    from core.models.selection import default_model

    for t in ("pneumonia", "effusion", "malaria"):
        require_dataset(t)
    xrays = test_split("pneumonia")["file"].tolist() + test_split("effusion")["file"].tolist()
    cells = test_split("malaria")["file"].tolist()
    counts = {}
    for task, files in (("malaria", xrays), ("pneumonia", cells), ("effusion", cells)):
        out = tmp_path / f"{task}.csv"
        run_batch(task, files, str(out), default_model(task), progress=False)
        rows = read_rows(out)
        counts[task] = (sum(r["decision"] is not None for r in rows), len(rows))
        assert len(rows) == len(files) and all(r["ok"] and r["withheld"] for r in rows)
    print(counts)
    assert counts == {"malaria": (0, len(xrays)), "pneumonia": (0, len(cells)), "effusion": (0, len(cells))}


# ------------------------------------------------------------------------------------------------ Ray


def test_ray_engine_scores_equal_the_embedded_engine_on_the_malaria_test_split(tmp_path):
    """CI: a local Ray with 2 CPUs, >= 1,000 real test images, max |diff| <= 1e-6, the same rows."""
    require_dataset("malaria")
    from benchmarks.common import test_split

    files = test_split("malaria")["file"].tolist()
    assert len(files) >= 1000
    files += [str(grey(tmp_path / f"xray{i}.png", i)) for i in range(3)]  # withheld by both engines alike
    manifest = tmp_path / "test.csv"
    pd.DataFrame({"path": files}).to_csv(manifest, index=False)
    emb = run_batch("malaria", [str(manifest)], str(tmp_path / "emb.csv"), "secondlook_cnn", progress=False)
    ray = run_batch("malaria", [str(manifest)], str(tmp_path / "ray.parquet"), "secondlook_cnn", progress=False,
                    engine="ray", num_cpus=2)
    a = pd.DataFrame(read_rows(tmp_path / "emb.csv")).set_index("file").sort_index()
    b = pd.DataFrame(read_rows(tmp_path / "ray.parquet")).set_index("file").sort_index()
    assert emb.rows_written == ray.rows_written == len(files) and list(a.index) == list(b.index)
    assert a["ok"].all() and b["ok"].all()
    assert float((a["probability"] - b["probability"]).abs().max()) <= 1e-6
    assert float((a["score_out_of_scope"] - b["score_out_of_scope"]).abs().max()) <= 1e-6
    cols = ["sha256", "decision", "withheld", "model_sha256"]
    assert (a[cols].fillna("-") == b[cols].fillna("-")).all().all()
    assert a["withheld"].notna().sum() == 3 and a.loc[a["withheld"].notna()].index.str.contains("xray").all()


def test_ray_engine_resumes_scores_copies_once_and_keeps_bad_files(tmp_path, model):
    """The Ray engine's triage (a ledger actor) gives the embedded engine's rows: duplicates, resume, errors."""
    a = png(tmp_path / "in" / "a.png", 1)
    shutil.copy(a, tmp_path / "in" / "copy.png")
    png(tmp_path / "in" / "b.png", 2)
    (tmp_path / "in" / "broken.png").write_bytes(a.read_bytes()[:50])
    grey(tmp_path / "in" / "xray.png", 3)
    out, ref = tmp_path / "ray.csv", tmp_path / "emb.csv"
    s = batch(model, [tmp_path / "in"], out, engine="ray", num_cpus=2)
    assert (s.rows_written, s.duplicates, s.errors, s.withheld) == (5, 1, 1, 1)
    shutil.copy(a, tmp_path / "in" / "late.png")
    png(tmp_path / "in" / "c.png", 4)
    s2 = batch(model, [tmp_path / "in"], out, engine="ray", num_cpus=2)
    assert (s2.rows_written, s2.duplicates, s2.skipped) == (2, 1, 5)
    batch(model, [tmp_path / "in"], ref)

    def key(rows):
        return {Path(r["file"]).name: {k: v for k, v in r.items() if k != "file"} for r in rows}

    assert key(read_rows(out)) == key(read_rows(ref))


def test_a_file_over_the_upload_limit_is_hashed_not_decoded(tmp_path, monkeypatch):
    """A resume must recognise a refused file too: it is hashed (streamed) and refused with the reader's message."""
    from core.batch import _core
    from core.io import base

    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(5000))
    monkeypatch.setattr(_core, "MAX_UPLOAD_BYTES", 4096)
    monkeypatch.setattr(base, "MAX_UPLOAD_BYTES", 4096)
    sha, data, error = _core.read_hashed(str(big))
    assert sha == hashlib.sha256(big.read_bytes()).hexdigest() and data is None
    assert "upload limit" in error
    assert _core.read_hashed(str(tmp_path / "missing.png"))[:2] == (None, None)
