"""Helpers for the AppTest suites (tests/test_app_*.py): start the app, pick tasks that have models, read values."""
from __future__ import annotations

import os
import re

import pytest
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT
from core.models import store
from core.registry import TASKS
from tests.conftest import IN_CI

TIMEOUT = 240  # first run imports TensorFlow and loads a model; the machine may be busy training


def need(condition: bool, reason: str) -> None:
    """Skip locally (models still training), fail in CI where every bundled model must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail("CI: " + reason)
    pytest.skip(reason)


def task_with_models(n: int = 1, prefer: tuple[str, ...] = ("effusion", "pneumonia", "malaria")) -> str:
    for t in prefer:
        if len(store.bundled_models(t)) >= n:
            return t
    need(False, f"no task has {n} trained model(s) bundled yet")
    raise AssertionError  # unreachable


def start(task: str | None = None, model: str | None = None, page: str | None = None, research: bool = True) -> AppTest:
    """Run app.py (shared sidebar + navigation), optionally choose task/model and switch to a page.

    `research` (default, for the workbench pages these suites test): the app starts in research mode, as
    SECONDLOOK_RESEARCH=1 starts it; False: the clinical mode a user meets first."""
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT)
    os.environ["SECONDLOOK_RESEARCH"] = "1" if research else "0"
    try:
        at.run()
    finally:
        os.environ.pop("SECONDLOOK_RESEARCH", None)
    assert not at.exception, at.exception
    if task is not None and at.session_state["task"] != task:
        at.sidebar.selectbox(key="task").select(task).run()
    if model is not None and at.session_state["model"] != model:
        at.sidebar.selectbox(key="model").select(model).run()
    if page is not None:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def use_threshold(at: AppTest, value: float) -> AppTest:
    """Switch the sidebar to the probability-threshold slider and set it."""
    if at.session_state["op_mode"] != "By threshold":
        at.sidebar.radio(key="op_mode").set_value("By threshold").run()
    at.sidebar.slider(key="op_thr").set_value(value).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> list[str]:
    """Every markdown/caption string on the page (main area and sidebar)."""
    out = [m.value for m in at.markdown] + [c.value for c in at.caption]
    out += [a.value for kind in ("info", "success", "warning", "error") for a in getattr(at, kind)]
    return out


def exact_probabilities(at: AppTest) -> list[float]:
    return [float(m.group(1)) for t in texts(at) if (m := re.search(r"Exact model output: ([0-9.]+)", t))]


def metric(at: AppTest, label_start: str) -> str:
    for m in at.metric:
        if m.label.startswith(label_start):
            return m.value
    raise AssertionError(f"no metric starting {label_start!r}: {[m.label for m in at.metric]}")


def plotly_specs(at: AppTest) -> dict[str, str]:
    """key -> figure JSON of every plotly chart on the page."""
    return {el.proto.id: el.proto.spec for el in at.get("plotly_chart")}


def all_tasks() -> list[str]:
    return list(TASKS)
