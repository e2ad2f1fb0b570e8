"""The technician's cell review for a case of whole smear fields (issue #29): SecondLook proposes, a person confirms.

The fields uploaded together are one case, named by a short random id kept for the session (`case_id`); the
technician may type their own case or slide label, which stays in this session (and goes on the PDF only with the
patient details): nothing but the id is stored. The cells at or above the case's review threshold
(`core.fields.review`: its budget of most suspicious cells a field, ranked across its fields, and every cell from the
field point) are queued, most suspicious first, and shown one at a time with crop, Grad-CAM and probability.
**Confirm infected** (key I) and **Not infected** (key N) keep the call (`core.confirmations`, kind "cell": the
field's sha256 and the cell's index, never pixels) and show the next cell; Back (B) and Skip (S) move without a call. Any other outlined cell can be marked infected ("not proposed"). The confirmed count over all red
cells of the case is the result the PDF and the DICOM SR carry; the automatic count is shown beside it, labelled.

A press keeps what was on screen (the cell, its probability, the model checksum and review threshold it was shown
under) and the panel stores it on its next run after the role check; a cell shown under another model version or
threshold than the one in force is refused with the reason. The panel is a fragment: a call reruns it alone.
"""
from __future__ import annotations

import os
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np
import streamlit as st

from core import audit, confirmations
from core.evaluation import operating_point as op
from core.fields import records, review
from core.fields.screen import FieldScreen
from core.handoff import case as C
from core.inference import scoring
from core.inference.explain import overlay
from core.registry import get_task
from ui import access, common, handoff

CASES = "_cell_review_cases"  # {upload set: case id}
STATE = "_cell_review"  # {case id: {"pos": queue position, "shown": (sha, cell) on screen, "views": made for}}
PENDING = "_cell_review_pending"  # {case id: Press}: what the last press was about, stored on the next run
MESSAGE = "_cell_review_message"  # {case id: (kind, text)}
KEYS = {"confirm": "I", "reject": "N", "back": "B", "skip": "S"}


@dataclass(frozen=True)
class Press:
    """A button press and the cell it was shown beside, as it was shown."""

    action: str  # confirm, reject, back, skip, goto (this cell), mark, unmark
    sha: str
    cell: int
    probability: float
    threshold: float | None
    model_sha: str
    queued: bool
    shown: tuple[str, int] | None = None  # the queued cell on screen beside the button (None: the end of the queue)

    @property
    def moves_queue(self) -> bool:
        return self.action in ("confirm", "reject", "back", "skip", "goto")


def case_id(shas: list[str]) -> str:
    """The case id of this upload set: made once per session, short enough to read out and write on a slide."""
    cases = st.session_state.setdefault(CASES, {})
    key = "|".join(sorted(shas))
    if key not in cases:
        cases[key] = "C-" + secrets.token_hex(3).upper()
    return cases[key]


def current_model_sha(task: str, model_id: str) -> str:
    """The checksum of the model file in force (read when a call is stored, compared with the one shown)."""
    return common.version(task, model_id)


@st.cache_data(show_spinner=False, max_entries=256)
def crop_views(task: str, model_id: str, sha: str, crop_bytes: bytes) -> tuple[bytes, bytes]:
    """A cell crop, enlarged, and its Grad-CAM overlay (PNG bytes): the gallery's and the review's views."""
    crop = np.frombuffer(crop_bytes, np.uint8).reshape(64, 64, 3)
    spec = get_task(task).model(model_id)
    heat = scoring.heatmap(common.model(task, model_id), spec, crop)
    big = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC)
    return scoring.png_bytes(big), scoring.png_bytes(overlay(big, heat, alpha=0.45))


def render(task: str, model_id: str, field_thr: float, screens: list[FieldScreen], fields: list[dict],
           pictures: list[bytes | None]) -> None:
    """The review of one case: its id and label (drawn with the page), then the review panel (a fragment)."""
    shas = [scoring.digest(f["data"]) for f in fields]
    cid = case_id(shas)
    with st.container(border=True):
        st.markdown(f"#### Cell review — case **{cid}**")
        st.caption("SecondLook queues the cells most likely infected, one at a time; you confirm or reject each. The "
                   "confirmed count is the result to report. The case id is made for this session; only it is stored "
                   "with your calls.")
        label = st.text_input("Case / slide label (optional)", key=f"cell_review_label_{cid}", max_chars=60,
                              help="Your own label, to find the slide again. Kept in this session only (never stored); "
                                   "printed on the PDF only when patient details are asked for. No patient names.")
        _panel(task, model_id, field_thr, screens, shas, pictures, cid, label)


def _on_press(cid: str, press: Press) -> None:
    st.session_state.setdefault(PENDING, {})[cid] = press


