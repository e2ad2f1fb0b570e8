"""Whole-field view of the Predict page (malaria): every found cell outlined and numbered, counts and parasitemia that
follow the sidebar's operating point, the technician's cell review (`ui.cell_review`), a gallery of the most suspicious
cells with Grad-CAM, CSVs. Memory only."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from core.evaluation import operating_point as op
from core.fields import records, screen
from core.inference import scoring
from core.registry import get_task
from ui import cell_review, common

GALLERY = 12
OUTLINE = (60, 170, 90)  # uncalled cells: green
EDGE = (70, 130, 220)  # cells cut by the picture's edge (reviewable, not counted): blue


@st.cache_data(show_spinner=False, max_entries=64)
def _pixels(digest: str, name: str, _data: bytes) -> np.ndarray | None:
    try:
        return scoring.decode(_data, name).pixels
    except Exception:  # the normal path reports the decoding error
        return None


def is_field(data: bytes, name: str) -> bool:
    """A colour picture big enough to be a microscope field rather than one cell crop."""
    px = _pixels(scoring.digest(data), name, data)
    return px is not None and screen.looks_like_field(px)


@st.cache_data(show_spinner=False, max_entries=64)
def _screen(task: str, model_id: str, sha: str, digest: str, name: str, _data: bytes) -> screen.FieldScreen:
    px = _pixels(digest, name, _data)
    return screen.screen_field(px, common.model(task, model_id), get_task(task).model(model_id), name, keep_crops=True)


def colour(p: float, thr: float) -> tuple[int, int, int]:
    """Green below half the threshold, then orange to red as the probability reaches and passes it."""
    if p < thr / 2:
        return OUTLINE
    t = float(np.clip((p - thr / 2) / max(1 - thr / 2, 1e-6), 0, 1))
    return (230, int(150 * (1 - t)), 30)


@st.cache_data(show_spinner=False, max_entries=128)
def _outlined(digest: str, name: str, thr: float, boxes: bytes, probs: bytes, edge: bytes, _data: bytes) -> bytes:
    img = _pixels(digest, name, _data).copy()
    b = np.frombuffer(boxes, np.int64).reshape(-1, 4)
    pr = np.frombuffer(probs, np.float64)
    cut = np.frombuffer(edge, np.bool_)
    width = max(2, round(max(img.shape[:2]) / 500))
    for (x, y, w, h), p, e in sorted(zip(b.tolist(), pr.tolist(), cut.tolist()), key=lambda t: t[1]):  # called last, on top
        cv2.rectangle(img, (x, y), (x + w, y + h), EDGE if e else colour(p, thr), width * (2 if p >= thr and not e else 1))
    scale = max(img.shape[:2]) / 2100  # cell numbers (as in the review and the cells CSV), legible at display size
    for k, (x, y, _, _) in enumerate(b.tolist()):
        for ink, t in (((255, 255, 255), 3), ((20, 20, 20), 1)):
            cv2.putText(img, str(k + 1), (x + 2, y + int(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, t, cv2.LINE_AA)
    return scoring.jpeg_bytes(scoring.display_image(img, 1280), quality=88)


def outlined(s: screen.FieldScreen, data: bytes, thr: float) -> bytes:
    return _outlined(scoring.digest(data), s.name, round(thr, 6), s.boxes.astype(np.int64).tobytes(),
                     s.probabilities.astype(np.float64).tobytes(), (~s.in_count).tobytes(), data)


def cell_rows(screens: list[screen.FieldScreen], thr: float) -> pd.DataFrame:
    rows = [{"field": s.name, "cell": i + 1, "x": int(b[0]), "y": int(b[1]), "w": int(b[2]), "h": int(b[3]),
             "probability": float(p), "decision": "infected" if p >= thr else "uninfected", "counted": bool(c)}
            for s in screens for i, (b, p, c) in enumerate(zip(s.boxes, s.probabilities, s.in_count))]
    return pd.DataFrame(rows, columns=["field", "cell", "x", "y", "w", "h", "probability", "decision", "counted"])


def field_rows(screens: list[screen.FieldScreen], thr: float, model_id: str) -> pd.DataFrame:
    rows = []
    for s in screens:
        r = s.result(thr, model_id)
        ci = r["parasitemia_ci"] or [None, None]
        rows.append({"field": s.name, "red_cells": r["n_cells"], "infected": r["n_infected"],
                     "parasitemia_pct": r["parasitemia"], "ci_low_pct": ci[0], "ci_high_pct": ci[1],
                     "threshold": thr, "model": model_id, "note": s.message})
    return pd.DataFrame(rows)


def _use_field_point(task: str, model_id: str, value: float) -> None:
    common.set_threshold(task, model_id, value)


def _switch_model(task: str, model_id: str) -> None:
    common.select_model(task, model_id)


def render(task_name: str, model_id: str, thr: float, fields: list[dict]) -> None:
    """`fields`: dicts with name, data (bytes). One case: all fields counted together."""
    st.subheader(f"Whole-field screening — {len(fields)} field{'s' if len(fields) != 1 else ''}, one case")
    recommended = records.field_model()
    if recommended != model_id and recommended in (m.id for m in get_task(task_name).models):
        st.info(f"For whole fields, **{common.model_label(task_name, recommended)}** is validated on fields from a second "
                "lab; the model in the sidebar was trained on single NIH cell crops only.", icon=":material/biotech:")
        st.button(f"Use {recommended} for fields", on_click=_switch_model, args=(task_name, recommended), key="fields_switch")
    field_thr, source = records.field_threshold(model_id)
    if source.startswith("field") and abs(field_thr - thr) > 1e-9:
        st.caption(f"This model's field operating point (chosen on validation fields) is {field_thr:.4f}; the sidebar's "
                   f"is {thr:.4f}.")
        st.button(f"Use the field operating point ({field_thr:.4f})", on_click=_use_field_point,
                  args=(task_name, model_id, field_thr), key="fields_use_point")
    with st.spinner("Finding and scoring every cell…"):
        screens = [_screen(task_name, model_id, common.version(task_name, model_id), scoring.digest(f["data"]), f["name"], f["data"])
                   for f in fields]
    case = screen.case_result(screens, thr, model_id)
    c1, c2, c3 = st.columns(3)
    c1.metric("Red cells counted", f"{case['n_cells']:,}", help="Red blood cells found in all fields of this case "
              "(white cells, platelets and debris are not counted).")
    c2.metric("Infected cells", "—" if case["n_infected"] is None else f"{case['n_infected']:,}",
              help=f"Cells with a probability of at least {thr:.4f} (sidebar operating point).")
    if case["parasitemia"] is None:
        c3.metric("Parasitemia", "—")
    else:
        lo, hi = case["parasitemia_ci"]
        c3.metric("Parasitemia", f"{case['parasitemia']:.2f}%", help="Infected / counted red cells, 95% Wilson interval.")
        c3.caption(f"95% CI {lo:.2f}–{hi:.2f}%")
    st.caption("These are the automatic counts (unconfirmed): what the model calls alone. The result to report is the "
               "confirmed count of the cell review below.")
    if case["advice"]:
        st.warning(case["advice"], icon=":material/add_a_photo:")
    pictures = [outlined(s, f["data"], thr) if s.counted else None for s, f in zip(screens, fields)]
    cell_review.render(task_name, model_id, thr, screens, fields, pictures)
    for s, picture in zip(screens, pictures):
        with st.container(border=True):
            r = s.result(thr, model_id)
            head = f"#### {s.name}"
            if s.counted:
                head += f" — {r['n_cells']} red cells, {r['n_infected']} infected ({r['parasitemia']:.2f}%)"
            st.markdown(head)
            if not s.counted:
                st.error(f"{s.name}: {s.message}", icon=":material/error:")
                continue
            if s.message:
                st.warning(s.message, icon=":material/report:")
            st.image(picture, width="stretch",
                     caption="Every found red cell outlined and numbered: green below half the operating point, orange "
                             "to red as the probability reaches it; thick red = called infected; blue = cut by the "
                             "picture's edge (can be reviewed, not counted).")
    _gallery(task_name, model_id, thr, screens)
    cells = cell_rows(screens, thr)
    d1, d2 = st.columns(2)
    d1.download_button("Download cells (CSV)", cells.to_csv(index=False, float_format="%.6f").encode(),
                       file_name=f"secondlook_fields_{model_id}_cells.csv", mime="text/csv", key="fields_cells_csv")
    d2.download_button("Download fields (CSV)", field_rows(screens, thr, model_id).to_csv(index=False, float_format="%.4f").encode(),
                       file_name=f"secondlook_fields_{model_id}_fields.csv", mime="text/csv", key="fields_fields_csv")


def _gallery(task_name: str, model_id: str, thr: float, screens: list[screen.FieldScreen]) -> None:
    items = [(float(p), s, i) for s in screens if s.crops is not None for i, p in enumerate(s.probabilities)]
    if not items:
        return
    items.sort(key=lambda t: -t[0])
    top = items[:GALLERY]
    st.markdown(f"##### The {len(top)} most suspicious cells")
    cols = st.columns(6)
    for k, (p, s, i) in enumerate(top):
        with cols[k % 6]:
            st.image(scoring.png_bytes(cv2.resize(s.crops[i], (128, 128), interpolation=cv2.INTER_CUBIC)), width="stretch")
            st.caption(f"{op.fmt_prob(p)}{' · infected' if p >= thr else ''}")
    labels = [f"#{k + 1}: {s.name}, cell at ({int(s.boxes[i][0])}, {int(s.boxes[i][1])}), {op.fmt_prob(p)}" for k, (p, s, i) in enumerate(top)]
    pick = st.selectbox("Look closer at", range(len(top)), format_func=lambda k: labels[k], key="fields_pick")
    p, s, i = top[pick]
    plain, cam = cell_review.crop_views(task_name, model_id, common.version(task_name, model_id), s.crops[i].tobytes())
    a, b, c = st.columns([1, 1, 2])
    a.image(plain, caption="Cell", width="stretch")
    b.image(cam, caption="Grad-CAM overlay", width="stretch")
    c.metric("Probability infected", op.fmt_prob(p))
    c.caption(f"Exact model output: {p:.6f}. " + ("Called infected" if p >= thr else "Not called") + f" at {thr:.4f}.")
