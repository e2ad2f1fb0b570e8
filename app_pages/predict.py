"""Predict: score uploaded images (or test-set examples); decisions follow the sidebar's operating point live."""
from pathlib import Path

import streamlit as st

from core.data import samples
from core.evaluation import operating_point as op
from core.inference import scoring
from core.inference.decision import decide
from ui import access, common, confirm, handoff, imaging, routed, safety, sites
from ui import fields as fieldview

access.require("research")

ctx = common.context()
st.title("Predict")
common.require_model(ctx)
common.require_intact_model(ctx)

task, mid, thr = ctx.task, ctx.model_id, ctx.threshold
pos_noun, neg_noun, unit = op.nouns(task)
val_curve = common.curve(task.name, mid, "val")

st.markdown(
    f"**{common.model_label(task.name, mid)}** answers: *does the image show {task.finding}?* "
    f"Images with a probability of **{thr:.4f}** or more are flagged (operating point in the sidebar)."
)
if val_curve is not None:
    honest = routed.honest_lines(task.name, mid, thr)  # validation, test and external at this point, worst first
    st.info("\n\n".join(honest) if honest else op.meaning(task, op.at(val_curve, thr)), icon=":material/straighten:")

# ---------------------------------------------------------------- inputs ---------------------------------------
EX_KEY = "predict_examples"
st.session_state.setdefault(EX_KEY, {})


@st.cache_data(show_spinner=False, ttl=600)
def _example_pool(task_name: str) -> list[dict]:
    return samples.examples(task_name)


def _add_example() -> None:
    pool = _example_pool(task.name)
    chosen = st.session_state[EX_KEY].setdefault(task.name, [])
    used = {e["file"] for e in chosen}
    nxt = next((e for e in pool if e["file"] not in used), None)
    if nxt is not None:
        chosen.append(nxt)


def _clear_examples() -> None:
    st.session_state[EX_KEY][task.name] = []


types = scoring.upload_types()
col_up, col_ex = st.columns([3, 1], vertical_alignment="top")
with col_up:
    uploads = st.file_uploader(
        "Upload one or more images", type=types, accept_multiple_files=True, key="predict_files",
        help="Files stay in this app's memory for scoring and are never written to disk.",
    )
    st.caption(f"Accepted: {', '.join(t.upper() for t in types)}. Uploads are kept in memory only, never saved.")
with col_ex:
    pool = _example_pool(task.name)
    bundled = bool(pool) and pool[0]["source"].startswith("bundled")
    st.button("Try an example", on_click=_add_example, disabled=not pool, width="stretch", key="predict_try",
              help=("Adds a bundled sample image" if bundled else "Adds an image from the dataset's")
              + " held-out TEST split (the model never trained on it).")
    if st.session_state[EX_KEY].get(task.name):
        st.button("Remove examples", on_click=_clear_examples, width="stretch", key="predict_clear")
    if bundled:
        st.caption(f"{len(pool)} bundled samples from the held-out test set (sample_images/, see ATTRIBUTION.md).")
    if not pool:
        st.caption("No examples here: the dataset is not on this machine and sample_images/ has none for this task.")

# ---------------------------------------------------------------- scoring --------------------------------------
def _safe(name: str, data: bytes) -> scoring.Scored:
    """Score one file; anything unexpected becomes that file's error so the other files still go through."""
    try:
        return imaging.score(task.name, mid, data, name)
    except Exception as exc:
        return scoring.Scored(name, scoring.digest(data), error=f"{name}: SecondLook could not score this file ({type(exc).__name__}: {exc}).")


uploaded = [(f.name, f.getvalue()) for f in uploads or []]
carried = safety.carried_files(uploaded)  # files kept across a one-click task switch
if carried:
    st.button(f"Remove the {len(carried)} file(s) brought from the other task", on_click=safety.clear_carried, key="predict_uncarry")
inputs = [(n, d, None) for n, d in uploaded + carried]
inputs += [(ex["path"], imaging.file_bytes(ex["file"]), ex["label"]) for ex in st.session_state[EX_KEY].get(task.name, [])]
if task.modality == "smear":  # whole microscope fields are screened cell by cell; single-cell crops go on below
    fields = [{"name": n, "data": d} for n, d, _ in inputs if fieldview.is_field(d, n)]
    inputs = [i for i in inputs if not any(i[0] == f["name"] for f in fields)]
    if fields:
        fieldview.render(task.name, mid, thr, fields)
        if not inputs:
            st.stop()
results = []  # dicts: name, scored, truth, data
with st.spinner("Scoring…"):
    for name, data, truth in inputs:
        results.append({"name": name, "scored": _safe(name, data), "truth": truth, "data": data})

seen: dict[str, int] = {}
for r in results:  # two files with the same name stay apart in the worklist
    seen[r["name"]] = seen.get(r["name"], 0) + 1
    if seen[r["name"]] > 1:
        r["name"] = f"{r['name']} ({seen[r['name']]})"
ok = [r for r in results if r["scored"].ok]
for r in results:
    if not r["scored"].ok:
        st.error(r["scored"].error, icon=":material/error:")

st.session_state["predict_last"] = [
    {"name": r["name"], "probability": r["scored"].probability,
     "decision": decide(r["scored"].probability, thr, task, r["scored"].withheld).label} for r in ok
]
safety.offer_switch(results, task.name, uploaded + carried)

handoff.audit_results(ctx, ok)

if not results:
    st.markdown(f"Upload an image above, or press **Try an example**, to see the model's probability of {task.finding}.")
    st.stop()
if not ok:
    st.stop()


