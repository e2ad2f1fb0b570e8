"""The clinical Predict page: one upload box; each file is recognised (chest radiograph, blood-smear cell, whole smear
field) and answered by the model validated for that kind, at its validated operating point.

A radiograph is answered by both chest tasks, each only for its own population (`core.inference.population`): an
adult's film gets the effusion answer and the pneumonia answer withheld with the reason, a young child's the reverse.
A field is screened cell by cell with the field model at its field operating point. Uploads and results stay in
this session's memory, so leaving the page and coming back keeps them; nothing is written to disk.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.data import samples
from core.evaluation import operating_point as op
from core.fields import records
from core.inference import routing, scoring
from core.inference.decision import decide
from core.models import store
from core.registry import TASKS, get_task
from ui import access, common, confirm, handoff, imaging
from ui import fields as fieldview

KEPT = "_screen_uploads"  # [(name, bytes, dataset label or None)]: survives navigation (the uploader does not)
UPLOADER = "screen_files"
KIND_LABEL = {"radiograph": "Chest X-ray", "cell": "Blood-smear cell", "field": "Whole smear field"}
EXAMPLE_ORDER = ("pneumonia", "effusion", "malaria")


# ---------------------------------------------------------------- inputs ---------------------------------------

def _uploader_key() -> str:
    return f"{UPLOADER}_{st.session_state.get('_screen_uploader_n', 0)}"


def _on_upload() -> None:
    """The uploader changed by the user's hand. Files it holds now are kept (added once, by content); files the user
    removed from it are dropped; files kept from before a visit to another page (no longer in the box) stay."""
    ss = st.session_state
    now = [(f.name, f.getvalue(), None) for f in ss.get(_uploader_key()) or []]
    before = {scoring.digest(d) for _, d, _ in ss.get("_screen_in_box", [])}
    present = {scoring.digest(d) for _, d, _ in now}
    kept = [k for k in ss.get(KEPT, []) if not (k[2] is None and scoring.digest(k[1]) in before - present)]
    have = {scoring.digest(k[1]) for k in kept}
    ss[KEPT] = kept + [f for f in now if scoring.digest(f[1]) not in have]
    ss["_screen_in_box"] = now


def _add_example() -> None:
    ss = st.session_state
    kept = ss.setdefault(KEPT, [])
    used = {k[0] for k in kept}
    n = ss.get("_screen_example_n", 0)
    for i in range(len(EXAMPLE_ORDER)):
        task = EXAMPLE_ORDER[(n + i) % len(EXAMPLE_ORDER)]
        nxt = next((e for e in samples.examples(task) if e["path"] not in used), None)
        if nxt is not None:
            kept.append((nxt["path"], imaging.file_bytes(nxt["file"]), nxt["label"]))
            ss["_screen_example_n"] = n + i + 1
            return


def _clear() -> None:
    ss = st.session_state
    ss[KEPT] = []
    ss["_screen_in_box"] = []
    ss["_screen_uploader_n"] = ss.get("_screen_uploader_n", 0) + 1  # a new, empty upload box


@st.cache_data(show_spinner=False, max_entries=256)
def _kind(digest: str, name: str, _data: bytes) -> tuple[str | None, str | None]:
    """(kind, None) or (None, the reading error)."""
    try:
        return routing.kind_of(scoring.decode(_data, name).pixels), None
    except Exception as exc:  # InputError's message is the user's; anything else is named
        from core.io import InputError

        return None, str(exc) if isinstance(exc, InputError) else f"{name}: SecondLook could not read this file ({type(exc).__name__})."


def _ctx(task_name: str) -> common.Context:
    """A task's validated default model at its current operating point (the sidebar's for that task, a site
    profile's when one is active for it)."""
    from ui import sites

    models = store.bundled_models(task_name)
    mid = common.recommended_model(task_name)
    mid = mid if mid in models else models[0]
    return common.Context(get_task(task_name), models, mid, common.threshold(task_name, mid),
                          common.card(task_name, mid), sites.active_profile(task_name, mid))


