"""Threshold tuning: choose the operating point on validation, see what it does on the held-out test set."""
import math

import pandas as pd
import streamlit as st

from core.evaluation import charts
from core.evaluation import operating_point as op
from ui import access, common
from ui import intervals as ui_iv

access.require("research")

ctx = common.context()
st.title("Threshold tuning")
common.require_model(ctx)

task, mid = ctx.task, ctx.model_id
sha = common.version(task.name, mid)
val = common.predictions(task.name, mid, "val")
test = common.predictions(task.name, mid, "test")
if val is None:
    st.error("This model has no validation predictions (val_predictions.csv), so its operating point cannot be tuned.")
    st.stop()
val_curve = common.curve(task.name, mid, "val")
test_curve = common.curve(task.name, mid, "test")
pos_noun, neg_noun, unit = op.nouns(task)

st.markdown(
    "The operating point is **chosen on validation images** and every number is shown beside its value on the "
    "**held-out test set**, which played no part in choosing it. Works from the stored predictions alone; "
    "no images are needed."
)

# ---------------------------------------------------------------- candidate point ------------------------------
CURRENT = "current"


@st.cache_data(show_spinner=False, max_entries=256)
def _preset(task_name: str, model_id: str, sha: str, preset: str) -> float:
    v = common._predictions(task_name, model_id, "val", sha)
    return op.preset_threshold(preset, v["y"].to_numpy(), v["score"].to_numpy())


def _use(thr_value: float) -> None:
    common.set_threshold(task.name, mid, thr_value)
    st.session_state["tune_preset"] = CURRENT


labels = {CURRENT: "Sidebar setting", **{k: v[0] for k, v in op.PRESETS.items()}}
if st.session_state.get("tune_preset") not in labels:
    st.session_state["tune_preset"] = CURRENT
preset = st.segmented_control(
    "Try a preset (each is chosen on the validation predictions)", list(labels), format_func=labels.get,
    key="tune_preset", required=True,
    help="Youden J maximises sensitivity + specificity. 'Sensitivity ≥ 95%' is the highest threshold that still "
         "catches 95% of validation cases with the finding; 'Specificity ≥ 95%' the lowest that keeps false alarms under 5%.",
) or CURRENT
current = ctx.threshold
thr = current if preset == CURRENT else _preset(task.name, mid, sha, preset)

if preset != CURRENT:
    same = abs(thr - current) < 1e-12
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    c1.info(f"Previewing **{labels[preset]}**: threshold **{thr:.4f}** (the sidebar uses {current:.4f})."
            + (" It is the same point." if same else ""), icon=":material/visibility:")
    c2.button("Use this operating point", type="primary", on_click=_use, args=(thr,), disabled=same, width="stretch",
              key="tune_use", help="Makes this the operating point for Predict and every other page.")

vp = op.at(val_curve, thr)
tp = op.at(test_curve, thr) if test_curve is not None else None
with st.container(border=True):
    st.markdown(f"**Threshold {thr:.4f}** — " + op.meaning(task, vp, "in validation"))
    if tp is not None:
        st.markdown(op.meaning(task, tp, "in the held-out test set", lead="The same threshold"))

# ---------------------------------------------------------------- metrics table --------------------------------
test_prev = (test["y"].mean() if test is not None else val["y"].mean()) * 100
c1, c2 = st.columns([1, 2], vertical_alignment="bottom", gap="medium")
with c1:
    prev = st.number_input(
        f"Prevalence of {task.finding} in your patients (%)", min_value=0.1, max_value=99.9,
        value=float(round(test_prev, 1)), step=0.5, format="%.1f", key=f"tune_prev_{task.name}",
        help="PPV and NPV depend on how common the finding is. The default is the test set's share; enter your own "
             "(e.g. 5% in a screening clinic) to see what a flag would mean there.",
    )
ref = tp if tp is not None else vp
with c2:
    if not (math.isnan(ref["sensitivity"]) or math.isnan(ref["specificity"])):
        st.success(op.predictive_sentence(task, ref["sensitivity"], ref["specificity"], prev / 100).rstrip(".")
                   + f" (using the {'test' if tp is not None else 'validation'} set's sensitivity and specificity).",
                   icon=":material/calculate:")