def _say(cid: str, kind: str, text: str) -> None:
    st.session_state.setdefault(MESSAGE, {})[cid] = (kind, text)


def _store(task: str, model_id: str, cid: str, press: Press, rthr: float | None) -> bool:
    """Keep one call (after the role check); False, with the reason shown, when it is refused or cannot be kept."""
    user = access.require("confirm")  # refused on the server whatever the page showed
    positive, negative = get_task(task).positive, get_task(task).negative
    call = positive if press.action in ("confirm", "mark") else negative
    shown = confirmations.Scored(press.sha, task, model_id, press.model_sha, float(press.threshold or 0.0),
                                 press.probability, positive if press.queued else confirmations.NOT_PROPOSED)
    try:
        if press.threshold is None:
            raise confirmations.Refused("no review threshold was in force when this cell was shown")
        confirmations.record(shown, reader_call=call, user=user, current_model_sha256=current_model_sha(task, model_id),
                             current_threshold=rthr, kind="cell", cell=press.cell, case_id=cid)
    except confirmations.Refused as exc:
        _say(cid, "warning", f"Not kept: {exc}.")
        access.note("refused", user, f"cell confirmation, case {cid}: {exc}")
        return False
    except (sqlite3.Error, OSError) as exc:
        _say(cid, "error", f"The call could not be kept: {exc}")
        return False
    return True


def _next_open(queue: list[tuple[int, int, float]], shas: list[str], calls: dict, after: int) -> int:
    """The first queued cell after `after` without a call, else the first one anywhere, else the end of the queue."""
    open_ = [k for k, (f, i, _) in enumerate(queue) if (shas[f], i) not in calls]
    return next((k for k in open_ if k > after), open_[0] if open_ else len(queue))


@st.fragment
def _panel(task: str, model_id: str, field_thr: float, screens: list[FieldScreen], shas: list[str],
           pictures: list[bytes | None], cid: str, label: str) -> None:
    ss = st.session_state
    t0 = time.perf_counter()
    rthr, note = review.review_threshold(model_id, screens)  # this case's: its budget of cells ranked across its fields
    model_sha = current_model_sha(task, model_id)
    queue = review.case_queue(screens, rthr)
    state = ss.setdefault(STATE, {}).setdefault(cid, {"pos": 0})
    press: Press | None = ss.get(PENDING, {}).pop(cid, None)
    if press is not None and press.moves_queue and press.shown != state.get("shown"):
        press = None  # a key that met the buttons of a cell already left behind: nothing is kept or moved
    stored = False
    try:
        if press is not None and press.action in ("confirm", "reject", "mark", "unmark"):
            stored = _store(task, model_id, cid, press, rthr)
        rows = confirmations.rows(case_id=cid, kind="cell")
    except (sqlite3.Error, OSError) as exc:
        st.error(f"Confirmations cannot be read or kept: {exc}", icon=":material/error:")
        return
    fc = C.field_case(screens, shas, rows, case_id=cid, model_id=model_id, model_sha256=model_sha,
                      field_threshold=field_thr, field_rule=records.read_record(model_id).get("threshold_rule", ""),
                      review_threshold=rthr, review_rule=review.read_review(model_id).get("rule", ""),
                      pictures=pictures, label=label)
    calls = fc.confirmed["calls"]  # the latest call on each cell shown under the model and threshold in force
    at = next((k for k, (f, i, _) in enumerate(queue) if press is not None and (shas[f], i) == (press.sha, press.cell)),
              state["pos"])
    if press is not None and press.action in ("confirm", "reject") and stored:
        state["pos"] = _next_open(queue, shas, calls, at)
    elif press is not None and press.action in ("back", "skip", "goto"):
        state["pos"] = {"back": max(0, at - 1), "skip": min(len(queue), at + 1), "goto": at}[press.action]
    state["pos"] = min(state["pos"], len(queue))
    msg = ss.get(MESSAGE, {}).pop(cid, None)
    if msg:
        (st.warning if msg[0] == "warning" else st.error)(msg[1], icon=":material/block:")
    if rthr is None:
        st.info(f"No cell is queued: {note}.", icon=":material/info:")
    may = access.can("confirm")
    if not may:
        st.caption(f":material/block: Your role ({access.current_user().role}) may look at the queue but not confirm cells.")
    _cell(task, model_id, screens, shas, queue, calls, state["pos"], rthr, model_sha, cid, may)
    _mark(task, model_id, screens, shas, queue, calls, rthr, model_sha, cid, may)
    _result(fc)
    _audit_case(fc, task, model_id, model_sha, field_thr)
    ctx = common.Context(get_task(task), [model_id], model_id, field_thr, common.card(task, model_id))
    handoff.panel(ctx, [], key=f"cell_review_{cid}", fields=fc)
    if state.get("views") != (model_sha, rthr):  # every queued cell's views, once: the next call shows the next at once
        for f, i, _ in queue:  # (in one run: Streamlit clears TensorFlow's kernel cache after every run)
            crop_views(task, model_id, model_sha, screens[f].crops[i].tobytes())
        state["views"] = (model_sha, rthr)
    if os.environ.get("SECONDLOOK_TIMING"):  # one line per run, as app.py's: benchmarks.cell_review reads it
        print(f"[timing] cell_review {(time.perf_counter() - t0) * 1000:.0f} ms", file=sys.stderr, flush=True)


