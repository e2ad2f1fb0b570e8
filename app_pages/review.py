"""Misclassified review: the test set's missed cases and false alarms at the current operating point, with tags."""
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import dataset_available
from core.evaluation import operating_point as op
from core.evaluation import reviews
from ui import access, common, imaging

access.require("research")

PAGE_SIZE = 12
COLS = 4

ctx = common.context()
st.title("Misclassified review")
common.require_model(ctx)

task, mid, thr = ctx.task, ctx.model_id, ctx.threshold
sha = common.version(task.name, mid)
pos_noun, neg_noun, unit = op.nouns(task)
test = common.predictions(task.name, mid, "test")
if test is None:
    st.info("This model has no test predictions yet (test_predictions.csv), so there is nothing to review.")
    st.stop()

point = op.at(common.curve(task.name, mid, "test"), thr)
st.markdown(
    f"At threshold **{thr:.4f}** the model **missed {point['fn']} of {point['n_pos']}** {pos_noun} "
    f"(false negatives) and raised **false alarms on {point['fp']} of {point['n_neg']}** {neg_noun} "
    "(false positives) in the held-out test set. Most confident mistakes come first."
)

if not dataset_available(task.name):
    st.warning(common.data_missing_message(task.name), icon=":material/folder_off:")
    st.stop()


@st.cache_data(show_spinner=False, max_entries=256)
def _mistakes(task_name: str, model_id: str, sha: str, thr: float) -> pd.DataFrame:
    t = common._predictions(task_name, model_id, "test", sha)
    man = common.manifest(task_name)
    extra_cols = [c for c in ("path", "file", "subtype", "patient_id", "finding_labels", "view_position") if c in man.columns]
    return reviews.misclassified(t, thr, man[extra_cols])


mis = _mistakes(task.name, mid, sha, float(thr))
tags = reviews.latest_tags(task.name)

# ---------------------------------------------------------------- filters --------------------------------------
KINDS = {"both": f"Both ({point['fn'] + point['fp']})", "fn": f"Missed ({point['fn']})", "fp": f"False alarms ({point['fp']})"}
subtypes = sorted(s for s in mis.get("subtype", pd.Series(dtype=str)).dropna().unique() if s)
filters = st.columns([3, 2, 2] if subtypes else [3, 2], vertical_alignment="bottom")
with filters[0]:
    kind = st.segmented_control("Show", list(KINDS), format_func=KINDS.get, key="review_kind", default="both", required=True,
                                help="Missed = false negatives (the finding was there, the model cleared the image). "
                                     "False alarms = false positives (no finding, the model flagged it).") or "both"
chosen_sub = []
if subtypes:
    with filters[1]:
        chosen_sub = st.multiselect("Subtype", subtypes, key=f"review_subtype_{task.name}", placeholder="All subtypes",
                                    help="Dataset subtype of the image (pneumonia: bacterial / viral; normal).")
with filters[-1]:
    tag_filter = st.selectbox("Tag status", ["All cases", "Not yet tagged", *reviews.TAGS.values()], key="review_tagfilter")

view = mis
if kind != "both":
    view = view[view["error"] == kind]
if chosen_sub:
    view = view[view["subtype"].isin(chosen_sub)]
if tag_filter == "Not yet tagged":
    view = view[~view["path"].isin(tags)]
elif tag_filter != "All cases":
    want = next(k for k, v in reviews.TAGS.items() if v == tag_filter)
    view = view[view["path"].map(lambda p: tags.get(p, {}).get("tag") == want)]
view = view.reset_index(drop=True)

if view.empty:
    st.success("No cases match these filters at this operating point.", icon=":material/check_circle:")
