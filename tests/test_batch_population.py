"""core.batch rows carry a chest film's `population` exactly as core.predict reports it (every surface tells the same
story for the same file): on first scoring, for duplicates, on resume, through `--task auto` and on the Ray engine;
and no population for the cell task. Chest films are made in code (a grey ramp the image check calls an adult's,
DICOMs with a child's age or an impossible one) plus a child's and an adult's film from the datasets' training
splits (the bundled demo set is never read as data)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.batch import run_batch
from core.batch.output import read_rows
from tests.imagegen import gradient, make_dicom

REPO = Path(__file__).resolve().parent.parent
# the smallest bundled model of each task: the population check does not depend on the model
SMALL = {"pneumonia": "seed_reduced_nodes", "effusion": "seed_lenet", "malaria": "seed_model3"}


@pytest.fixture(scope="module")
def models():
    from core.models.store import load_model

    return {t: load_model(t, m) for t, m in SMALL.items()}


@pytest.fixture(scope="module")
def films() -> dict[str, Path]:
    """A child's and an adult's film from the pneumonia and effusion training splits: the first the image check
    itself calls child / adult."""
    from core.data import load_task_manifest
    from core.inference import population as pop
    from core.io.images import read_image
    from tests.conftest import require_dataset

    out = {}
    for task, group in (("pneumonia", "child"), ("effusion", "adult")):
        require_dataset(task)
        files = load_task_manifest(task).query("split == 'train'").file
        out[group] = Path(next(f for f in files if pop.checked(read_image(f)).group == group))
    return out


def chest_films(folder: Path, films: dict[str, Path] | None = None) -> list[Path]:
    """A ramp PNG (the image check: an adult's), a DICOM of a 4-year-old (tests.imagegen.PATIENT), a DICOM with an
    impossible age (ignored, with a note: the image check decides), and with `films` a child's and an adult's."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = gradient(256, 256)
    Image.fromarray(ramp).save(folder / "ramp.png")
    (folder / "child.dcm").write_bytes(make_dicom(ramp))
    (folder / "odd.dcm").write_bytes(make_dicom(ramp, extra={"PatientAge": "200Y"}))
    made = [folder / "ramp.png", folder / "child.dcm", folder / "odd.dcm"]
    return made + ([films["child"], films["adult"]] if films else [])


def cell(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)).save(path)
    return path


def batch(models, task, inputs, out, **kw):
    return run_batch(task, [str(i) for i in inputs], str(out), SMALL[task], progress=False, model=models[task], **kw)


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in rows}


@pytest.mark.parametrize("task", ["pneumonia", "effusion"])
def test_chest_rows_carry_the_population_core_predict_reports(tmp_path, models, films, task):
    from core import predict

    files = chest_films(tmp_path / "in", films)
    out = tmp_path / "out.csv"
    batch(models, task, files, out)
    rows = by_name(read_rows(out))
    assert len(rows) == len(files)
    for f in files:
        row = rows[f.name]
        cli = predict.predict_file(models[task], task, SMALL[task], str(f), row["threshold"])
        assert row["population"] and row["population"] == cli["population"], f.name
        for k in ("sha256", "ok", "decision", "withheld", "caution"):
            assert row[k] == cli[k], (f.name, k)
        for k in ("probability", "score_out_of_scope"):
            assert (row[k] is None) == (cli[k] is None) and (row[k] is None or row[k] == pytest.approx(cli[k], abs=1e-6))
    assert rows["child.dcm"]["population"] == "child (DICOM age 4 years)"
    assert rows["ramp.png"]["population"].startswith("adult (image check, P(child) ")
    assert "200.0 years is impossible" in rows["odd.dcm"]["population"]
    assert rows[films["child"].name]["population"].startswith("child (image check")
    assert rows[films["adult"].name]["population"].startswith("adult (image check")
    # the withheld reason and the population tell the same story
    own = "child" if task == "pneumonia" else "adult"
    for r in rows.values():
        assert (r["withheld"] is None) == r["population"].startswith(own + " ")