def _tasks_for(kind: str) -> list[str]:
    modality = "xray" if kind == "radiograph" else "smear"
    return [t for t in TASKS if TASKS[t].modality == modality and store.bundled_models(t)]


# ---------------------------------------------------------------- views ----------------------------------------

def _answer(ctx: common.Context, s: scoring.Scored, truth: str | None) -> None:
    """One task's answer for one image: the decision in plain words, or why there is none."""
    t, thr = ctx.task, ctx.threshold
    st.markdown(f"**{t.title}**")
    if s.withheld:
        st.error(f"**Not assessed.** {s.withheld}", icon=":material/block:")
        return
    p = s.probability
    shown_p, shown_t = op.fmt_pair(p, thr)
    flagged = op.decide(p, thr)
    st.metric("Decision", f"Flag: {t.positive}" if flagged else t.negative)
    st.metric(f"Probability of {t.finding}", shown_p)
    changed = abs(thr - common.default_threshold(t.name, ctx.model_id)) > 1e-12
    point = (f"site profile {ctx.site.name}'s operating point" if ctx.site is not None else
             "the operating point (changed in the sidebar)" if changed else "the validated operating point")
    st.markdown(f"{shown_p} is {'at or above' if flagged else 'below'} {point} {shown_t}: "
                + (f":red[**flagged**] for {t.finding}." if flagged else ":green[not flagged].")
                + (f" Population: {s.population['group']}"
                   + (f" (DICOM age {s.population['age_years']:g} years)." if s.population.get("source") == "dicom"
                      else " (by the image's age-group check).") if s.population else ""))
    for line in honest_lines(ctx.task.name, ctx.model_id, thr):
        st.caption(line)
    for w in s.warnings:
        st.warning(w, icon=":material/report:")
    if truth is not None:
        st.caption(f"Example from the held-out test set: dataset label **{truth}**.")


def honest_lines(task: str, model_id: str, thr: float) -> list[str]:
    """Validation, test and (at the shipped point) external figures at this operating point, least flattering first."""
    figures = {}
    for which, name in (("val", "validation"), ("test", "test")):
        c = common.curve(task, model_id, which)
        if c is not None:
            figures[name] = op.split_rates(op.at(c, thr))
    card = common.card(task, model_id)
    if abs(thr - float(card.get("threshold", -1))) < 1e-9:
        for set_name, e in (card.get("external") or {}).items():
            if isinstance(e, dict) and "sensitivity" in e and e.get("n_patients_with_finding"):
                n_pos = int(e["n_patients_with_finding"])
                n_neg = int(e["n_patients"]) - n_pos
                figures[f"external ({set_name})"] = {
                    "sensitivity": e["sensitivity"], "sensitivity_ci": tuple(e["sensitivity_ci"]),
                    "specificity": e["specificity"], "specificity_ci": tuple(e["specificity_ci"]),
                    "n_pos": n_pos, "n_neg": n_neg}
    return op.honest_summary(task, figures)


def _film(ctx: common.Context, s: scoring.Scored, data: bytes, key: str) -> None:
    """The picture, large, with the Grad-CAM of the answering task on request (click the picture to enlarge).
    A picture no task assessed is shown as it is: a heat map there would be evidence for nothing."""
    if s.withheld:
        st.image(imaging.rendered(ctx.task.name, ctx.model_id, s, 0.0, data), width="stretch",
                 caption="Original (no task assessed this image, so no heat map)")
        return
    show = st.toggle("Grad-CAM", value=True, key=f"{key}_cam", help="Where the model found evidence for the finding.")
    alpha = 0.4
    if show:
        alpha = st.slider("Heat-map opacity", 0.0, 1.0, 0.4, 0.05, key=f"{key}_alpha")
    st.image(imaging.rendered(ctx.task.name, ctx.model_id, s, alpha if show else 0.0, data), width="stretch",
             caption=("Grad-CAM overlay: " + imaging.gradcam_caption(ctx.task.name)) if show else "Original")


