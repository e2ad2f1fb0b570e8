"""Privacy: an upload through the Predict page leaves no trace on disk (working tree or temp dir) or in the log."""
from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import REPO_ROOT
from core.models import store
from tests.app_support import exact_probabilities, need, start, task_with_models

MARKER = "zz_private_patient_upload_4711"


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "logs")]  # logs/: local training runs
        for f in filenames:
            p = Path(dirpath) / f
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _xray_png() -> bytes:
    rng = np.random.default_rng(7)
    img = (np.clip(rng.normal(110, 30, (300, 260)), 0, 255)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_writes_nothing_to_disk_or_log(caplog):
    task = task_with_models(prefer=("pneumonia", "effusion"))
    need(bool(store.bundled_models(task)), f"no trained {task} model bundled")
    at = start(task, page="predict")
    tmp = Path(tempfile.gettempdir())
    before_repo, before_tmp = _snapshot(REPO_ROOT), set(os.listdir(tmp))
    from core.inference.population import TASK_POPULATION
    from tests.imagegen import make_dicom

    age = {"child": "003Y", "adult": "045Y"}[TASK_POPULATION[task]]  # a film of the task's population gets a decision
    xray = make_dicom(np.asarray(Image.open(io.BytesIO(_xray_png()))), extra={"PatientAge": age})
    with caplog.at_level(logging.DEBUG):
        at.file_uploader(key="predict_files").set_value((f"{MARKER}.dcm", xray, "application/dicom")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(exact_probabilities(at)) == 1  # the upload really was scored
    after_repo = _snapshot(REPO_ROOT)
    changed = {p for p in after_repo if before_repo.get(p) != after_repo[p]}
    assert not changed, f"files written or changed during an upload: {sorted(changed)[:10]}"
    new_tmp = set(os.listdir(tmp)) - before_tmp
    assert not any(MARKER in n for n in new_tmp)
    for n in new_tmp:  # anything new in the temp dir must not hold the upload
        p = tmp / n
        if p.is_file():
            assert MARKER.encode() not in p.read_bytes()[:1_000_000]
    assert MARKER not in caplog.text


def test_usage_statistics_are_off():
    cfg = (REPO_ROOT / ".streamlit" / "config.toml").read_text()
    assert "gatherUsageStats = false" in cfg
