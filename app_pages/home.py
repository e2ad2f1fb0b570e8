"""Home: what SecondLook does, the three tasks and each bundled model's validated test results."""
import pandas as pd
import streamlit as st

from core import audit
from core.config import dataset_available
from core.cards.external import external_summary
from core.models import store
from core.registry import TASKS
from core.models.selection import cv_summary
from ui import access, common

ctx = common.context()

st.title("SecondLook")
st.markdown("#### A second look at medical images — with the numbers a clinician needs to judge it")
st.warning(common.DISCLAIMER, icon=":material/warning:")
_user = access.current_user()
if _user.source == "default":
    st.info(f"You are signed in as {_user.label} with no SecondLook role, so there is nothing here for you to use yet "
            f"({_user.note}). Ask your site admin to give you a role: clinician, technician, site admin or auditor.",
            icon=":material/person_off:")


@st.cache_data(ttl=60, show_spinner=False)
def _drift_alarms(db: str) -> list[str]:
    """One sentence per task/model/site whose recent scores drifted from validation (app_pages/monitor.py)."""
    # imported here: scipy.stats loads only when Home first runs the check
    from core import monitoring

    try:
        return [monitoring.alarm_text(a) for a in monitoring.alarms(db=db)]
    except (audit.AuditError, OSError, ValueError):
        return []  # an unreadable log is the Audit log page's message, not Home's


for _alarm in _drift_alarms(str(audit.db_path())):
    st.error(f"**Drift alarm.** {_alarm} See Monitoring.", icon=":material/notification_important:")

st.markdown(
    """
SecondLook runs a trained neural network on an image and reports **how likely the finding is**, **what the model
would call at the operating point you choose**, and **where in the image it saw evidence** (a Grad-CAM heat map).
Every operating point is chosen on validation images and checked on held-out test images the model never saw.
"""
)
research = common.research_mode()
LINKS = ([
    ("app_pages/screen.py", "Predict", ":material/image_search:", "Upload chest X-rays, blood-smear cells or whole smear "
     "fields: each goes to the model validated for it."),
] if _user.can("score_xray") or _user.can("score_smear") else []) + ([
    ("app_pages/site.py", "Site validation", ":material/location_on:", "Check the model on your own labelled cases."),
] if _user.can("site_profiles") else []) + ([
    ("app_pages/threshold.py", "Threshold tuning", ":material/tune:", "Choose the trade-off between missed cases and false alarms."),
    ("app_pages/compare.py", "Model comparison", ":material/compare:", "See which model ranks, calls and calibrates best."),
    ("app_pages/review.py", "Misclassified review", ":material/fact_check:", "Look at the test cases the model gets wrong, and tag them."),
] if research else [])
for col, (page, label, icon, blurb) in zip(st.columns(max(1, len(LINKS))), LINKS):
    with col.container(border=True, height="stretch"):
        st.page_link(page, label=f"**{label}**", icon=icon)
        st.caption(blurb)

st.subheader("Tasks and bundled models")
st.caption(
    "Figures are from each model's card, measured on the task's held-out **test** set at the model's validated "
    "operating point. Intervals are 95% confidence intervals that resample **patients** (a patient's images are "
    "alike, so resampling images would be too narrow) where the card has them; otherwise image-level (DeLong for "
    "AUC, Wilson for rates), as the Intervals column says."
)

HELP = {
    "CV AUC": "Mean ± SD of the AUC over patient-grouped cross-validation folds of the training split (each fold's "
              "patients held out in turn): how the recipe does on new patients, and how much that varies. The default "
              "is chosen on this, never on test.",
    "AUC (95% CI)": "Chance that the model scores a random case with the finding above a random case without it (1 = perfect, 0.5 = coin toss).",
    "Sensitivity": "Share of test cases WITH the finding that the model flagged.",
    "Specificity": "Share of test cases WITHOUT the finding that the model cleared.",
    "Accuracy": "Share of all test cases called correctly.",
    "Threshold": "Probability at or above which the model flags a case; chosen on validation images.",
    "Test images": "Number of held-out test images (with the finding).",
    "External": "The same model on images from outside its training source, at the same threshold (docs/evaluation.md).",
    "Intervals": "How the 95% intervals were made: resampling patients (patient-level) or images (image-level, no patient ids).",
}


