"""Model comparison: ROC, paired tests, calibration, size and speed, and one image through every model."""
import itertools
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data import samples
from core.evaluation import charts, intervals, metrics
from core.evaluation import operating_point as op
from core.inference import scoring
from core.registry import get_task
from core.models.selection import cv_summary
from ui import access, common, imaging
from ui import intervals as ui_iv

access.require("research")

ctx = common.context()
st.title("Model comparison")
common.require_model(ctx)
task = ctx.task

if len(ctx.models) < 2:
    st.info(
        f"Only one model is bundled for **{task.title}** so far ({common.model_label(task.name, ctx.models[0])}). "
        "Comparison needs two or more; the others appear once their training has finished."
    )
    st.stop()

key = f"compare_models_{task.name}"
chosen = st.multiselect(
    "Models to compare", ctx.models, default=ctx.models, format_func=lambda m: common.model_label(task.name, m),
    key=key, help="Each model is evaluated at its own operating point (the one the sidebar holds for it).",
)
if len(chosen) < 2:
    st.warning("Choose at least two models.")
    st.stop()

tests = {m: common.predictions(task.name, m, "test") for m in chosen}
missing = [m for m, df in tests.items() if df is None]
if missing:
    st.warning("No test predictions yet for: " + ", ".join(common.model_label(task.name, m) for m in missing))
    chosen = [m for m in chosen if m not in missing]
    if len(chosen) < 2:
        st.stop()
thresholds = {m: common.threshold(task.name, m) for m in chosen}

# Align every model on the same test images (all models of a task share the test split).
paths = sorted(set.intersection(*(set(tests[m]["path"]) for m in chosen)))
aligned = {m: tests[m].set_index("path").loc[paths] for m in chosen}
y = aligned[chosen[0]]["y"].to_numpy()
groups = ui_iv.groups_for_paths(task.name, paths)
kind = ui_iv.label(task.name, groups)
st.caption(f"All figures on the same {len(paths)} held-out test images; each model at its own operating point. "
           f"Confidence intervals and the paired AUC test: **{kind}**.")

# ---------------------------------------------------------------- curves ---------------------------------------
colours = {m: charts.PALETTE[i % len(charts.PALETTE)] for i, m in enumerate(chosen)}
short = {m: common.short_model_label(task.name, m) for m in chosen}
roc_items = [{
    "name": short[m], "curve": common.curve(task.name, m, "test"), "auc": ui_iv.auc_interval(task.name, m, "test"),
    "colour": colours[m],
    "points": [{"threshold": thresholds[m], "label": f"{short[m]} operating point", "colour": colours[m],
                "legend": False, "size": 12}],
} for m in chosen]

left, right = st.columns(2, gap="medium")
with left:
    st.plotly_chart(charts.roc_figure(roc_items, height=460), width="stretch", key="compare_roc")
    st.caption("Ranking: a curve higher and further left separates cases with and without the finding better. "
               "Each dot is that model's current operating point. AUC with its 95% CI, "
               + (f"{kind}." if groups is not None else f"{kind}, DeLong."))
with right:
    st.plotly_chart(charts.reliability_figure([
        {"name": short[m], "y": y, "s": aligned[m]["score"].to_numpy(), "colour": colours[m]} for m in chosen],
        height=460), width="stretch", key="compare_reliability")
    st.caption("Calibration: a model that says 70% should be right 70 times in 100 (points on the diagonal). "
               "**ECE** is the average gap (0.05 = off by 5 points); **Brier** is the squared error of the probability "
               "(0 perfect, 0.25 = always saying 50%). Each probability shown is already calibrated (Platt scaling fitted "
               "on the model's validation images); these held-out test curves show how well that carried over. Where "
               "a curve is far from the diagonal, the probability should not be read as a patient's risk.")


@st.cache_data(show_spinner="Measuring speed…", max_entries=64)
def _latency(task_name: str, model_id: str, sha: str) -> dict:
    return scoring.measure_latency(common._model(task_name, model_id, sha), get_task(task_name).model(model_id), repeats=10)


