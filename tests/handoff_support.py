"""Shared pieces for the hand-off tests: a bundled model loaded once, pictures made in code, tool look-ups."""
from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import pytest

from core.models import store
from tests.conftest import IN_CI

TASK = "pneumonia"


def need_tool(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe:
        return exe
    msg = f"`{name}` is not installed (Debian package '{package}'; .ci/run installs it)"
    if IN_CI:
        pytest.fail("CI: " + msg)
    pytest.skip(msg)


def model_id() -> str:
    models = store.bundled_models(TASK)
    if not models:
        if IN_CI:
            pytest.fail(f"CI: no bundled {TASK} model")
        pytest.skip(f"no bundled {TASK} model")
    return "secondlook_cnn" if "secondlook_cnn" in models else models[0]


@functools.lru_cache(maxsize=2)
def loaded(mid: str):
    from core.handoff import case as C

    model, ood = C.load_model(TASK, mid)
    return model, ood, C.model_info(TASK, mid)


def chest_like(h: int = 320, w: int = 280, seed: int = 0) -> np.ndarray:
    """Two dark 'lungs' in a bright frame with noise; only needs to be an X-ray-looking grey picture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    lungs = np.exp(-(((x - w * 0.32) / (w * 0.15)) ** 2 + ((y - h * 0.5) / (h * 0.3)) ** 2))
    lungs += np.exp(-(((x - w * 0.68) / (w * 0.15)) ** 2 + ((y - h * 0.5) / (h * 0.3)) ** 2))
    img = 200 - 120 * lungs + rng.normal(0, 10, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def png(seed: int = 0) -> bytes:
    from tests.imagegen import encode

    return encode(chest_like(seed=seed), "PNG")


def dicom(seed: int = 0, uids: bool = True) -> bytes:
    """DX file with patient data (tests.imagegen.PATIENT); with `uids` also Study/Series UIDs."""
    from pydicom.uid import generate_uid

    from tests.imagegen import make_dicom

    extra = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(), "StudyID": "7",
             "StudyTime": "093000", "ReferringPhysicianName": "", "PatientOrientation": ["L", "F"]} if uids else {}
    return make_dicom(chest_like(seed=seed), extra=extra)


def score(files: list[tuple[str, bytes]], site_profile: str | None = None, threshold: float | None = None):
    from core.handoff import case as C

    mid = model_id()
    model, ood, info = loaded(mid)
    if threshold is not None:
        info = C.model_info(TASK, mid, threshold=threshold)
    return C.score_case(model, info, files, ood=ood, site_profile=site_profile, surface="handoff")


def dciodvfy(path) -> tuple[list[str], list[str]]:
    """(errors, warnings) lines of dicom3tools' validator for one file."""
    exe = need_tool("dciodvfy", "dicom3tools")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]
