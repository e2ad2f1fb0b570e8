"""Hand-off widgets for the pages: audit rows for what Predict shows, the PDF report download, Send to PACS, and
the PACS browser (list studies, fetch one into memory, score it).

Every PACS widget is hidden unless `SECONDLOOK_PACS` is set; a PACS failure is one message, never a traceback.
"""
from __future__ import annotations

import streamlit as st

from core import audit, users
from core.handoff import case as C
from core.handoff import pacs
from ui import access, common

AUDITED_KEY = "_handoff_audited"
SEND_MSG_KEY = "_handoff_send_msg"


def pacs_node() -> pacs.Node | None:
    """The configured PACS, or None (also when SECONDLOOK_PACS is malformed: the page says so)."""
    try:
        return pacs.configured()
    except ValueError:
        return None


def pacs_configured() -> bool:
    return pacs_node() is not None


def pacs_config_error() -> str | None:
    """The reason SECONDLOOK_PACS is unusable when it is set but malformed (the PACS features stay hidden)."""
    try:
        pacs.configured()
        pacs.our_aet()
    except ValueError as exc:
        return str(exc)
    return None


def _info(ctx) -> C.ModelInfo:
    return C.model_info(ctx.task.name, ctx.model_id, threshold=ctx.threshold, card=ctx.card)


def _site(ctx) -> str | None:
    site = getattr(ctx, "site", None)  # the sidebar's active site profile (core.site.profiles.SiteProfile)
    return getattr(site, "name", None)


def audit_results(ctx, results: list[dict], surface: str = "app") -> None:
    """One audit row per image and decision shown in this session (reruns and repeated views add none).

    `results`: Predict's dicts with 'scored' (scoring.Scored). A changed operating point is a new decision, so it
    is recorded again. A failing audit log shows one warning and never stops the page.
    """
    done: set = st.session_state.setdefault(AUDITED_KEY, set())
    thr, sha, site = float(ctx.threshold), common.version(ctx.task.name, ctx.model_id), _site(ctx)
    for r in results:
        s = r["scored"]
        key = (s.digest, ctx.task.name, ctx.model_id, sha, round(thr, 10), site)
        if not s.ok or key in done:
            continue
        try:
            from core.inference.decision import decide

            d = decide(s.probability, thr, ctx.task, getattr(s, "withheld", None))
            audit.record(image_sha256=s.digest, task=ctx.task.name, model_id=ctx.model_id, model_sha256=sha or None,
                         threshold=thr, probability=s.probability if d.assessed else None, decision=d.label,
                         withheld_reason=d.withheld, site_profile=site, surface=surface, user=access.current_user(),
                         caution="; ".join(s.warnings) if d.assessed and s.warnings else None)
            done.add(key)
        except (audit.AuditError, ValueError) as exc:
            st.warning(f"The audit log could not be written: {exc}", icon=":material/history:")
            return


def build_case(ctx, results: list[dict], fields: C.FieldCase | None = None, user: users.User | None = None) -> C.Case:
    """The hand-off case: scored images and/or a case of whole smear fields (`ui.cell_review`), naming `user` (by
    default this session's) as who produced it."""
    info = _info(ctx)
    images = [C.from_scored(info, r["scored"], r["data"]) for r in results]
    for img, r in zip(images, results):
        img.name = r["name"]
    who = user if user is not None else access.current_user()
    return C.Case(info, images, _site(ctx), fields=fields, produced_by=C.produced_by(who))


def pdf_bytes(ctx, results: list[dict], include_patient: bool = False, fields: C.FieldCase | None = None,
              user: users.User | None = None) -> bytes:
    """The PDF for `user` (by default this session's; the download button passes the user read while the page was
    drawn, because it makes the PDF on click, outside the session's script, where st.user cannot be read)."""
    from core.handoff.report import build_pdf

    user = user if user is not None else access.current_user()
    users.require(user, "report")  # checked when the PDF is made, on the server, whatever the page showed
    return build_pdf(build_case(ctx, results, fields, user), include_patient=include_patient)


def send_results(ctx, results: list[dict], fields: C.FieldCase | None = None) -> str:
    """SC + SR of every scored image to the PACS; returns the message to show (success or the PacsError)."""
    from core.handoff.dicom_out import build_case as dicom_case

    if not access.can("report"):
        return f"error:{access.current_user().label} ({access.current_user().role}) may not send results to the PACS."
    node = pacs_node()
    if node is None:
        return "error:No PACS is configured (SECONDLOOK_PACS)."
    try:
        objs = [ds for res in dicom_case(build_case(ctx, results, fields), include_patient=True)
                for ds in res.datasets]
        sent = pacs.Pacs(node).store(objs)
    except pacs.PacsError as exc:
        return f"error:{exc}"
    what = "outlined fields + one structured report for the case" if fields is not None else \
        "overlay + structured report per image"
    return f"ok:Sent {len(sent)} object(s) ({what}) to {node}."


def _on_send(ctx, results: list[dict], fields: C.FieldCase | None = None) -> None:
    st.session_state[SEND_MSG_KEY] = send_results(ctx, results, fields)