else:
    n_pages = max(1, math.ceil(len(view) / PAGE_SIZE))
    pkey = "review_page"
    if st.session_state.get(pkey, 1) > n_pages:
        st.session_state[pkey] = 1
    p1, p2, p3 = st.columns([4, 2, 1.3], vertical_alignment="bottom")
    with p2:
        cam_all = st.toggle("Heat maps on every card", key="review_cam_all",
                            help="Overlay the Grad-CAM map of evidence for the finding on every card.")
    with p3:
        page = st.number_input(f"Page (of {n_pages})", 1, n_pages, step=1, key=pkey)
    start = (page - 1) * PAGE_SIZE
    chunk = view.iloc[start:start + PAGE_SIZE]
    with p1:
        st.caption(f"Showing {start + 1}–{start + len(chunk)} of {len(view)} cases, most confident mistakes first. "
                   "Press :material/open_in_full: on a card to enlarge and tag it.")

    def _open(path: str) -> None:
        st.session_state["review_open"] = path

    cols = st.columns(COLS, gap="small")
    for i, row in enumerate(chunk.itertuples()):
        with cols[i % COLS].container(border=True):
            show_cam = cam_all or st.session_state.get(f"review_cam_{row.path}", False)
            if show_cam:
                s = imaging.score_file(task.name, mid, row.file, row.path)
                st.image(imaging.rendered(task.name, mid, s, 0.4, imaging.file_bytes(row.file)), width="stretch")
            else:
                st.image(imaging.thumbnail(row.file), width="stretch")
            label = "Missed" if row.error == "fn" else "False alarm"
            st.markdown(f"**{label}** · p = {row.score:.3f}")
            sub = f" · {row.subtype}" if isinstance(getattr(row, "subtype", None), str) and row.subtype else ""
            st.caption(f"{Path(row.path).name}{sub} · truly {row.label}")
            t = tags.get(row.path)
            if t:
                st.caption(f":material/sell: {reviews.TAGS.get(t['tag'], t['tag'])}")
            b1, b2 = st.columns([3, 1], vertical_alignment="center", gap="small")
            b1.toggle("Heat map", key=f"review_cam_{row.path}", disabled=cam_all)
            b2.button("", icon=":material/open_in_full:", key=f"review_open_{row.path}", on_click=_open, args=(row.path,),
                      help="Enlarge, compare with the heat map, and tag this case")


# ---------------------------------------------------------------- case dialog ----------------------------------
def _close() -> None:
    st.session_state.pop("review_open", None)


@st.dialog("Review case", width="large", on_dismiss=_close)
def case_dialog(row: dict) -> None:
    s = imaging.score_file(task.name, mid, row["file"], row["path"])
    label = "Missed case (false negative)" if row["error"] == "fn" else "False alarm (false positive)"
    pics, form = st.columns([3, 2], gap="medium")
    with form:
        st.markdown(f"**{label}**")
        st.markdown(f"Dataset label **{row['label']}** · probability **{row['score']:.4f}** vs threshold {thr:.4f}"
                    + (f" · subtype {row['subtype']}" if isinstance(row.get("subtype"), str) and row["subtype"] else ""))
        st.caption(row["path"])
        alpha = st.slider("Heat-map opacity", 0.0, 1.0, 0.4, 0.05, key="review_alpha")
        tag = st.radio("What went wrong?", list(reviews.TAGS), format_func=reviews.TAGS.get, key="review_tag")
        note = st.text_area("Note (optional)", key="review_note", height=80, placeholder="What do you see?")
        if st.button("Save tag", type="primary", key="review_save", width="stretch"):
            who = access.require("research")  # checked again on the server at the moment of writing
            reviews.add_review(task.name, mid, row["path"], tag, note, true_label=row["label"], error_type=row["error"],
                               probability=row["score"], threshold=thr, reviewer=who.label, reviewer_sub=who.sub,
                               reviewer_role=who.role)
            st.session_state.pop("review_open", None)
            st.session_state.pop("review_note", None)
            st.rerun()
    with pics:
        c1, c2 = st.columns(2, gap="small")
        data = imaging.file_bytes(row["file"])
        c1.image(imaging.rendered(task.name, mid, s, 0.0, data), caption="Original", width="stretch")
        c2.image(imaging.rendered(task.name, mid, s, alpha, data), caption="Grad-CAM overlay", width="stretch")
        st.caption(imaging.gradcam_caption(task.name))
    hist = reviews.list_reviews(task.name)
    hist = hist[hist["path"] == row["path"]]
    if not hist.empty:
        st.caption("Earlier tags for this case:")
        st.dataframe(hist[["created_at", "model_id", "tag", "note"]].assign(tag=hist["tag"].map(reviews.TAGS)),
                     hide_index=True, width="stretch")


open_path = st.session_state.get("review_open")
if open_path is not None:
    match = mis[mis["path"] == open_path]
    if match.empty:
        _close()
    else:
        case_dialog(match.iloc[0].to_dict())

# ---------------------------------------------------------------- tags export ----------------------------------
st.subheader("Tags")
all_tags = reviews.list_reviews(task.name)
if all_tags.empty:
    st.caption(f"No tags yet. Open a case to tag it. Tags are stored on this machine in `{reviews.db_path()}`.")
else:
    st.dataframe(all_tags.assign(tag=all_tags["tag"].map(reviews.TAGS))[
        ["created_at", "model_id", "path", "true_label", "error_type", "probability", "tag", "note"]],
        hide_index=True, width="stretch", key="review_tags_table")
    st.download_button("Download tags (CSV)", reviews.export_csv(task.name), file_name=f"secondlook_{task.name}_tags.csv",
                       mime="text/csv", key="review_export")
    st.caption(f"Stored locally in `{reviews.db_path()}` (set SECONDLOOK_REVIEWS to move it).")