@st.cache_data(show_spinner=False, max_entries=512)
def _table(task_name: str, model_id: str, sha: str, thr: float, prevalence: float, dkey: str) -> list[dict]:
    v = common._predictions(task_name, model_id, "val", sha)
    t = common._predictions(task_name, model_id, "test", sha)
    return op.metrics_table(v["y"].to_numpy(), v["score"].to_numpy(),
                            None if t is None else t["y"].to_numpy(), None if t is None else t["score"].to_numpy(),
                            thr, prevalence, val_groups=ui_iv.groups(task_name, model_id, "val"),
                            test_groups=None if t is None else ui_iv.groups(task_name, model_id, "test"))


def _cell(value: float, ci: tuple[float, float]) -> str:
    return f"{op.fmt_pct(value)}  ({op.fmt_ci(ci)})"


rows = _table(task.name, mid, sha, float(thr), prev / 100, ui_iv.data_key(task.name))
table = pd.DataFrame({
    "Metric": [r["metric"] for r in rows],
    "What it means": [r["meaning"] for r in rows],
    "Validation (95% CI)": [_cell(r["val"], r["val_ci"]) for r in rows],
    **({"Test, held-out (95% CI)": [_cell(r["test"], r["test_ci"]) for r in rows]} if test is not None else {}),
})
st.table(table, hide_index=True, border="horizontal")
_kinds = {"Validation": ui_iv.label(task.name, ui_iv.groups(task.name, mid, "val"))}
if test is not None:
    _kinds["Test"] = ui_iv.label(task.name, ui_iv.groups(task.name, mid, "test"))
st.caption("95% confidence intervals — " + "; ".join(f"{k}: **{v}**" for k, v in _kinds.items()) + ". Patient-level: "
           "whole patients are resampled (2000 times, separately those with and without the finding), because images "
           "of one patient are alike; image-level (where the patient ids are not on this machine): 1000 resamples of "
           "the images, which is too narrow when patients repeat. Validation is where the point was chosen, so it "
           "flatters; the test column is the honest estimate.")

st.divider()
split = "Test (held-out)"
if test_curve is not None:
    split = st.radio("Charts show", ["Test (held-out)", "Validation"], horizontal=True, key="tune_split")
chart_df, chart_curve, chart_point = (test, test_curve, tp) if split.startswith("Test") and test_curve is not None else (val, val_curve, vp)

# ---------------------------------------------------------------- curves ---------------------------------------
_chart_which = "test" if chart_df is test else "val"
auc = ui_iv.auc_interval(task.name, mid, _chart_which)
_chart_groups = ui_iv.groups(task.name, mid, _chart_which)
_chart_kind = ui_iv.label(task.name, _chart_groups) + ("" if _chart_groups is not None else ", DeLong")
points = [{"threshold": thr, "label": "This operating point", "colour": charts.POINT_COLOUR}]
if preset != CURRENT and abs(thr - current) > 1e-12:
    points.append({"threshold": current, "label": "Sidebar setting", "colour": charts.OTHER_POINT_COLOUR, "symbol": "circle-open", "size": 12})
c1, c2 = st.columns(2, gap="medium")
with c1:
    st.plotly_chart(charts.roc_figure([{"name": common.model_label(task.name, mid), "curve": chart_curve, "auc": auc,
                                        "points": points}], height=420), width="stretch", key="tune_roc")
with c2:
    st.plotly_chart(charts.pr_figure(chart_df["y"].to_numpy(), chart_df["score"].to_numpy(), points,
                                     name=common.model_label(task.name, mid), height=420), width="stretch", key="tune_pr")
c1, c2 = st.columns([3, 2], gap="medium")
with c1:
    st.plotly_chart(charts.distribution_figure(chart_df["y"].to_numpy(), chart_df["score"].to_numpy(), thr, task.labels,
                                               other_threshold=current if preset != CURRENT else None),
                    width="stretch", key="tune_dist")
with c2:
    st.plotly_chart(charts.confusion_figure(chart_point, task.labels, height=340), width="stretch",
                    key="tune_confusion", config={"displayModeBar": False})
st.caption(
    f"Charts: {'held-out test' if chart_df is test else 'validation'} predictions of "
    f"{len(chart_df)} {unit}s; AUC interval {_chart_kind}. Hover any point for its threshold and counts; drag to zoom, double-click to reset."
)