def _cell(task: str, model_id: str, screens: list[FieldScreen], shas: list[str], queue: list, calls: dict, pos: int,
          rthr: float | None, model_sha: str, cid: str, may: bool = True) -> None:
    """The queued cell at `pos` with its buttons, or what is left to do once the end of the queue is reached."""
    n = len(queue)
    done = sum((shas[f], i) in calls for f, i, _ in queue)
    st.progress(done / n if n else 1.0, text=f"{done} of {n} queued cells reviewed")
    state = st.session_state[STATE][cid]
    state["shown"] = (shas[queue[pos][0]], queue[pos][1]) if pos < n else None
    if pos >= n:
        if n and done < n:
            st.info(f"End of the queue: {n - done} queued cell(s) not reviewed yet.", icon=":material/pending:")
        elif n:
            st.success(f"All {n} queued cells reviewed.", icon=":material/task_alt:")
        elif rthr is not None:
            st.info("No cell of this case reached the review queue.", icon=":material/info:")
        b1, b2 = st.columns(2)
        if n:
            f, i, p = queue[-1]
            b1.button("Back", key=f"cr_end_back_{cid}", shortcut=KEYS["back"], icon=":material/undo:",
                      on_click=_on_press, args=(cid, Press("goto", shas[f], i, p, rthr, model_sha, True, None)))
        if done < n:
            f, i, p = queue[_next_open(queue, shas, calls, -1)]
            b2.button("Review the cells left", key=f"cr_left_{cid}", on_click=_on_press,
                      args=(cid, Press("goto", shas[f], i, p, rthr, model_sha, True, None)))
        return
    f, i, p = queue[pos]
    s = screens[f]
    where = f"field {f + 1} of {len(screens)} ({s.name})" if len(screens) > 1 else f"field {s.name}"
    st.markdown(f"**Cell {pos + 1} of {n} in the queue** · {where} · cell {i + 1} on the outlined field")
    view = st.container()  # drawn above the buttons, filled after them: the keys work as soon as the label shows
    token = f"{cid}_{shas[f][:12]}_{i}"
    cols = st.columns(4)
    for col, (action, text, kind, icon) in zip(cols, (
            ("confirm", "Confirm infected", "primary", ":material/check_circle:"),
            ("reject", "Not infected", "secondary", ":material/do_not_disturb_on:"),
            ("back", "Back", "tertiary", ":material/undo:"), ("skip", "Skip", "tertiary", ":material/redo:"))):
        col.button(text, key=f"cr_{action}_{token}", type=kind, icon=icon, shortcut=KEYS[action], width="stretch",
                   disabled=(action == "back" and pos == 0) or (action in ("confirm", "reject") and not may),
                   on_click=_on_press,
                   args=(cid, Press(action, shas[f], i, p, rthr, model_sha, True, (shas[f], i))))
    plain, cam = crop_views(task, model_id, model_sha, s.crops[i].tobytes())
    a, b, c = view.columns([1, 1, 2])
    a.image(plain, caption="Cell", width="stretch")
    b.image(cam, caption="Grad-CAM overlay", width="stretch")
    c.metric("Probability infected", op.fmt_prob(p))
    call = calls.get((shas[f], i))
    c.caption(f"Exact model output: {p:.6f}; queued at {rthr:.4f} or more."
              + (f" Your call so far: **{'infected' if call == get_task(task).positive else 'not infected'}**." if call else ""))
    if not s.in_count[i]:
        c.caption(":material/crop_free: Cut by the picture's edge: shown so that no parasite goes unseen, not counted in "
                  "the parasitemia (the count uses the cells wholly inside each field).")
    c.caption("Keys: **I** confirm infected · **N** not infected · **B** back · **S** skip.")


