"""Shared test fixtures. Tests that need a dataset skip with a reason on a user's machine, but fail in CI."""
from __future__ import annotations

import os

import pytest

from core.config import dataset_available, task_data_dir
from core.models.store import SCORE_TOLERANCE  # noqa: F401  (re-exported for the tests)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def approx_tree(value, abs_tol: float = 1e-9):
    """`value` with every float (also inside lists and dicts) as pytest.approx: summation order differs across CPUs."""
    if isinstance(value, float):
        return pytest.approx(value, abs=abs_tol)
    if isinstance(value, dict):
        return {k: approx_tree(v, abs_tol) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(approx_tree(v, abs_tol) for v in value)
    return value


def bar_param(*values, id: str, miss: str | None = None):
    """A parametrised case of a target test; a target missed as measured is a strict xfail carrying that measurement
    (the day it is met, the test says so)."""
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=miss)] if miss else []
    return pytest.param(*values, marks=marks, id=id)


def require_dataset(task: str) -> None:
    """Skip (locally) or fail (CI) when a task's dataset is not under SECONDLOOK_DATA."""
    if dataset_available(task):
        return
    msg = (
        f"dataset '{task}' not found at {task_data_dir(task)}; set SECONDLOOK_DATA to the folder holding "
        f"{task}/manifest.csv (see README)"
    )
    if IN_CI:
        pytest.fail("CI must have the datasets: " + msg)
    pytest.skip(msg)


@pytest.fixture(params=["pneumonia", "effusion", "malaria"])
def task_with_data(request) -> str:
    require_dataset(request.param)
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _audit_log_outside_repo(tmp_path_factory):
    """Scoring appends audit rows (core.audit), tagging and site validation write their databases: a test run writes
    them to temp files, never the user's data folder (SECONDLOOK_HOME) or the repository."""
    home = tmp_path_factory.mktemp("secondlook_home")
    names = {"SECONDLOOK_AUDIT": "audit.sqlite", "SECONDLOOK_REVIEWS": "reviews.sqlite", "SECONDLOOK_SITES": "sites.sqlite",
             "SECONDLOOK_CONFIRMATIONS": "confirmations.sqlite", "SECONDLOOK_USERS": "users.sqlite"}
    old = {k: os.environ.get(k) for k in names}
    os.environ.update({k: str(home / name) for k, name in names.items()})
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
