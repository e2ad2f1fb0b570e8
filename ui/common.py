"""Sidebar (task, model, operating point) shared by every page, and the caches behind it.

State lives in `st.session_state`:
  task, model         the selectboxes
  op_thresholds       {"task/model": threshold} -- the operating point of each model, default its card's
  op_mode, op_sens, op_thr   the operating-point widgets (kept in sync with op_thresholds)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from core.config import task_data_dir
from core.evaluation import operating_point as op
from core.models import store
from core.registry import TASKS, TaskSpec, get_task
from core.models.selection import Choice, choose, default_model
from ui import access
from ui.resources import (  # noqa: F401  (pages read the caches through ui.common)
    _auc_ci, _card, _card_mtime, _curve, _manifest, _model, _ood, _predictions,
    auc_ci, card, curve, manifest, model, predictions, version,
)

DISCLAIMER = (
    "SecondLook is decision support for trained clinicians, **not a diagnostic device**. It has not been "
    "cleared by any regulator. Every output must be checked by a qualified reader; never act on it alone."
)
MODE_SENS = "By sensitivity"
MODE_THR = "By threshold"
SENS_MIN, SENS_MAX, SENS_STEP = 50.0, 100.0, 0.5


# ---------------------------------------------------------------- operating point ------------------------------

def _thresholds() -> dict:
    return st.session_state.setdefault("op_thresholds", {})


def _sens_choice() -> dict:
    """{"task/model": the sensitivity (%) a user picked on the slider}: shown as picked, not re-derived."""
    return st.session_state.setdefault("_op_sens_choice", {})


def default_threshold(task: str, model_id: str) -> float:
    return float(card(task, model_id).get("threshold", 0.5))


def threshold(task: str, model_id: str) -> float:
    """The current operating point of a model (its card's validated threshold until someone changes it)."""
    return float(_thresholds().get(f"{task}/{model_id}", default_threshold(task, model_id)))


def set_threshold(task: str, model_id: str, value: float) -> None:
    """Change a model's operating point. Call from a widget callback (a user action), before the sidebar renders."""
    _thresholds()[f"{task}/{model_id}"] = float(value)
    _sens_choice().pop(f"{task}/{model_id}", None)


def _val_sensitivity_pct(task: str, model_id: str, thr: float) -> float:
    c = curve(task, model_id, "val")
    if c is None or not c.n_pos:
        return SENS_MAX
    sens = c.counts(thr)["tp"] / c.n_pos * 100
    snapped = math.floor(sens / SENS_STEP + 1e-9) * SENS_STEP  # "at least": never show more than achieved
    return float(min(SENS_MAX, max(SENS_MIN, snapped)))


# The sidebar's state. Each widget has a "truth" kept apart from the widget's own key (`_truth()`), moved only by
# the widget's callback, i.e. by a user action. Before a widget renders, its key is set from the truth (`_rebind`):
# a widget value that changed without a callback (cleared after an interrupted first run, a resize while the page
# loads) is put back instead of becoming the state. Widget keys stay "task", "model", "op_mode", "op_sens", "op_thr".


def _truth() -> dict:
    return st.session_state.setdefault("_truth", {})


def _rebind(key: str, value) -> None:
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def _on_sens() -> None:
    ss = st.session_state
    task = _truth()["task"]
    model_id = _truth().get("model", {}).get(task)
    c = curve(task, model_id, "val")
    if c is None:
        return
    _thresholds()[f"{task}/{model_id}"] = op.threshold_for_min_sensitivity(c, ss["op_sens"] / 100)
    _sens_choice()[f"{task}/{model_id}"] = float(ss["op_sens"])


def _on_thr() -> None:
    task = _truth()["task"]
    set_threshold(task, _truth().get("model", {}).get(task), float(st.session_state["op_thr"]))


def _on_reset() -> None:
    task = _truth()["task"]
    key = f"{task}/{_truth().get('model', {}).get(task)}"
    _thresholds().pop(key, None)
    _sens_choice().pop(key, None)


def _on_mode() -> None:
    _truth()["op_mode"] = st.session_state["op_mode"]


def _on_task() -> None:
    _truth()["task"] = st.session_state["task"]


def _on_model() -> None:
    _truth().setdefault("model", {})[_truth()["task"]] = st.session_state["model"]


def select_model(task: str, model_id: str) -> None:
    """Make `model_id` the task's model (a button's callback: a user action)."""
    _truth().setdefault("model", {})[task] = model_id


def select_task(task: str) -> None:
    """Make `task` the sidebar's task (a button's callback: a user action)."""
    _truth()["task"] = task


def research_mode() -> bool:
    """Research mode: the model picker, seed baselines, comparison, misclassified review and statistical detail.
    Off by default (one validated model per input kind); `SECONDLOOK_RESEARCH=1` turns it on from the start."""
    t = _truth()
    if "research" not in t:
        t["research"] = os.environ.get("SECONDLOOK_RESEARCH", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(t["research"]) and access.can("research")  # with sign-in: the site admin's


def _on_research() -> None:
    _truth()["research"] = bool(st.session_state["research"])


# ---------------------------------------------------------------- context --------------------------------------

@dataclass
class Context:
    task: TaskSpec
    models: list[str]
    model_id: str | None = None
    threshold: float | None = None
    card: dict = field(default_factory=dict)
    site: object = None  # the active site profile (core.site.profiles.SiteProfile) or None

    @property
    def has_model(self) -> bool:
        return self.model_id is not None

    def model_title(self, model_id: str | None = None) -> str:
        mid = model_id or self.model_id
        spec = self.task.model(mid)
        return spec.title + (" (seed baseline)" if spec.baseline else "")


def short_task_title(task: str) -> str:
    """'Pneumonia (pediatric chest X-ray)' -> 'Pneumonia'."""
    return TASKS[task].title.split(" (")[0]


def recommended_model(task: str) -> str:
    """The task's default model (core.models.selection: grouped CV, else best validation AUC), from the cached cards."""
    return recommended_choice(task).model_id


def recommended_choice(task: str) -> Choice:
    """The default model and the rule that chose it (for the Home page's note)."""
    return choose(get_task(task), lambda m: card(task, m))


def model_label(task: str, model_id: str) -> str:
    spec = get_task(task).model(model_id)
    if spec.baseline:
        return spec.title + " · baseline"
    return spec.title + (" · recommended" if model_id == recommended_model(task) else "")


def short_model_label(task: str, model_id: str) -> str:
    """Compact name for table headers: 'LeNet-5-inspired CNN (seed)', 'SecondLook CNN'."""
    spec = get_task(task).model(model_id)
    title = spec.title.replace("Seed notebook: ", "")
    return f"{title} (seed)" if spec.baseline else title


def sidebar() -> Context:
    """Render the shared sidebar and return the current context. Called once per run, by app.py."""
    ss = st.session_state
    truth = _truth()
    research = research_mode()
    with st.sidebar:
        if truth.get("task") not in TASKS:
            truth["task"] = next((t for t in TASKS if store.bundled_models(t)), next(iter(TASKS)))
        _rebind("task", truth["task"])
        task_name = st.selectbox("Task", list(TASKS), format_func=short_task_title, key="task", on_change=_on_task,
                                 help="Whose operating point (and site profile) the controls below set. On Predict, "
                                      "every upload is routed to the task of its kind whatever is chosen here.")
        task = get_task(task_name)
        models = store.bundled_models(task_name)
        if not models:
            st.info(
                f"No trained model for **{task.title}** is bundled yet. Models appear here as soon as training "
                f"(`python -m core.train --task {task_name} --model {default_model(task_name)}`) has finished."
            )
            ctx = Context(task, models)
            ss["_ctx"] = ctx
            _footer(research)
            return ctx
        chosen = truth.setdefault("model", {})
        rec = recommended_model(task_name)
        if not research or chosen.get(task_name) not in models:
            chosen[task_name] = rec if rec in models else models[0]  # clinical mode: the validated default only
        _rebind("model", chosen[task_name])
        if research:
            model_id = st.selectbox("Model", models, format_func=lambda m: model_label(task_name, m), key="model",
                                    on_change=_on_model,
                                    help="Bundled models for this task. Seed baselines are the notebooks' original networks; "
                                         "'recommended' marks the task's default SecondLook model (best cross-validated AUC, "
                                         "or best on validation until cross-validation is complete).")
        else:
            model_id = chosen[task_name]
            st.caption("Model: the one validated for this task (research mode shows the others).")
        from ui import sites

        site = sites.sidebar_selector(task_name, model_id)
        _operating_point_widgets(task, model_id, research, site)
        thr = threshold(task_name, model_id)
        ctx = Context(task, models, model_id, thr, card(task_name, model_id), site)
        ss["_ctx"] = ctx
        _footer(research)
    return ctx


def _operating_point_widgets(task: TaskSpec, model_id: str, research: bool = True, site=None) -> None:
    key = f"{task.name}/{model_id}"
    thr = threshold(task.name, model_id)
    truth = _truth()
    truth.setdefault("op_mode", MODE_SENS)
    _rebind("op_mode", truth["op_mode"] if research else MODE_SENS)
    _rebind("op_sens", _sens_choice().get(key, _val_sensitivity_pct(task.name, model_id, thr)))
    _rebind("op_thr", float(min(1.0, max(0.0, round(thr, 3)))))
    st.markdown("**Operating point**", help=(
        "Where the model draws the line between 'flag' and 'clear'. A lower line catches more cases but raises "
        "more false alarms. Set it by the share of cases you want caught (chosen on validation data)"
        + (", or by the probability threshold directly." if research else ".") + " It applies on every page."))
    mode = MODE_SENS
    if research:
        mode = st.radio("Set it", [MODE_SENS, MODE_THR], key="op_mode", horizontal=True, on_change=_on_mode,
                        label_visibility="collapsed")
    if mode == MODE_SENS:
        st.slider("Catch at least this share of cases (validation)", SENS_MIN, SENS_MAX, step=SENS_STEP, format="%.1f%%",
                  key="op_sens", on_change=_on_sens, disabled=curve(task.name, model_id, "val") is None,
                  help="The highest threshold that still catches at least this share of the validation cases with the finding.")
    else:
        st.slider("Probability threshold", 0.0, 1.0, step=0.001, format="%.3f", key="op_thr", on_change=_on_thr,
                  help="Images with a probability at or above this are flagged.")
    thr = threshold(task.name, model_id)
    c = curve(task.name, model_id, "val")
    is_default = key not in _thresholds()
    of_site = site is not None and abs(thr - float(site.threshold)) <= 1e-12
    st.caption(f"Threshold **{thr:.4f}**" + (" · the model's validated default" if is_default else
                                             f" · site profile {site.name}" if of_site else " · changed by you"))
    if c is not None:
        st.markdown(op.short_meaning(task, op.at(c, thr)))
    if not is_default:
        st.button("Reset to validated default", on_click=_on_reset, width="stretch")


def _footer(research: bool = False) -> None:
    st.divider()
    _rebind("research", research)
    if access.can("research"):
        st.toggle("Research mode", key="research", on_change=_on_research,
                  help="Shows the model picker, the seed baselines, threshold tuning against ROC curves, model "
                       "comparison and the misclassified test images. Off: one validated model per kind of image, "
                       "in plain words.")
    st.caption(":material/warning: Decision support only — not a diagnostic device. A clinician makes every decision.")


def context() -> Context:
    """The context the sidebar computed in this run (pages call this)."""
    ctx = st.session_state.get("_ctx")
    if ctx is None:  # a page run on its own (not through app.py)
        ctx = sidebar()
    return ctx


def require_model(ctx: Context) -> None:
    """Stop the page with a clear message when the task has no trained model yet."""
    if not ctx.has_model:
        st.info(
            f"There is no trained model for **{ctx.task.title}** yet, so this page has nothing to show. "
            "Pick another task in the sidebar, or come back once training has finished."
        )
        st.stop()


def require_intact_model(ctx: Context) -> None:
    """Load the model now; a file that fails its checksum stops the page with one clear message."""
    try:
        model(ctx.task.name, ctx.model_id)
    except store.ModelIntegrityError as exc:
        st.error(f"{exc} Restore `models/{ctx.task.name}/{ctx.model_id}/` from the repository or retrain it.",
                 icon=":material/gpp_bad:")
        st.stop()


def data_missing_message(task: str) -> str:
    return (
        f"The **{task}** images are not on this machine (looked for `{task_data_dir(task) / 'manifest.csv'}`). "
        "Set the environment variable `SECONDLOOK_DATA` to the folder that holds "
        f"`{task}/manifest.csv` and restart the app, e.g. `SECONDLOOK_DATA=/path/to/datasets make run`. "
        "Everything that only needs the stored predictions keeps working without the images."
    )


def pct(v: float, digits: int = 1) -> str:
    return op.fmt_pct(v, digits)


def finite(v) -> bool:
    try:
        return bool(np.isfinite(v))
    except TypeError:
        return False