# ---------------------------------------------------------------- table -----------------------------------------
st.subheader("Each model at its operating point (held-out test set)")
ROW_HELP = {
    "CV AUC (training folds)": "Mean ± SD of the AUC over patient-grouped cross-validation folds of the training split: "
                               "the estimate the default is chosen on (never on test); — where not run.",
    "AUC (95% CI)": "How well the model ranks cases with the finding above those without (1 = perfect, 0.5 = chance).",
    "AUC (95% CI, DeLong, image-level)": "The same AUC with DeLong's interval, which treats every image as independent "
                                         "(too narrow when patients repeat).",
    "Threshold": "The model's current operating point (set in the sidebar when that model is selected).",
    "Sensitivity": "Cases with the finding that were flagged.",
    "Specificity": "Cases without the finding that were cleared.",
    "PPV": "How often a flag was right.",
    "NPV": "How often a clear call was right.",
    "Accuracy": "All cases called correctly.",
    "F1": "Balance of PPV and sensitivity (1 = perfect).",
    "ECE (95% CI)": "Calibration: average gap between the stated probability and how often the finding is there.",
    "Parameters": "Number of learned weights: a rough measure of model size.",
    "File size": "Size of the model file.",
    "Time per image": "Median of 10 single-image runs on this machine now (shared with other work, so indicative); "
                      "measured when the switch above is on.",
}
measure = st.toggle("Measure each model's speed on this machine", key="compare_speed",
                    help="Loads every chosen model and times 10 single-image runs (cached afterwards).")
rows = {}
pkey, dkey = hash(tuple(paths)), ui_iv.data_key(task.name)
for m in chosen:
    sm = aligned[m]["score"].to_numpy()
    sha = common.version(task.name, m)
    pt = metrics.metrics_at(y, sm, thresholds[m])
    rate_ci, _ = ui_iv.rates(task.name, m, sha, dkey, pkey, thresholds[m], y, sm, groups)
    ece, ece_ci = ui_iv.calibration(task.name, m, sha, dkey, pkey, y, sm, groups)["ece"]
    a = ui_iv.auc_interval(task.name, m, "test")
    dl = common.auc_ci(task.name, m, "test")
    card = common.card(task.name, m)
    try:
        lat = f"{_latency(task.name, m, sha)['median_ms']:.1f} ms" if measure else "switch on above"
    except Exception:  # speed is informative only; never let it break the comparison
        lat = "—"
    rows[short[m]] = {
        "CV AUC (training folds)": cv_summary(card),
        "AUC (95% CI)": f"{a[0]:.3f} ({a[1]:.3f}–{a[2]:.3f})" if a else "—",
        "AUC (95% CI, DeLong, image-level)": f"{dl[0]:.3f} ({dl[1]:.3f}–{dl[2]:.3f})" if dl else "—",
        "Threshold": f"{thresholds[m]:.4f}",
        **{name: f"{op.fmt_pct(pt[k])} ({op.fmt_ci(rate_ci[k])})" for name, k in (
            ("Sensitivity", "sensitivity"), ("Specificity", "specificity"), ("PPV", "ppv"), ("NPV", "npv"),
            ("Accuracy", "accuracy"))},
        "F1": f"{pt['f1']:.3f}" if not math.isnan(pt["f1"]) else "—",
        "ECE (95% CI)": f"{ece:.3f} ({ece_ci[0]:.3f}–{ece_ci[1]:.3f})",
        "Parameters": f"{card.get('parameters', 0):,}",
        "File size": f"{card.get('file_bytes', 0) / 1e6:.1f} MB",
        "Time per image": lat,
    }
table = pd.DataFrame(rows)
table.insert(0, "What it means", [ROW_HELP[i] for i in table.index])
st.table(table, border="horizontal")
st.caption(f"Intervals: **{kind}**" + (" (whole patients resampled, separately those with and without the finding)"
           if groups is not None else "") + "; the DeLong row is the image-level interval, kept for reference.")

# ---------------------------------------------------------------- paired tests ---------------------------------
st.subheader("Are the differences real?")
reps = ui_iv.paired_replicates(task.name, tuple(chosen), tuple(common.version(task.name, m) for m in chosen),
                               ui_iv.data_key(task.name), y, {m: aligned[m]["score"].to_numpy() for m in chosen},
                               hash(tuple(paths)), groups)
