"""The reader's confirmation beside each decision SecondLook shows (an X-ray's, a cell crop's): agree or disagree,
the reader's own call, an optional note, Save.

Kept by core.confirmations with the file's sha256 (never pixels, never a name), the model and its checksum, the
operating point and site profile the result was shown at, and the user. Save compares what the reader was shown
with what is in force when it is pressed (the model file's checksum, the sidebar's operating point): a result shown
under another one is refused with the reason and nothing is kept, so a call always refers to what was on screen.
A withheld result has no decision to agree with; the reader may still record their call. A later Save is a new row
and the latest word counts (`confirmations.latest`). Drawn as a fragment: saving reruns this box, not the page.
"""
from __future__ import annotations

import sqlite3

import streamlit as st

from core import confirmations
from core.inference import scoring
from core.inference.decision import decide
from ui import access, common

PENDING = "_confirm_pending"  # {box key: (what was shown when Save was pressed, the call, the note)}
AGREE, DISAGREE = "Agree", "Disagree"


def shown(ctx: common.Context, s: scoring.Scored) -> confirmations.Scored:
    """What the reader sees for one task: its decision at ctx's operating point, or none when it was withheld."""
    d = decide(s.probability, ctx.threshold, ctx.task, s.withheld)
    return confirmations.Scored(s.digest, ctx.task.name, ctx.model_id, common.version(ctx.task.name, ctx.model_id),
                                float(ctx.threshold), s.probability if d.assessed else None, d.label,
                                getattr(ctx.site, "name", None))


def in_force(task: str, model_id: str) -> tuple[str, float]:
    """(the model file's checksum, the operating point) in force now: what the sidebar (or an active site profile)
    sets, read when Save is pressed."""
    return common.version(task, model_id), common.threshold(task, model_id)


def saved_words(row: dict) -> str:
    """'Saved: you agreed (NORMAL)' for a stored confirmation."""
    if row["agree"] is None:
        return f"Saved: your call {row['reader_call']} (no decision to agree with)"
    return f"Saved: you {'agreed' if row['agree'] else 'disagreed'} ({row['reader_call']})"


def _last(sc: confirmations.Scored, user) -> dict | None:
    """This user's latest confirmation of this result (same task, file and model), or None."""
    got = confirmations.rows(task=sc.task, kind="image", image_sha256=sc.image_sha256, model_id=sc.model_id,
                             user=user.sub)
    return got[-1] if got else None


def panel(ctx: common.Context, s: scoring.Scored, key: str) -> None:
    """The confirm box for one shown result; nothing for a user whose role may not confirm."""
    if not s.ok or not ctx.has_model or not access.can("confirm"):
        return
    _box(shown(ctx, s), ctx.task.labels, key)


def choices(labels: tuple[str, ...], decision: str | None) -> tuple[list[str], dict[str, str]]:
    """The reader's options and how each reads: with a decision, 'Agree: PNEUMONIA' (the model's call) first and
    'Disagree: NORMAL'; withheld, the two labels. One control holds both agreement and call, so they cannot drift
    apart (two widgets kept in step by callbacks do, when a browser sends a stale value under load)."""
    if decision is None:
        return list(labels), {lab: lab for lab in labels}
    ordered = [decision] + [lab for lab in labels if lab != decision]
    return ordered, {lab: f"{AGREE if lab == decision else DISAGREE}: {lab}" for lab in ordered}


def _on_save(key: str, sc: confirmations.Scored) -> None:
    """Remember what was shown when Save was pressed; the box stores it in this run (after the role check)."""
    ss = st.session_state
    ss.setdefault(PENDING, {})[key] = (sc, ss.get(f"{key}_call"), str(ss.get(f"{key}_note") or ""))


def _save(key: str, pressed: confirmations.Scored, call: str | None, note: str) -> None:
    user = access.require("confirm")  # refused on the server whatever the page showed
    sha, thr = in_force(pressed.task, pressed.model_id)
    try:
        confirmations.record(pressed, reader_call=str(call), user=user, current_model_sha256=sha,
                             current_threshold=thr, note=note)
    except confirmations.Refused as exc:
        st.warning(f"Not saved: {exc}.", icon=":material/block:")
    except (sqlite3.Error, OSError) as exc:
        st.error(f"The confirmation could not be saved: {exc}", icon=":material/error:")


@st.fragment
def _box(sc: confirmations.Scored, labels: tuple[str, ...], key: str) -> None:
    ss = st.session_state
    pressed = ss.get(PENDING, {}).pop(key, None)
    if pressed is not None:
        _save(key, *pressed)
    try:
        last = _last(sc, access.current_user())
    except (sqlite3.Error, OSError) as exc:
        st.caption(f":material/error: Confirmations cannot be read: {exc}")
        return
    if last is not None and f"{key}_call" not in ss:  # reopened later: the widgets show the saved word
        ss[f"{key}_call"] = last["reader_call"]
        ss[f"{key}_note"] = last["note"]
    label = (saved_words(last) + " · change") if last else "Confirm or disagree"
    with st.popover(label, icon=":material/how_to_reg:" if last is None else ":material/check_circle:",
                    key=f"{key}_pop", help="Your own read of this image, kept with the result (hashes only, never pixels)."):
        if last is not None:
            st.caption(f"{saved_words(last)}, {last['created_at'][:16].replace('T', ' ')} UTC. Save again to change "
                       "it: your latest word counts.")
        options, words = choices(labels, sc.decision)
        question = (f"SecondLook says **{sc.decision}**. Your call:" if sc.decision is not None else
                    "SecondLook gave no decision here (not assessed). Your call:")
        call = st.radio(question, options, index=None, key=f"{key}_call", format_func=words.get)
        st.text_input("Note (optional)", key=f"{key}_note", max_chars=500,
                      help="Kept with your call. No patient names or identifiers.")
        st.button("Save", key=f"{key}_save", type="primary", on_click=_on_save, args=(key, sc), disabled=call is None)