def detail(r: dict) -> None:
    s = r["scored"]
    p = s.probability
    flagged = op.decide(p, thr)
    decision = f"Flag: {task.positive}" if flagged else task.negative
    with st.container(border=True):
        st.markdown(f"#### {r['name']}")
        left, right = st.columns([5, 6], gap="medium")
        with left:
            if s.withheld:
                safety.withheld_panel(s.withheld, p, op.fmt_prob, toggle=len(ok) == 1)
            else:
                m1 = m2 = st
                shown_p, shown_t = op.fmt_pair(p, thr)  # enough digits that the two never contradict the decision
                m1.metric(f"Probability of {task.finding}", shown_p,
                          help="The model's output for this image (0–100%). It is not a calibrated risk for your patient population.")
                m2.metric("Decision at this operating point", decision,
                          help=f"Flagged when the probability is at least the threshold {thr:.4f} (sidebar). "
                               "Moving the operating point updates this without re-running the model.")
                side = "at or above" if flagged else "below"
                colour = "red" if flagged else "green"
                st.markdown(
                    f"The probability **{shown_p}** is {side} the threshold **{shown_t}** ({thr:.4f}), so the model "
                    + (f":{colour}[**flags**] this {unit} for {task.finding}." if flagged else f":{colour}[does **not** flag] this {unit}.")
                )
                st.caption(f"Exact model output: {p:.8f}")
                sites.calibrated_caption(ctx.site, p)
                if r["truth"] is not None:
                    right_call = (r["truth"] == task.positive) == flagged
                    st.caption(f"Example from the held-out test set — dataset label **{r['truth']}** "
                               f"({'the model agrees' if right_call else 'the model disagrees'}).")
            for w in s.warnings:
                st.warning(w, icon=":material/report:")
            confirm.panel(ctx, s, key=f"wb_confirm_{task.name}_{mid}_{s.digest[:16]}")
            for note in s.notes:
                st.caption(f":material/info: {note}")
            if s.phi:
                st.warning("This file carries patient identifiers. SecondLook shows them to you only and stores nothing.",
                           icon=":material/lock:")
            alpha = st.slider("Heat-map opacity", 0.0, 1.0, 0.4, 0.05, key="predict_alpha",
                              help="0 shows the plain image, 1 only the heat map.")
        with right:
            c1, c2 = st.columns(2, gap="small")
            c1.image(imaging.rendered(task.name, mid, s, 0.0, r["data"]), caption="Original", width="stretch")
            if not s.withheld or safety.score_anyway():
                c2.image(imaging.rendered(task.name, mid, s, alpha, r["data"]), width="stretch",
                         caption="Grad-CAM overlay" + (f" ({safety.OUT_OF_SCOPE})" if s.withheld else ""))
            st.caption(imaging.gradcam_caption(task.name))
        if s.metadata:
            with st.expander("File details"):
                st.json(s.metadata, expanded=False)
        if s.phi:
            with st.expander("Patient identifiers in this file (shown on request only)", icon=":material/lock:"):
                st.json(s.phi, expanded=True)


if len(ok) == 1:
    detail(ok[0])
    handoff.panel(ctx, ok)
else:
    rows = [{"thumbnail": r["scored"].thumbnail, "file": r["name"], "shown": Path(r["name"]).name,
             "probability": safety.shown_probability(r["scored"]), "withheld": r["scored"].withheld,
             "truth": r["truth"] or "", "note": "Wrong kind of image" if r["scored"].withheld else r["scored"].caution}
            for r in ok]
    wl = scoring.worklist(rows, thr, task.name)
    n_flag = int(wl["decision"].str.startswith("Flag").sum())
    if wl["withheld"].notna().any():
        safety.anyway_toggle()
    st.subheader(f"Worklist — {len(wl)} images, {n_flag} flagged")
    st.caption("Sorted by probability, highest first: read the top of the list first. Decisions follow the sidebar's "
               "operating point. Click a row to see that image below.")
    show_truth = wl["truth"].astype(bool).any()
    st.session_state["_worklist_files"] = wl["file"].tolist()

    def _pick_row() -> None:
        rows = st.session_state["predict_worklist"].selection.rows
        files = st.session_state.get("_worklist_files", [])
        if rows and rows[0] < len(files):
            st.session_state["predict_pick"] = files[rows[0]]

    st.dataframe(
        wl, hide_index=True, width="stretch", key="predict_worklist", on_select=_pick_row, selection_mode="single-row",
        column_order=["rank", "thumbnail", "shown", "probability", "decision"] + (["truth"] if show_truth else [])
        + (["note"] if wl["note"].astype(bool).any() else []),
        column_config={
            "rank": st.column_config.NumberColumn("#", width="small"),
            "thumbnail": st.column_config.ImageColumn("Image", width="small"),
            "shown": st.column_config.TextColumn("File", width="medium", help="File name (the CSV has the full name)."),
            "probability": st.column_config.ProgressColumn(
                f"Probability of {task.finding}", min_value=0.0, max_value=1.0, format="percent",
                help="The model's output for the image."),
            "decision": st.column_config.TextColumn("Decision", help=f"Flagged when probability ≥ {thr:.4f}"),
            "truth": st.column_config.TextColumn("Dataset label", help="Only for test-set examples."),
            "note": st.column_config.TextColumn("Caution", help="Input checks: wrong kind of image, or unusual for this model. Open the image for details."),
        },
    )
    st.download_button(
        "Download worklist (CSV)", scoring.worklist_csv(wl, thr, task.name, mid),
        file_name=f"secondlook_{task.name}_{mid}_worklist.csv", mime="text/csv", key="predict_csv",
    )
    names = wl["file"].tolist()
    if st.session_state.get("predict_pick") not in names:
        st.session_state.pop("predict_pick", None)
    pick = st.selectbox("Show details for", names, key="predict_pick")
    detail(next(r for r in ok if r["name"] == pick))
    handoff.panel(ctx, ok)
