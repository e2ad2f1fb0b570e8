"""Site validation: verify the model on this site's own labelled cases, or on the results its readers confirmed
(reader-confirmed, not ground truth); save a local operating point as a profile (site admins)."""
import streamlit as st

from core.inference import scoring
from core.site import build, cases, profiles
from ui import access, common, sites

access.require("site_profiles")

ctx = common.context()
st.title("Site validation")
common.require_model(ctx)
common.require_intact_model(ctx)
task, mid = ctx.task, ctx.model_id

st.markdown(
    f"Bring your own labelled cases for **{common.model_label(task.name, mid)}**: SecondLook scores them and shows "
    "every metric at the current operating point with intervals, the ROC and the calibration on *your* cases, and "
    "proposes a local operating point by the task's own rule. Files are read in memory only and never saved; a "
    "saved profile keeps only the numbers."
)

# ---------------------------------------------------------------- build ----------------------------------------
with st.container(border=True):
    st.subheader("Evaluate local cases")
    mode = st.radio("Cases as", ["images", "zip"], key="site_mode", horizontal=True,
                    format_func=lambda m: "Images + labels CSV" if m == "images" else "One zip (images + labels CSV)")
    images = labels = archive = None
    if mode == "images":
        images = st.file_uploader("Images", accept_multiple_files=True, key="site_images", type=scoring.upload_types())
        labels = st.file_uploader("Labels CSV: path,label[,patient_id]", type=["csv"], key="site_labels",
                                  help=f"label is {task.negative} or {task.positive} (or 0/1); patient_id gives patient-level intervals.")
    else:
        archive = st.file_uploader("Zip", type=["zip"], key="site_zip")
    name = st.text_input("Profile name", key="site_name", placeholder="e.g. my-lab-2026")
    if st.button("Evaluate", key="site_evaluate", type="primary", disabled=not name.strip()):
        try:
            with st.spinner("Scoring the local cases…"):
                site_cases = sites.read_cases(task.name, mode, images, labels, archive)
                st.session_state[sites.REPORT] = sites.evaluate(task.name, mid, name.strip(), site_cases)
        except cases.SiteInputError as exc:
            st.session_state.pop(sites.REPORT, None)
            sites.show_problems(exc)

with st.container(border=True):
    st.subheader("Cases confirmed at this site")
    st.caption("The calls readers recorded beside SecondLook's results here (Predict: *Confirm or disagree*), with the "
               "probability the model gave when it was shown; only this model file's results, each at its reader's "
               f"latest call. **These labels are {build.READER_CONFIRMED}**: the same intervals and the same rule for a "
               "local operating point as hand-made labels, but they measure the model against your readers.")
    site_names = sites.confirmed_sites(task.name, mid)
    where = st.selectbox("Confirmed under", [sites.ALL_SITES] + site_names, key="site_confirmed_where",
                         help="All the results confirmed with this model file, or only those shown under one site profile.")
    where = None if where == sites.ALL_SITES else where
    found_confirmed = sites.confirmed_cases(task.name, mid, where)
    n_pos = int((found_confirmed["label"] == 1).sum())
    st.markdown(f"**{len(found_confirmed)} confirmed cases** ({n_pos} {task.positive}, {len(found_confirmed) - n_pos} "
                f"{task.negative} by the readers' calls; {build.READER_CONFIRMED}).")
    if len(found_confirmed):
        st.dataframe(sites.confirmed_table(task.name, found_confirmed), hide_index=True, width="stretch",
                     key="site_confirmed_table", height=min(240, 38 + 35 * len(found_confirmed)))
    cname = st.text_input("Profile name", key="site_confirmed_name", placeholder="e.g. ward-3-confirmed")
    if st.button("Evaluate confirmed cases", key="site_confirmed_evaluate", type="primary",
                 disabled=not cname.strip() or not len(found_confirmed)):
        try:
            st.session_state[sites.REPORT] = sites.evaluate_confirmed(task.name, mid, cname.strip(), where)
        except cases.SiteInputError as exc:
            st.session_state.pop(sites.REPORT, None)
            st.warning(str(exc), icon=":material/warning:")

rep = st.session_state.get(sites.REPORT)
if rep and rep["task"] == task.name and rep["model"] == mid:
    prof = rep["profile"]
    st.subheader(f"Local validation — {prof.name}")
    sites.show_report(prof, rep["y"], rep["s"], key="site_new")

    def _save() -> None:
        try:
            sites.save_and_apply(prof)  # the site admin's, checked on the server; names who saved it
            st.session_state["site_saved"] = prof.name
        except profiles.ProfileError as exc:
            st.session_state["site_saved_error"] = str(exc)

    st.button(f"Save as site profile '{prof.name}' and use it", key="site_save", on_click=_save,
              help="Stores the numbers (no images) in the site database and makes it the active profile in the sidebar.")
if st.session_state.get("site_saved"):
    st.success(f"Saved site profile '{st.session_state.pop('site_saved')}'; it is now active in the sidebar.",
               icon=":material/check_circle:")
if st.session_state.get("site_saved_error"):
    st.error(st.session_state.pop("site_saved_error"), icon=":material/error:")

# ---------------------------------------------------------------- saved ----------------------------------------
st.subheader("Saved profiles")
found = profiles.list_profiles(task.name)
if not found:
    st.caption("No site profiles for this task yet.")
else:
    st.dataframe(sites.profiles_frame(found, common.version(task.name, mid)), hide_index=True, width="stretch", key="site_table")
    labels_ = [f"{p.name} · {p.model_id}" for p in found]
    pick = st.selectbox("Show profile", labels_, key="site_pick")
    chosen = found[labels_.index(pick)]
    with st.expander(f"Profile '{chosen.name}' ({chosen.model_id})", expanded=False):
        sites.show_report(chosen, key="site_saved_view")
    if chosen.note:
        st.caption(f"Note: {chosen.note}")
    c_export, c_delete = st.columns([1, 1])
    c_export.download_button("Export profile (JSON)", profiles.export_json(chosen), key="site_export",
                             mime="application/json",
                             file_name=f"secondlook_site_{chosen.name}_{chosen.task}_{chosen.model_id}.json")
    c_delete.button(f"Delete profile '{chosen.name}'", key="site_delete", on_click=sites.delete, args=(chosen,),
                    icon=":material/delete:", help="Removes it from the site database; nobody can use it afterwards.")

imp = st.file_uploader("Import a profile (JSON)", type=["json"], key="site_import")
if imp is not None:
    try:
        got = profiles.import_json(imp.getvalue(), replace=True)  # checked against that model's card
        st.success(f"Imported site profile '{got.name}' for {got.task}/{got.model_id}.", icon=":material/check_circle:")
    except profiles.ProfileError as exc:
        st.error(str(exc), icon=":material/error:")