for name, task in TASKS.items():
    with st.container(border=True):
        st.markdown(f"### {task.title}")
        modality = "Chest X-ray" if task.modality == "xray" else "Thin blood smear, one red blood cell per image"
        data = "available on this machine" if dataset_available(name) else "not on this machine (set SECONDLOOK_DATA)"
        st.markdown(
            f"**Question:** does the image show **{task.finding}**? · **Input:** {modality} · "
            f"**Answers:** {task.positive} vs {task.negative} · **Dataset:** {data}"
        )
        models = store.bundled_models(name)
        if models and not research:  # clinical mode: the one validated model
            rec = common.recommended_model(name)
            models = [rec if rec in models else models[0]]
        if not models:
            st.info("No trained model for this task is bundled yet. It will appear here once training has finished.")
            continue
        rows = []
        for mid in models:
            card = common.card(name, mid)
            test = card.get("test") or {}
            row = {"Model": common.model_label(name, mid) if research else card.get("title", mid)}
            if test:
                pl = card.get("test_patient_level")
                ci = pl if pl else test  # patient-level where the card has it; else the image-level DeLong/Wilson block
                lo, hi = ci.get("auc_ci", [float("nan")] * 2)

                def rate(k: str) -> str:
                    c = ci.get(f"{k}_ci")
                    return common.pct(test[k]) + (f" ({common.pct(c[0])}–{common.pct(c[1])})" if c else "")

                row.update({
                    **({"CV AUC": cv_summary(card)} if research else {}),
                    "AUC (95% CI)": f"{test['auc']:.3f} ({lo:.3f}–{hi:.3f})",
                    "Sensitivity": rate("sensitivity"),
                    "Specificity": rate("specificity"),
                    "Accuracy": rate("accuracy"),
                    "Threshold": f"{card.get('threshold', float('nan')):.4f}",
                    "Test images": f"{test.get('n', '?')} ({test.get('n_positive', '?')})",
                    "Intervals": f"patient-level, {pl['n_patients']} patients" if pl else "image-level (no patient ids)",
                })
            else:
                row["AUC (95% CI)"] = "not yet evaluated on test"
            row["External"] = external_summary(card.get("external"))
            rows.append(row)
        choice = common.recommended_choice(name)
        if research:
            st.caption(f"**Default model** ({common.model_label(name, choice.model_id)}): chosen by {choice.rule} — "
                       f"{choice.note}.")
        df = pd.DataFrame(rows)
        MAIN = ["Model", "AUC (95% CI)", "Sensitivity", "Specificity", "External"]  # fits a 1280 px window
        st.dataframe(
            df[[c for c in MAIN if c in df.columns]], hide_index=True, width="stretch",
            column_config={k: st.column_config.TextColumn(k, help=v) for k, v in HELP.items()},
        )
        with st.expander("All figures (threshold, accuracy, test images, intervals" + (", CV" if research else "") + ")"):
            st.dataframe(df, hide_index=True, width="stretch",
                         column_config={k: st.column_config.TextColumn(k, help=v) for k, v in HELP.items()},
                         key=f"home_all_{name}")
        with st.expander("About these models"):
            for mid in models:
                card = common.card(name, mid)
                spec = task.model(mid)
                st.markdown(
                    f"**{spec.title}** — {card.get('parameters', 0):,} parameters, "
                    f"{card.get('file_bytes', 0) / 1e6:.1f} MB. {spec.description}"
                    + (f" *Deviation from the notebook:* {spec.deviations}" if spec.deviations else "")
                    + (f" *Not a default candidate:* {spec.not_a_candidate}." if spec.not_a_candidate else "")
                )