def _detail(item: dict) -> None:
    with st.container(border=True):
        st.markdown(f"#### {item['name']} · {KIND_LABEL[item['kind']]}")
        left, right = st.columns([6, 5], gap="medium")
        answered = [(c, s) for c, s in item["answers"] if not s.withheld] or item["answers"][:1]
        with left:
            ctx, s = answered[0]
            _film(ctx, s, item["data"], f"screen_{item['digest'][:12]}")
        with right:
            for ctx, s in item["answers"]:
                with st.container(border=True):
                    _answer(ctx, s, item["truth"])
                    confirm.panel(ctx, s, key=f"confirm_{ctx.task.name}_{item['digest'][:16]}")
            s0 = item["answers"][0][1]
            for note in s0.notes:
                st.caption(f":material/info: {note}")
            if s0.phi:
                st.warning("This file carries patient identifiers. SecondLook shows them to you only and stores nothing.",
                           icon=":material/lock:")
                with st.expander("Patient identifiers (shown on request only)", icon=":material/lock:"):
                    st.json(s0.phi, expanded=True)


def _summary(item: dict) -> str:
    parts = []
    for ctx, s in item["answers"]:
        name = ctx.task.title.split(" (")[0]
        if s.withheld:
            parts.append(f"{name}: not assessed")
        else:
            d = decide(s.probability, ctx.threshold, ctx.task, None)
            parts.append(f"{name}: {d.short(ctx.task.positive)} ({op.fmt_pair(s.probability, ctx.threshold)[0]})")
    return "; ".join(parts)


# ---------------------------------------------------------------- page -----------------------------------------

def answer(files: list[tuple[str, bytes, str | None]]) -> tuple[list[dict], list[dict]]:
    """Route and score files: (items with every task's answer for radiographs and cells, fields to screen).
    A file that cannot be read, or of a kind without an installed model, is shown as an error here."""
    items, field_inputs = [], []
    with st.spinner("Scoring…"):
        for name, data, truth in files:
            digest = scoring.digest(data)
            kind, error = _kind(digest, name, data)
            if error:
                st.error(error, icon=":material/error:")
                continue
            if not access.can("score_xray" if kind == "radiograph" else "score_smear"):  # checked per file, on the server
                u = access.current_user()
                st.error(f"{name}: this looks like a {KIND_LABEL[kind].lower()}, which your role ({u.role}) does not "
                         "score; nothing was scored.", icon=":material/block:")
                continue
            if kind == "field":
                field_inputs.append({"name": name, "data": data})
                continue
            answers = []
            for t in _tasks_for(kind):
                ctx = _ctx(t)
                try:
                    answers.append((ctx, imaging.score(t, ctx.model_id, data, name)))
                except Exception as exc:  # one file or model failing never hides the others
                    why = f"{name}: SecondLook could not score this file for {t} ({type(exc).__name__}: {exc})."
                    answers.append((ctx, scoring.Scored(name, digest, error=why)))
            if not answers:
                st.error(f"{name}: this looks like a {KIND_LABEL[kind].lower()}, and no model for it is installed.")
                continue
            bad = next((s for _, s in answers if not s.ok), None)
            if bad is not None:
                st.error(bad.error, icon=":material/error:")
                continue
            items.append({"name": name, "data": data, "truth": truth, "kind": kind, "digest": digest, "answers": answers})
    return items, field_inputs


def _audit(items: list[dict]) -> None:
    """One audit row per image, task and decision shown (reruns and repeated views add none)."""
    for t in sorted({c.task.name for it in items for c, _ in it["answers"]}):
        handoff.audit_results(_ctx(t), [{"scored": s, "name": it["name"], "data": it["data"]}
                                        for it in items for c, s in it["answers"] if c.task.name == t])


