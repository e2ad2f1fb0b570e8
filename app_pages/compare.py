"""Model comparison: ROC, paired tests, calibration, size and speed, and one image through every model."""
import itertools
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from core import charts, metrics
from core import operating_point as op
from core import samples, scoring
from ui import common, imaging

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
st.caption(f"All figures on the same {len(paths)} held-out test images; each model at its own operating point.")

# ---------------------------------------------------------------- ROC + table ----------------------------------
colours = {m: charts.PALETTE[i % len(charts.PALETTE)] for i, m in enumerate(chosen)}
roc_items = []
for m in chosen:
    roc_items.append({
        "name": common.model_label(task.name, m), "curve": common.curve(task.name, m, "test"),
        "auc": common.auc_ci(task.name, m, "test"), "colour": colours[m],
        "points": [{"threshold": thresholds[m], "label": f"{common.model_label(task.name, m)} operating point",
                    "colour": colours[m], "legend": False, "size": 12}],
    })


@st.cache_data(show_spinner="Measuring speed…", max_entries=64)
def _latency(task_name: str, model_id: str, sha: str) -> dict:
    return scoring.measure_latency(common._model(task_name, model_id, sha), ctx.task.model(model_id))


rows = []
for m in chosen:
    df = aligned[m]
    s = df["score"].to_numpy()
    pt = metrics.metrics_at(y, s, thresholds[m])
    a = common.auc_ci(task.name, m, "test")
    card = common.card(task.name, m)
    lat = _latency(task.name, m, common.version(task.name, m))
    rows.append({
        "Model": common.model_label(task.name, m),
        "AUC (95% CI)": f"{a[0]:.3f} ({a[1]:.3f}–{a[2]:.3f})" if a else "—",
        "Threshold": f"{thresholds[m]:.4f}",
        "Sensitivity": op.fmt_pct(pt["sensitivity"]),
        "Specificity": op.fmt_pct(pt["specificity"]),
        "PPV": op.fmt_pct(pt["ppv"]),
        "NPV": op.fmt_pct(pt["npv"]),
        "Accuracy": op.fmt_pct(pt["accuracy"]),
        "F1": f"{pt['f1']:.3f}" if not math.isnan(pt["f1"]) else "—",
        "Parameters": f"{card.get('parameters', 0):,}",
        "File size": f"{card.get('file_bytes', 0) / 1e6:.1f} MB",
        "Time per image": f"{lat['median_ms']:.1f} ms",
    })
left, right = st.columns([1, 1], gap="medium")
with left:
    st.plotly_chart(charts.roc_figure(roc_items, height=460), width="stretch", key="compare_roc")
with right:
    st.markdown("**Each model at its operating point (test set)**")
    st.dataframe(
        pd.DataFrame(rows).set_index("Model").T, width="stretch", key="compare_table",
        row_height=32, height=32 * 13 + 4,
    )
    st.caption("Sensitivity: cases with the finding that were flagged. Specificity: cases without it that were cleared. "
               "PPV/NPV: how often a flag / a clear call was right. Time per image: median of 15 single-image runs "
               "on this machine now (shared with other work, so indicative).")

# ---------------------------------------------------------------- paired tests ---------------------------------
st.subheader("Are the differences real?")
tests_rows = []
for a_, b_ in itertools.combinations(chosen, 2):
    sa, sb = aligned[a_]["score"].to_numpy(), aligned[b_]["score"].to_numpy()
    d = metrics.delong_test(y, sa, sb)
    mc = metrics.mcnemar_test(y, (sa >= thresholds[a_]).astype(int), (sb >= thresholds[b_]).astype(int))
    la, lb = common.model_label(task.name, a_), common.model_label(task.name, b_)
    better = la if d["difference"] > 0 else lb
    tests_rows.append({
        "Pair": f"{la}  vs  {lb}",
        "AUC difference": f"{d['difference']:+.3f}",
        "DeLong p": f"{d['p_value']:.3g}",
        "Ranking (AUC)": (f"{better} ranks cases better" if d["p_value"] < 0.05 else "no clear difference"),
        "Only A right / only B right": f"{mc['b']} / {mc['c']}",
        "McNemar p": f"{mc['p_value']:.3g}",
        "Decisions": ("they disagree more than chance explains" if mc["p_value"] < 0.05 else "no clear difference"),
    })
st.dataframe(pd.DataFrame(tests_rows), hide_index=True, width="stretch", key="compare_tests",
             column_config={
                 "DeLong p": st.column_config.TextColumn(help="Paired DeLong test: could the AUC difference be chance? Below 0.05 = unlikely."),
                 "McNemar p": st.column_config.TextColumn(help="McNemar test on the yes/no calls at each model's operating point, using only cases where the two disagree."),
                 "Only A right / only B right": st.column_config.TextColumn(help="Test images that only the first (A) / only the second (B) model called correctly."),
             })
st.caption("p below 0.05 means a difference this large would be unusual if the models were equally good. "
           "With several pairs, treat a borderline p with caution.")

# ---------------------------------------------------------------- calibration ----------------------------------
st.subheader("Can the probabilities be taken at face value?")
c1, c2 = st.columns([3, 2], gap="medium")
with c1:
    st.plotly_chart(charts.reliability_figure([
        {"name": common.model_label(task.name, m), "y": y, "s": aligned[m]["score"].to_numpy(), "colour": colours[m]}
        for m in chosen], height=420), width="stretch", key="compare_reliability")
with c2:
    st.markdown(
        "A well-calibrated model that says **70%** is right about 70 times in 100, so points sit on the diagonal.\n\n"
        "- **ECE** (expected calibration error): the average gap between what the model says and what happens — "
        "0.05 means off by 5 percentage points on average.\n"
        "- **Brier score**: mean squared error of the probability (0 is perfect; 0.25 is what always saying 50% gets).\n\n"
        "Poor calibration does not change the ranking or the yes/no calls at a tuned threshold, but it means the "
        "probability itself should not be read as a patient's risk."
    )

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
        s = imaging.score(task.name, m, item["data"], item["name"])
        with col:
            st.markdown(f"**{common.model_label(task.name, m)}**")
            if not s.ok:
                st.error(s.error)
                continue
            flagged = op.decide(s.probability, thresholds[m])
            st.metric(f"Probability of {task.finding}", f"{s.probability:.1%}",
                      help=f"Exact output {s.probability:.8f}")
            call = f":red[:material/flag: **Flag: {task.positive}**]" if flagged else f":green[:material/check: **{task.negative}**]"
            st.markdown(f"{call} at threshold {thresholds[m]:.4f}")
            st.image(imaging.rendered(task.name, m, s, alpha), width="stretch")
    st.caption(imaging.gradcam_caption(task.name))
