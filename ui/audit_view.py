"""The audit log browser: filters, a table of recent scorings and a CSV export (the page stays thin)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pandas as pd
import streamlit as st

from core import audit, users
from core.registry import TASKS
from ui import access

ROW_LIMIT = 5000
SHOWN = ["created_at", "user_email", "user_role", "surface", "task", "model_id", "probability", "decision",
         "withheld_reason", "threshold", "site_profile", "image_sha256", "model_sha256", "user_sub"]
ANYONE = "(anyone)"


def _filters() -> dict:
    c0, c1, c2, c3, c4 = st.columns([1.2, 1, 1, 1.3, 1.3])
    try:
        seen = audit.users_seen()
    except audit.AuditError:
        seen = []
    who = c0.selectbox("User", [ANYONE] + seen, key="audit_user",
                       help="The signed-in user (e-mail, else the token's subject); commands are the computer account "
                            "that ran them (local:<name>).")
    task = c1.selectbox("Task", ["(any)"] + list(TASKS), key="audit_task")
    surface = c2.selectbox("Where", ["(any)"] + list(audit.SURFACES), key="audit_surface",
                           help="app: Predict / PACS pages; cli: python -m core.predict; batch: batch scoring; "
                                "handoff: python -m core.handoff")
    today = datetime.now(timezone.utc).date()
    days = c3.date_input("From – to (UTC)", (today - timedelta(days=30), today), key="audit_days")
    sha = c4.text_input("Image SHA-256", key="audit_sha", help="The checksum of an image file: every scoring of it.").strip().lower()
    f = {"task": None if task == "(any)" else task, "surface": None if surface == "(any)" else surface,
         "image_sha256": sha or None, "user": None if who == ANYONE else who}
    if isinstance(days, (tuple, list)) and days:
        start, end = days[0], days[-1]
        f["since"] = datetime.combine(start, time.min, timezone.utc)
        f["until"] = datetime.combine(end + timedelta(days=1), time.min, timezone.utc)
    elif isinstance(days, date):
        f["since"] = datetime.combine(days, time.min, timezone.utc)
    return f


def audit_browser() -> None:
    access.require("audit")
    st.caption(f"One row per scoring, from the app, the command line and batch runs: time (UTC), image checksum "
               f"(never pixels or names), model and checksum, operating point, result, and who. File: `{audit.db_path()}`.")
    f = _filters()
    try:
        df = audit.to_frame(**f, limit=ROW_LIMIT)
    except audit.AuditError as exc:
        st.error(str(exc), icon=":material/history:")
        return
    if df.empty:
        st.info("No scoring matches these filters yet.")
        return
    st.markdown(f"**{len(df)}** scoring(s)" + (f" (the newest {ROW_LIMIT} shown; the CSV has all)" if len(df) >= ROW_LIMIT else ""))
    shown = df.assign(created_at=df["created_at"].str.slice(0, 19).str.replace("T", " "))
    st.dataframe(shown, hide_index=True, width="stretch", key="audit_table", column_order=SHOWN, column_config={
        "created_at": st.column_config.TextColumn("Time (UTC)", width="medium"),
        "surface": st.column_config.TextColumn("Where", width="small"),
        "task": st.column_config.TextColumn("Task", width="small"),
        "model_id": st.column_config.TextColumn("Model"),
        "probability": st.column_config.NumberColumn("Probability", format="%.4f"),
        "decision": st.column_config.TextColumn("Decision"),
        "withheld_reason": st.column_config.TextColumn("Withheld because"),
        "threshold": st.column_config.NumberColumn("Threshold", format="%.4f"),
        "site_profile": st.column_config.TextColumn("Site profile"),
        "image_sha256": st.column_config.TextColumn("Image SHA-256", width="medium"),
        "model_sha256": st.column_config.TextColumn("Model SHA-256", width="small"),
        "user_email": st.column_config.TextColumn("User"),
        "user_role": st.column_config.TextColumn("Role", width="small"),
        "user_sub": st.column_config.TextColumn("User subject", width="small"),
    })
    who = access.current_user()  # read now: the CSV is made on click, outside this run, where st.user is not known
    st.download_button("Export CSV", data=lambda: _export(f, who), on_click="ignore", mime="text/csv",
                       file_name="secondlook_audit.csv", key="audit_csv", icon=":material/download:")
    _events(f)


def _export(f: dict, user: users.User | None = None) -> bytes:
    """The CSV, after checking (again, on the server) that `user` may export it; the export itself is audited under
    them. `user`: the page's user, read while the page was drawn (a deferred download runs outside the session's
    script, where the signed-in user cannot be read); by default this session's."""
    user = user if user is not None else access.current_user()
    users.require(user, "audit")  # PermissionDenied: no CSV is made
    data = audit.export_csv(**f)
    rows = data.count(b"\n") - 1
    audit.event("audit_export", user, f"{rows} row(s); filters: " + ", ".join(f"{k}={v}" for k, v in f.items() if v))
    return data


def _events(f: dict) -> None:
    """Sign-ins (and where each role came from), refusals, exports and site-profile changes."""
    with st.expander("Sign-ins, refusals, exports and site-profile changes"):
        try:
            ev = audit.events(user=f.get("user"), since=f.get("since"), until=f.get("until"), limit=ROW_LIMIT)
        except audit.AuditError as exc:
            st.error(str(exc))
            return
        if not ev:
            st.caption("None in this period.")
            return
        frame = pd.DataFrame(ev, columns=audit.EVENT_COLUMNS)
        st.dataframe(frame.assign(created_at=frame["created_at"].str.slice(0, 19).str.replace("T", " ")),
                     hide_index=True, width="stretch", key="audit_events",
                     column_order=["created_at", "kind", "user_email", "user_role", "detail", "user_sub"])