def render_study(files: list[tuple[str, bytes]]) -> None:
    """A study fetched from the PACS: every image routed like an upload; one row per image and task."""
    items, field_inputs = answer([(n, d, None) for n, d in files])
    if field_inputs:
        st.info(f"{len(field_inputs)} whole smear field(s) in this study: screen them on Predict.", icon=":material/biotech:")
    if not items:
        st.info("The study has no image SecondLook can score.")
        return
    _audit(items)
    rows = []
    for it in items:
        for c, s in it["answers"]:
            d = decide(s.probability, c.threshold, c.task, s.withheld)
            rows.append({"Image": it["name"], "Task": c.task.title.split(" (")[0],
                         "probability": s.probability if d.assessed else None, "Decision": d.short(c.task.positive),
                         "Why not assessed": s.withheld or ""})
    st.dataframe(rows, hide_index=True, width="stretch", key="pacs_results",
                 column_config={"probability": st.column_config.ProgressColumn(
                     "Probability of the finding", min_value=0.0, max_value=1.0, format="percent")})
    for t in sorted({c.task.name for it in items for c, _ in it["answers"]}):
        done = [{"scored": s, "name": it["name"], "data": it["data"]}
                for it in items for c, s in it["answers"] if c.task.name == t and not s.withheld]
        if done:
            handoff.panel(_ctx(t), done, key=f"pacs_{t}")

def render() -> None:
    ss = st.session_state
    st.title("Predict")
    st.markdown("Upload chest X-rays, blood-smear cell images or whole smear fields. Each file goes to the model "
                "validated for its kind of image and patient, at that task's operating point in the sidebar "
                "(its validated default unless you change it).")
    types = scoring.upload_types()
    col_up, col_ex = st.columns([3, 1], vertical_alignment="top")
    with col_up:
        st.file_uploader("Upload images", type=types, accept_multiple_files=True, key=_uploader_key(), on_change=_on_upload,
                         help="Files stay in this app's memory for scoring and are never written to disk.")
        st.caption(f"Accepted: {', '.join(t.upper() for t in types)}. Kept in memory only, never saved.")
    with col_ex:
        st.button("Try an example", on_click=_add_example, width="stretch", key="screen_try",
                  help="Adds a held-out test image (the models never trained on it): X-rays and cells in turn.")
        if ss.get(KEPT):
            st.button("Clear all", on_click=_clear, width="stretch", key="screen_clear")
    kept = ss.get(KEPT, [])
    if not kept:
        st.markdown("Upload an image above, or press **Try an example**.")
        return
    in_box = {scoring.digest(d) for _, d, _ in ss.get("_screen_in_box", [])} if ss.get(_uploader_key()) else set()
    if any(k[2] is None and scoring.digest(k[1]) not in in_box for k in kept):
        n = sum(k[2] is None and scoring.digest(k[1]) not in in_box for k in kept)
        st.caption(f":material/inventory_2: {n} uploaded file(s) kept from before (in memory). **Clear all** removes them.")

    items, field_inputs = answer(kept)
    _audit(items)
    if field_inputs:
        fm = records.field_model()
        fthr, source = records.field_threshold(fm)
        st.caption(f"Whole fields are screened with the model validated on whole fields, at its {source} {fthr:.4f}.")
        fieldview.render("malaria", fm, fthr, field_inputs)
    if not items:
        return
    if len(items) > 1:
        st.subheader(f"Worklist — {len(items)} images")
        st.dataframe([{"File": Path(it["name"]).name, "Kind": KIND_LABEL[it["kind"]], "Answer": _summary(it)} for it in items],
                     hide_index=True, width="stretch", key="screen_worklist")
        names = [it["name"] for it in items]
        if ss.get("screen_pick") not in names:
            ss.pop("screen_pick", None)
        pick = st.selectbox("Show details for", names, key="screen_pick")
        item = next(it for it in items if it["name"] == pick)
    else:
        item = items[0]
    _detail(item)
    for ctx, s in item["answers"]:
        if not s.withheld:
            handoff.panel(ctx, [{"scored": s, "name": item["name"], "data": item["data"]}],
                          key=f"screen_{ctx.task.name}")