def _mark(task: str, model_id: str, screens: list[FieldScreen], shas: list[str], queue: list, calls: dict,
          rthr: float | None, model_sha: str, cid: str, may: bool = True) -> None:
    """Mark any other outlined cell infected (or take the mark back): picked by its number on the outlined field."""
    positive = get_task(task).positive
    queued = {(shas[f], i) for f, i, _ in queue}
    counted = [k for k, s in enumerate(screens) if s.counted]
    marked = [(shas.index(sha), i) for (sha, i), c in calls.items() if c == positive and (sha, i) not in queued]
    title = "Mark another outlined cell as infected" + (f" ({len(marked)} marked)" if marked else "")
    with st.expander(title, icon=":material/add_circle:"):
        if not counted:
            st.caption("No field of this case has counted cells.")
            return
        names = {k: f"field {k + 1}: {screens[k].name}" for k in counted}
        f = st.selectbox("Field", counted, format_func=names.get, key=f"cr_mark_field_{cid}") if len(counted) > 1 else counted[0]
        s = screens[f]
        n = int(st.number_input("Cell number (as on the outlined field)", 1, len(s.boxes), 1, key=f"cr_mark_cell_{cid}_{f}"))
        i = n - 1
        p = float(s.probabilities[i])
        a, b = st.columns([1, 3])
        a.image(scoring.png_bytes(cv2.resize(s.crops[i], (128, 128), interpolation=cv2.INTER_CUBIC)), width="stretch")
        if (shas[f], i) in queued:
            b.caption(f"Cell {n} is in the review queue ({op.fmt_prob(p)}): confirm or reject it there.")
        else:
            is_marked = calls.get((shas[f], i)) == positive
            b.caption(f"Cell {n}: {op.fmt_prob(p)}, not queued." + ("" if s.in_count[i] else " Cut by the picture's edge: "
                      "seen, not counted.") + (" Marked infected by you." if is_marked else ""))
            action = "unmark" if is_marked else "mark"
            b.button("Take the mark back" if is_marked else "Mark infected", key=f"cr_{action}_{cid}_{shas[f][:12]}_{i}",
                     disabled=not may, on_click=_on_press, args=(cid, Press(action, shas[f], i, p, rthr, model_sha, False)))
        if marked:
            st.caption("Marked infected: " + ", ".join(f"field {k + 1} cell {i + 1}" for k, i in sorted(marked)) + ".")


AUDITED = "_cell_review_audited"  # what this session already put in the audit log


def _audit_case(fc: C.FieldCase, task: str, model_id: str, model_sha: str, field_thr: float) -> None:
    """One audit row per screened field (its automatic count at the field point), and an event each time the case's
    confirmed result changes, with who confirmed it: the audit carries the result the report carries."""
    done: set = st.session_state.setdefault(AUDITED, set())
    user = access.current_user()
    try:
        for f in fc.fields:
            key = ("field", f.sha256, model_sha, round(field_thr, 10))
            if key in done:
                continue
            counted = f.n_infected is not None
            audit.record(image_sha256=f.sha256, task=task, model_id=model_id, model_sha256=model_sha or None,
                         threshold=field_thr, probability=None,
                         decision=f"{f.n_infected} infected of {f.n_cells} red cells (automatic)" if counted else None,
                         withheld_reason=None if counted else (f.message or "no red cells counted"), surface="app",
                         user=user)
            done.add(key)
        c = fc.confirmed
        if c["status"] != review.NOT_REVIEWED and c["confirmed_by"]:
            detail = f"case {fc.case_id} ({len(fc.fields)} field(s), {model_id}): " + " ".join(fc.lines())
            if ("case", detail) not in done:
                audit.event("case_confirmed", user, detail)
                done.add(("case", detail))
    except (audit.AuditError, ValueError) as exc:
        st.warning(f"The audit log could not be written: {exc}", icon=":material/history:")


def _result(fc: C.FieldCase) -> None:
    """The confirmed result beside the automatic count, each labelled; the wording of the PDF and the SR."""
    c, a = fc.confirmed, fc.automatic
    left, right = st.columns(2)
    with left:
        if c["status"] == review.NOT_REVIEWED or not c["confirmed_by"] or c["parasitemia"] is None:
            st.metric("Confirmed result", "not yet reviewed")
        else:
            st.metric("Confirmed result", f"{c['parasitemia']:.2f}%",
                      help="Parasitemia: infected cells confirmed or marked by the technician / red cells counted in "
                           "every field of the case.")
    with right:
        auto = "—" if a.get("parasitemia") is None else f"{a['parasitemia']:.2f}%"
        st.metric("Automatic result (unconfirmed)", auto,
                  help=f"Parasitemia as the model calls it alone, at the field operating point {fc.field_threshold:.4f}.")
    lines = fc.lines()
    for line in lines:
        (st.caption if line.startswith("Automatic") else st.markdown)(line)
    st.caption(review.INTERVAL_NOTE)