tests_rows = []
for a_, b_ in itertools.combinations(chosen, 2):
    sa, sb = aligned[a_]["score"].to_numpy(), aligned[b_]["score"].to_numpy()
    d = metrics.delong_test(y, sa, sb)
    bs = intervals.paired_from_replicates(d["difference"], reps[a_], reps[b_])
    mc = metrics.mcnemar_test(y, (sa >= thresholds[a_]).astype(int), (sb >= thresholds[b_]).astype(int))
    better = short[a_] if d["difference"] > 0 else short[b_]
    tests_rows.append({
        "A vs B": f"{short[a_]} vs {short[b_]}",
        "AUC A − B (95% CI)": f"{round(d['difference'], 3) + 0.0:+.3f} ({bs['ci'][0]:+.3f} to {bs['ci'][1]:+.3f})",
        "Bootstrap p": f"{bs['p_value']:.3g}",
        "Ranking": f"{better} ranks better" if bs["p_value"] < 0.05 else "no clear difference",
        "DeLong p (image-level)": f"{d['p_value']:.3g}",
        "Only A right / only B right": f"{mc['b']} / {mc['c']}",
        "McNemar p (image-level)": f"{mc['p_value']:.3g}",
        "Yes/no calls": ("A is right more often" if mc["b"] > mc["c"] else "B is right more often")
        if mc["p_value"] < 0.05 else "no clear difference",
    })
st.table(pd.DataFrame(tests_rows), hide_index=True, border="horizontal")
st.caption(f"**Bootstrap p** ({kind}): could the AUC difference be chance? Both models are scored on the same "
           "resampled " + ("patients" if groups is not None else "images") + ", 2000 times; the interval is that of "
           "the difference. **DeLong p** answers the same question treating every image as independent (image-level, "
           "too optimistic when patients repeat). **McNemar p** (image-level): do the two models' yes/no calls at their "
           "operating points differ more than chance, counting only test images where exactly one of them is right. "
           "Below 0.05 = unlikely to be chance; with several pairs, treat borderline values with caution.")

# ---------------------------------------------------------------- one image, every model -----------------------
st.subheader("One image through every model")


@st.cache_data(show_spinner=False, ttl=600)
def _pool(task_name: str) -> list[dict]:
    return samples.examples(task_name)


def _next_example() -> None:
    pool = _pool(task.name)
    if pool:
        i = (st.session_state.get("compare_example_i", -1) + 1) % len(pool)
        st.session_state["compare_example_i"] = i
        st.session_state["compare_example"] = pool[i]


c1, c2 = st.columns([3, 1], vertical_alignment="top")
with c1:
    up = st.file_uploader("Upload an image", type=scoring.upload_types(), key="compare_file",
                          help="Kept in memory only, never saved.")
with c2:
    st.button("Try an example", on_click=_next_example, disabled=not _pool(task.name), key="compare_try", width="stretch",
              help="An image from the held-out test split.")
item = None
if up is not None:
    item = {"name": up.name, "data": up.getvalue(), "truth": None}
elif st.session_state.get("compare_example") and Path(st.session_state["compare_example"]["file"]).is_file():
    ex = st.session_state["compare_example"]
    if ex["file"] in {e["file"] for e in _pool(task.name)}:
        item = {"name": ex["path"], "data": imaging.file_bytes(ex["file"]), "truth": ex["label"]}
if item is None:
    st.caption("Upload an image or press **Try an example** to see every chosen model's probability and heat map side by side.")
else:
    st.markdown(f"**{item['name']}**" + (f" — dataset label **{item['truth']}** (test split)" if item["truth"] else ""))
    alpha = st.slider("Heat-map opacity", 0.0, 1.0, 0.4, 0.05, key="compare_alpha")
    cols = st.columns(len(chosen))
    for col, m in zip(cols, chosen):
        with col:
            st.markdown(f"**{short[m]}**")
            try:
                s = imaging.score(task.name, m, item["data"], item["name"])
            except Exception as exc:  # one model failing must not hide the others
                st.error(f"This model could not score the image ({type(exc).__name__}).")
                continue
            if not s.ok:
                st.error(s.error)
                continue
            flagged = op.decide(s.probability, thresholds[m])
            st.metric(f"Probability of {task.finding}", op.fmt_prob(s.probability),
                      help=f"Exact output {s.probability:.8f}")
            call = f":red[:material/flag: **Flag: {task.positive}**]" if flagged else f":green[:material/check: **{task.negative}**]"
            st.markdown(f"{call} at threshold {thresholds[m]:.4f}")
            st.image(imaging.rendered(task.name, m, s, alpha, item["data"]), width="stretch")
    st.caption(imaging.gradcam_caption(task.name))
