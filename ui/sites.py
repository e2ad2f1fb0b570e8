"""Site profiles in the app: the sidebar selector of the active profile and the Site validation page's parts.

Logic lives in `core.site`; this module draws it. Uploaded cases are read in memory only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.evaluation import charts
from core.evaluation import operating_point as op
from core.evaluation.metrics import OperatingCurve
from core.site import build, cases, profiles
from core.site.validate import apply_calibration
from ui import resources

NONE = "None (shipped operating point)"
ACTIVE = "site_active"  # {"task/model": profile name}
REPORT = "site_report"  # the last evaluated (not yet saved) report: dict(task, model, name, profile, y, s)


# ---------------------------------------------------------------- sidebar --------------------------------------

def _usable(task: str, model_id: str) -> tuple[list[profiles.SiteProfile], list[profiles.SiteProfile]]:
    """(profiles measured on this model file, profiles refused because the file changed)."""
    try:
        found = profiles.list_profiles(task, model_id)
    except Exception:  # an unreadable site database must never stop the app
        return [], []
    sha = resources.version(task, model_id)
    return [p for p in found if p.model_sha256 == sha], [p for p in found if p.model_sha256 != sha]


def _on_select(task: str, model_id: str) -> None:
    key = f"{task}/{model_id}"
    name = st.session_state.get(f"site_sel/{key}", NONE)
    st.session_state.setdefault(ACTIVE, {})[key] = name
    th = st.session_state.setdefault("op_thresholds", {})
    ok, _ = _usable(task, model_id)
    prof = next((p for p in ok if p.name == name), None)
    st.session_state.setdefault("_op_sens_choice", {}).pop(key, None)  # the slider shows what the site's point gives
    if prof is None:
        th.pop(key, None)
    else:
        th[key] = float(prof.threshold)


def activate(task: str, model_id: str, name: str) -> None:
    """Make a profile the active one (e.g. right after saving it). Call from a widget callback."""
    st.session_state[f"site_sel/{task}/{model_id}"] = name
    _on_select(task, model_id)


def sidebar_selector(task: str, model_id: str) -> profiles.SiteProfile | None:
    """The 'Site profile' selectbox (only when profiles exist for this model); returns the active profile."""
    ok, refused = _usable(task, model_id)
    key = f"{task}/{model_id}"
    if refused:
        st.caption(f":material/gpp_bad: {len(refused)} site profile(s) for this model were measured on another model "
                   "file and are refused: " + ", ".join(p.name for p in refused))
    if not ok:
        st.session_state.get(ACTIVE, {}).pop(key, None)
        return None
    names = [NONE] + [p.name for p in ok]
    wkey = f"site_sel/{key}"
    if st.session_state.get(wkey) not in names:
        st.session_state[wkey] = st.session_state.get(ACTIVE, {}).get(key, NONE) if st.session_state.get(ACTIVE, {}).get(key) in names else NONE
    name = st.selectbox("Site profile", names, key=wkey, on_change=_on_select, args=(task, model_id),
                        help="A local operating point and calibration measured on this site's own labelled cases "
                             "(Site validation page). Choosing one sets the operating point to the site's.")
    return next((p for p in ok if p.name == name), None)


def active_profile(task: str, model_id: str) -> profiles.SiteProfile | None:
    name = st.session_state.get(ACTIVE, {}).get(f"{task}/{model_id}")
    ok, _ = _usable(task, model_id)
    return next((p for p in ok if p.name == name), None)


def calibrated_caption(prof: profiles.SiteProfile | None, probability: float | None) -> None:
    if prof is None or probability is None or not prof.calibration:
        return
    st.caption(f":material/location_on: Site '{prof.name}': recalibrated on {prof.n} local cases, this is "
               f"{op.fmt_prob(apply_calibration(probability, prof.calibration))}.")


# ---------------------------------------------------------------- page parts -----------------------------------

def read_cases(task: str, mode: str, images, labels, archive) -> cases.SiteCases:
    """Uploads -> SiteCases (raises SiteInputError with every problem named)."""
    if mode == "zip":
        if archive is None:
            raise cases.SiteInputError(["upload a zip holding the images and one labels CSV"])
        return cases.from_zip(archive.getvalue(), task)
    if not images or labels is None:
        raise cases.SiteInputError(["upload the images and a labels CSV (path,label[,patient_id])"])
    files = {f.name: f.getvalue() for f in images}
    return cases.from_uploads(files, labels.getvalue(), task, source=labels.name)


def show_problems(exc: cases.SiteInputError, limit: int = 12) -> None:
    shown = exc.problems[:limit]
    more = len(exc.problems) - len(shown)
    st.error("These cases cannot be used as given:\n\n" + "\n".join(f"- {p}" for p in shown)
             + (f"\n- … and {more} more" if more > 0 else ""), icon=":material/error:")


def evaluate(task: str, model_id: str, name: str, site_cases: cases.SiteCases) -> dict:
    """Score and evaluate uploads with the loaded model; nothing is saved yet."""
    card = resources.card(task, model_id)
    s = build.score_cases(resources.model(task, model_id), task, model_id, site_cases)
    rep = build.report(task, site_cases.y, s, float(card["threshold"]), site_cases.groups, unit=site_cases.unit)
    prof = build.make_profile(name, task, model_id, resources.version(task, model_id), float(card["threshold"]), rep)
    return {"task": task, "model": model_id, "name": name, "profile": prof, "y": site_cases.y, "s": s}


def rates_table(prof: profiles.SiteProfile) -> pd.DataFrame:
    m = prof.metrics
    rows = []
    for key, (label, _) in op.RATE_LABELS.items():
        row = {"metric": label}
        for col, pt in (("current", m["current"]), ("proposed", m["proposed"])):
            if pt is None:
                continue
            row[col] = op.fmt_pct(pt[key])
            row[f"{col} 95% CI"] = op.fmt_ci(tuple(np.nan if v is None else v for v in pt["ci"][key]))
        rows.append(row)
    return pd.DataFrame(rows)


def show_report(prof: profiles.SiteProfile, y=None, s=None, key: str = "site") -> None:
    """Everything measured on the site's cases; charts when the scores are at hand (a fresh evaluation)."""
    m = prof.metrics
    task = prof.task
    pos, neg, _ = op.nouns(task)
    st.markdown(f"**{m['n']} cases** ({m['n_positive']} {pos}, {m['n_negative']} {neg})"
                + (f" from **{m['n_clusters']} {m.get('cluster_unit', 'patient')}s**" if m.get("n_clusters") else "")
                + f". AUC **{m['auc']:.3f}** (95% CI {m['auc_ci'][0]:.3f}–{m['auc_ci'][1]:.3f}).")
    cur = m["current"]
    st.markdown(f"At the **current operating point** ({cur['threshold']:.4f}): " + op.meaning(task, {**cur, "n_pos": m["n_positive"], "n_neg": m["n_negative"]}, where="here"))
    if m["too_small"]:
        st.warning(m["too_small"], icon=":material/warning:")
    else:
        prop = m["proposed"]
        st.success(f"**Proposed site operating point: {prop['threshold']:.4f}** (the task's rule `{m['rule']}` applied to these "
                   "cases). " + op.meaning(task, {**prop, "n_pos": m["n_positive"], "n_neg": m["n_negative"]}, where="here",
                                            lead="There the model"),
                   icon=":material/location_on:")
        st.caption("The proposed point is read on the same cases it was chosen on, so its numbers are optimistic; "
                   "check it on new local cases before relying on it.")
    st.dataframe(rates_table(prof), hide_index=True, width="stretch", key=f"{key}_rates")
    st.caption(f"Intervals: {cur['ci_method']}.")
    cal = m["calibration"]
    after = m.get("calibration_after")
    st.markdown(f"Calibration on these cases: ECE **{cal['ece']:.3f}**, Brier **{cal['brier']:.3f}**"
                + (f"; after the site recalibration ECE **{after['ece']:.3f}**, Brier **{after['brier']:.3f}**." if after else "."))
    if y is not None and s is not None:
        left, right = st.columns(2)
        curve = OperatingCurve.from_scores(y, s)
        pts = [{"threshold": cur["threshold"], "label": "current", "colour": "#444444", "symbol": "circle"}]
        if m["proposed"]:
            pts.append({"threshold": m["proposed"]["threshold"], "label": "site", "colour": "#d62728", "symbol": "star"})
        left.plotly_chart(charts.roc_figure([{"name": "These cases", "curve": curve, "auc": (m["auc"], *m["auc_ci"]), "points": pts}],
                                            height=380), width="stretch", key=f"{key}_roc")
        items = [{"name": "As shipped", "y": y, "s": s}]
        if prof.calibration:
            items.append({"name": "Site recalibration", "y": y, "s": apply_calibration(s, prof.calibration)})
        right.plotly_chart(charts.reliability_figure(items, height=380), width="stretch", key=f"{key}_cal")


def profiles_frame(found: list[profiles.SiteProfile], sha: str) -> pd.DataFrame:
    return pd.DataFrame([{"name": p.name, "model": p.model_id, "cases": p.n, "site threshold": round(p.threshold, 4),
                          "shipped threshold": round(p.shipped_threshold, 4), "recalibrated": bool(p.calibration),
                          "created": p.created_at, "usable": "yes" if p.model_sha256 == sha else "no: model file changed"}
                         for p in found])