def test_cell_rows_have_no_population(tmp_path, models):
    """The cell task has no population check: empty for a cell, for a chest film (withheld by the modality check)
    and for an unreadable file, as core.predict says."""
    from core import predict

    files = [cell(tmp_path / "c0.png", 0), cell(tmp_path / "c1.png", 1), cell(tmp_path / "c2.jpg", 2),
             chest_films(tmp_path / "x")[1]]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    files.append(tmp_path / "broken.png")
    out = tmp_path / "out.csv"
    batch(models, "malaria", files, out)
    rows = by_name(read_rows(out))
    assert len(rows) == len(files) and all(r["population"] is None for r in rows.values())
    assert rows["child.dcm"]["withheld"] and not rows["broken.png"]["ok"]
    for f in files:
        assert predict.predict_file(models["malaria"], "malaria", SMALL["malaria"], str(f), 0.5)["population"] is None
    assert "population" in out.read_text().splitlines()[0].split(",")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_duplicates_and_resumed_runs_keep_the_population(tmp_path, models, suffix):
    """Identical bytes are scored once: the copies (this run's, and a later run's, whose first row is read back from
    the output) get the first one's population; an unreadable chest file has none."""
    src = chest_films(tmp_path / "films")
    (tmp_path / "in").mkdir()
    child, adult = tmp_path / "in" / "child.dcm", tmp_path / "in" / "adult.png"
    shutil.copy(src[1], child)
    shutil.copy(src[0], adult)
    shutil.copy(child, tmp_path / "in" / "child_copy.dcm")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / f"out{suffix}"
    s1 = batch(models, "pneumonia", [tmp_path / "in"], out)
    assert (s1.rows_written, s1.duplicates, s1.errors) == (4, 1, 1)
    first = by_name(read_rows(out))
    assert first["child.dcm"]["population"] == first["child_copy.dcm"]["population"] == "child (DICOM age 4 years)"
    assert first["adult.png"]["population"].startswith("adult (image check") and first["adult.png"]["withheld"]
    assert first["broken.png"]["population"] is None

    shutil.copy(child, tmp_path / "in" / "child_late.dcm")  # copies appearing only in a resumed run
    shutil.copy(adult, tmp_path / "in" / "adult_late.png")
    s2 = batch(models, "pneumonia", [tmp_path / "in"], out)
    assert (s2.rows_written, s2.duplicates, s2.skipped) == (2, 2, 4)
    rows = by_name(read_rows(out))
    assert {k: v for k, v in rows.items() if k in first} == first  # the earlier rows are untouched
    for late, orig in (("child_late.dcm", "child.dcm"), ("adult_late.png", "adult.png")):
        assert {k: v for k, v in rows[late].items() if k != "file"} == {k: v for k, v in rows[orig].items() if k != "file"}


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=600, env=env)


def test_batch_auto_cli_writes_the_population_core_predict_prints(tmp_path, films):
    """The reported defect: `python -m core.batch --task auto` left `population` empty on every chest row."""
    import pandas as pd

    child = chest_films(tmp_path / "in")[1]
    files = [str(films["child"]), str(films["adult"]), str(child), str(cell(tmp_path / "cell.png", 3))]
    r = _run("core.batch", "--task", "auto", "--out", str(tmp_path / "rows.csv"), *files)
    assert r.returncode == 0, r.stderr[-3000:]
    p = _run("core.predict", *files)
    assert p.returncode == 0, p.stderr[-3000:]
    cli = {(x["file"], x["task"]): x for x in map(json.loads, (l for l in p.stdout.splitlines() if l.startswith("{")))}
    seen = 0
    for task in ("pneumonia", "effusion", "malaria"):
        for row in read_rows(tmp_path / f"rows.{task}.csv"):
            want = cli[(row["file"], task)]
            assert row["population"] == want["population"], (row["file"], task)
            assert row["withheld"] == want["withheld"] and row["decision"] == want["decision"]
            assert (row["population"] is None) == (task == "malaria")
            seen += 1
    assert seen == 3 * 2 + 1
    raw = pd.read_csv(tmp_path / "rows.pneumonia.csv")  # the column as a spreadsheet shows it
    assert raw["population"].notna().all()


def test_ray_engine_rows_carry_the_population_like_the_embedded_engine(tmp_path, models):
    """The Ray engine passes the population through its Ray Data batches: the same rows as the embedded engine,
    also for a copy and for a resumed run."""
    (tmp_path / "in").mkdir()
    for f in chest_films(tmp_path / "films")[:3]:
        shutil.copy(f, tmp_path / "in" / f.name)
    shutil.copy(tmp_path / "in" / "child.dcm", tmp_path / "in" / "child_copy.dcm")
    out, ref = tmp_path / "ray.csv", tmp_path / "emb.csv"
    s = batch(models, "pneumonia", [tmp_path / "in"], out, engine="ray", num_cpus=2)
    assert (s.rows_written, s.duplicates) == (4, 1)
    shutil.copy(tmp_path / "in" / "ramp.png", tmp_path / "in" / "ramp_late.png")
    s2 = batch(models, "pneumonia", [tmp_path / "in"], out, engine="ray", num_cpus=2)
    assert (s2.rows_written, s2.duplicates, s2.skipped) == (1, 1, 4)
    batch(models, "pneumonia", [tmp_path / "in"], ref)

    def key(rows):
        return {Path(r["file"]).name: {k: v for k, v in r.items() if k != "file"} for r in rows}

    got, want = key(read_rows(out)), key(read_rows(ref))
    assert {k: r["population"] for k, r in got.items()} == {k: r["population"] for k, r in want.items()}
    assert all(r["population"] for r in got.values()) and got == want
