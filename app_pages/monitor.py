"""Monitoring: what was scored (the audit log) per week, whether the recent scores still look like validation, and
how often readers agreed with SecondLook (their confirmations)."""
import sqlite3
from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from core import audit, monitoring
from core.evaluation import drift
from ui import access

access.require("monitor")

st.title("Monitoring")
st.caption(
    "Read from the audit log: every scoring in the app, by the command line and by the hand-off (batch runs are not "
    "audited: check a batch file with `python -m core.monitor`). **Drift** compares a model's "
    "recent probabilities with its own validation scores: the population stability index (PSI) over the validation "
    f"deciles, and a Kolmogorov-Smirnov test (shown, not alarmed on). The alarm fires at PSI ≥ {drift.ALARM_PSI:g}, a "
    "level chosen where new patients of the training source stayed below it and another lab's cells rose above it "
    f"(docs/evaluation.md, Drift alarm); fewer than {drift.MIN_SCORES} assessed scores are too few to judge drift. "
    "An alarm says the scores come from a population unlike validation (another lab, another kind of patient, "
    "or a run of negative cases): look before trusting the calls, it does not say the model is wrong."
)
st.caption(
    ":material/person_check: **AI–reader agreement** comes from the readers' confirmations (Predict: *Confirm or "
    "disagree* beside each result): each result counts once, at its reader's latest call; a withheld result had no "
    "decision to agree with. Readers saw the model's answer, so agreement is not accuracy: a fall in it is the signal "
    "to look at. The audit log keeps no \"unusual for this model\" caution: for a batch run, "
    "`python -m core.monitor --task T --scores FILE` reports its unusual rate."
)

days = st.segmented_control("Drift over the last", [7, 28, 90], default=monitoring.RECENT_DAYS, key="monitor_days",
                            format_func=lambda d: f"{d} days") or monitoring.RECENT_DAYS


@st.cache_data(ttl=60, show_spinner=False)
def _tables(db: str, days: int, today: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    del today  # part of the cache key only: the window moves with the date
    recent = monitoring.audit_frame(since=monitoring.recent_since(days), db=db)
    every = monitoring.audit_frame(db=db)
    return monitoring.drift_table(recent), monitoring.weekly(every)


try:
    lines, weeks = _tables(str(audit.db_path()), int(days), datetime.now(timezone.utc).date().isoformat())
except audit.AuditError as exc:
    st.error(str(exc), icon=":material/history:")
    st.stop()

try:  # not cached: a confirmation saved a moment ago shows at once
    agreed_lines = monitoring.agreement_lines(monitoring.confirmation_frame(since=monitoring.recent_since(days)))
    agreed_weeks = monitoring.agreement_weekly(monitoring.confirmation_frame())
except (sqlite3.Error, OSError) as exc:
    st.warning(f"The readers' confirmations cannot be read: {exc}", icon=":material/person_check:")
    agreed_lines = agreed_weeks = None

if weeks.empty and (agreed_weeks is None or agreed_weeks.empty):
    st.info("Nothing has been scored yet: the tables fill as images are scored (Predict, the PACS page, the command line).")
    st.stop()


def _state(alarm) -> str:
    return "ALARM" if alarm is True else "quiet" if alarm is False else "too few / no reference"


def _red(row: pd.Series) -> list[str]:
    return ["background-color: #fde2e2; color: #a00000" if row["Drift"] == "ALARM" else ""] * len(row)


st.subheader(f"Drift against validation, last {days} days")
for line in lines.to_dict("records"):
    if line["alarm"] is True:  # None: too few to judge
        st.error(monitoring.alarm_text(line), icon=":material/notification_important:")
if lines.empty:
    st.info(f"Nothing scored in the last {days} days.")
else:
    shown = lines.assign(Drift=[_state(a) for a in lines["alarm"]]).drop(columns="alarm")
    st.dataframe(shown.style.apply(_red, axis=1), hide_index=True, width="stretch", key="monitor_drift", column_config={
        "task": "Task", "model_id": "Model", "site_profile": "Site profile", "scorings": "Scorings",
        "assessed": st.column_config.NumberColumn("Assessed", help="Scorings with a probability (not withheld)."),
        "withheld_rate": st.column_config.NumberColumn("Withheld", format="percent",
                                                       help="Share not assessed: wrong kind of image or population."),
        "flag_rate": st.column_config.NumberColumn("Flagged", format="percent", help="Share of assessed scorings flagged."),
        "unusual_rate": st.column_config.NumberColumn("Unusual", format="percent",
                                                      help="Share of assessed scorings given with the caution that the "
                                                           "image is unusual for the model."),
        "psi": st.column_config.NumberColumn("PSI", format="%.3f", help=f"Population stability index; alarm at ≥ {drift.ALARM_PSI:g}."),
        "ks_p": st.column_config.NumberColumn("KS p", format="%.2g", help="Two-sample Kolmogorov-Smirnov p-value (reported only)."),
        "reason": st.column_config.TextColumn("Why", width="large"),
    })

st.subheader(f"AI–reader agreement, last {days} days")
if agreed_lines is not None and agreed_lines.empty:
    st.info(f"No reader confirmed a result in the last {days} days.", icon=":material/person_check:")
elif agreed_lines is not None:
    for line in agreed_lines.to_dict("records"):
        st.markdown(monitoring.agreement_text(line))
    st.dataframe(agreed_lines, hide_index=True, width="stretch", key="monitor_agreement", column_config={
        "task": "Task", "model_id": "Model", "site_profile": "Site profile", "what": "Confirmed",
        "confirmed": st.column_config.NumberColumn("Results", help="Results a reader confirmed (latest call, once each)."),
        "judged": st.column_config.NumberColumn("With a decision", help="Confirmed results SecondLook had decided (not withheld)."),
        "agreed": st.column_config.NumberColumn("Agreed", help="The reader's call was SecondLook's decision."),
        "agreement_rate": st.column_config.NumberColumn("Agreement", format="percent"),
    })

st.subheader("Per week")
st.caption("ISO weeks (UTC), newest first. PSI where the week has enough assessed scores; readers' confirmations of "
           "images and their agreement with SecondLook beside them.")
if agreed_weeks is not None and not agreed_weeks.empty:
    weeks = monitoring.with_agreement(weeks, agreed_weeks)
st.dataframe(weeks.assign(Drift=[_state(a) for a in weeks["alarm"]]).drop(columns="alarm").style.apply(_red, axis=1),
             hide_index=True, width="stretch", key="monitor_weeks", column_config={
                 "task": "Task", "model_id": "Model", "site_profile": "Site profile", "week": "Week",
                 "scorings": "Scorings", "assessed": "Assessed",
                 "withheld_rate": st.column_config.NumberColumn("Withheld", format="percent"),
                 "flag_rate": st.column_config.NumberColumn("Flagged", format="percent"),
                 "unusual_rate": st.column_config.NumberColumn("Unusual", format="percent"),
                 "psi": st.column_config.NumberColumn("PSI", format="%.3f"),
                 "confirmed": "Confirmed", "judged": "With a decision", "agreed": "Agreed",
                 "agreement_rate": st.column_config.NumberColumn("Agreement", format="percent"),
             })