def panel(ctx, results: list[dict], key: str = "predict", fields: C.FieldCase | None = None) -> None:
    """PDF report download for the current result or case, and Send to PACS when a PACS is configured. `fields`: a
    case of whole smear fields with the technician's confirmed result (`ui.cell_review`)."""
    results = [r for r in results if r["scored"].ok]
    if (not results and fields is None) or not access.can("report"):
        return
    who = access.current_user()  # read now: the PDF is made on click, outside this run
    what = ("this case" if fields is not None else "this image" if len(results) == 1
            else f"these {len(results)} images")
    with st.container(border=True):
        st.markdown(f"**Hand-off** — take the result of {what} to the patient record")
        c1, c2, c3 = st.columns([2, 2, 3], vertical_alignment="center")
        include = c3.checkbox("Patient name and id in the PDF", value=False, key=f"{key}_pdf_patient",
                              help="Off by default: the PDF shows no patient identifiers unless you ask for them.")
        name = f"case_{fields.case_id}" if fields is not None else ctx.model_id
        c1.download_button("Download PDF report", data=lambda: pdf_bytes(ctx, results, include, fields, who),
                           on_click="ignore", file_name=f"secondlook_{ctx.task.name}_{name}_report.pdf", mime="application/pdf",
                           key=f"{key}_pdf", icon=":material/picture_as_pdf:",
                           help=("Case report: the confirmed result beside the automatic count, the fields outlined, "
                                 "the operating points, model card summary and the disclaimer." if fields is not None else
                                 "Case report: images with Grad-CAM, probability, decision, what the operating point "
                                 "means, model card summary and the disclaimer.") + " Made on click, in memory.")
        node, bad = pacs_node(), pacs_config_error()
        if bad:
            st.caption(f":material/cloud_off: PACS features are off: {bad}.")
        if node is not None and not bad:
            c2.button("Send to PACS", key=f"{key}_send", on_click=_on_send, args=(ctx, results, fields),
                      icon=":material/cloud_upload:",
                      help=f"Stores a labelled overlay image and a structured report per image in {node}, in the "
                           "source study (patient details copied from it so the PACS files them with the study).")
        msg = st.session_state.pop(SEND_MSG_KEY, None)
        if msg:
            kind, text = msg.split(":", 1)
            (st.success if kind == "ok" else st.error)(text, icon=":material/cloud_done:" if kind == "ok" else ":material/cloud_off:")


# ---------------------------------------------------------------- PACS browser ----------------------------------

FETCHED_KEY = "pacs_fetched"


def pacs_browser() -> list[tuple[str, bytes]] | None:
    """List studies in the PACS and fetch one into memory; returns its images (name, bytes) for the page to score
    (routed like uploads: `ui.routed.render_study`), or None."""
    node = pacs_node()
    if node is None:
        st.info("No PACS is configured. Set `SECONDLOOK_PACS=AET@host:port` (and `SECONDLOOK_AET` for SecondLook's "
                "own AE title) and restart the app.", icon=":material/lan:")
        return
    st.caption(f"PACS **{node}**, calling as **{pacs.our_aet()}**. Studies are fetched into memory only.")
    with st.form("pacs_query", border=False):
        c1, c2, c3 = st.columns(3)
        pid = c1.text_input("Patient ID", key="pacs_q_pid", help="Exact, or with * wildcards. Empty: any.")
        date = c2.text_input("Study date", key="pacs_q_date", placeholder="YYYYMMDD or YYYYMMDD-YYYYMMDD")
        acc = c3.text_input("Accession number", key="pacs_q_acc")
        submitted = st.form_submit_button("Search", icon=":material/search:")
    if submitted or "pacs_studies" not in st.session_state:
        try:
            st.session_state["pacs_studies"] = pacs.Pacs(node).find_studies(patient_id=pid, study_date=date,
                                                                            accession_number=acc)
        except (pacs.PacsError, ValueError) as exc:
            st.session_state.pop("pacs_studies", None)
            st.error(str(exc), icon=":material/cloud_off:")
            return
    studies = st.session_state["pacs_studies"]
    if not studies:
        st.info("No study matches.")
        return
    show_phi = st.toggle("Show patient identifiers", value=False, key="pacs_show_phi")
    cols = {"StudyDate": "Date", "StudyDescription": "Description", "ModalitiesInStudy": "Modalities",
            "NumberOfStudyRelatedInstances": "Instances", "AccessionNumber": "Accession"}
    if show_phi:
        cols = {"PatientName": "Patient", "PatientID": "Patient ID", **cols}
    st.dataframe([{label: s[k] for k, label in cols.items()} for s in studies], hide_index=True, width="stretch",
                 key="pacs_table")
    labels = {s["StudyInstanceUID"]: f"{s['StudyDate'] or '?'} · {s['StudyDescription'] or 'no description'} · "
                                     f"{s['ModalitiesInStudy'] or '?'} · {s['NumberOfStudyRelatedInstances'] or '?'} "
                                     "instance(s)" for s in studies}
    uid = st.selectbox("Study", list(labels), format_func=labels.get, key="pacs_pick")
    if st.button("Fetch and score", key="pacs_fetch", icon=":material/download:"):
        try:
            got = pacs.Pacs(node).fetch_study(uid)
        except (pacs.PacsError, ValueError) as exc:
            st.error(str(exc), icon=":material/cloud_off:")
            return
        files = [(f"{ds.get('SeriesNumber', '')}-{ds.get('InstanceNumber', i + 1)}", pacs.dataset_bytes(ds))
                 for i, ds in enumerate(got) if pacs.is_scorable(ds)]
        st.session_state[FETCHED_KEY] = {"uid": uid, "files": files, "skipped": len(got) - len(files)}
    fetched = st.session_state.get(FETCHED_KEY)
    if not fetched or fetched["uid"] != uid:
        return None
    if fetched["skipped"]:
        st.caption(f"{fetched['skipped']} instance(s) skipped: not images, or SecondLook's own results.")
    return [(f"image {name}", data) for name, data in fetched["files"]]
