"""Site profiles in the app: the sidebar selector of the active profile and the Site validation page's parts.

Logic lives in `core.site`; this module draws it. Uploaded cases are read in memory only. A site may also validate on
the results its readers confirmed (core.confirmations): those labels are readers' calls, and every table, caption
and saved profile built from them says "reader-confirmed, not ground truth". Saving, applying and deleting a profile
are the site admin's (`ui.access.require("site_profiles")`, checked on the server) and name who did it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

from core import confirmations
from core.evaluation import charts
from core.evaluation import operating_point as op
from core.evaluation.metrics import OperatingCurve
from core.registry import get_task
from core.site import build, cases, profiles
from core.site.validate import apply_calibration
from ui import access, resources

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


def _set_active(task: str, model_id: str, name: str) -> None:
    """Score this model with profile `name` (NONE: the shipped point) in this session: its threshold becomes the
    operating point until someone moves it."""
    key = f"{task}/{model_id}"
    st.session_state.setdefault(ACTIVE, {})[key] = name
    th = st.session_state.setdefault("op_thresholds", {})
    ok, _ = _usable(task, model_id)
    prof = next((p for p in ok if p.name == name), None)
    st.session_state.setdefault("_op_sens_choice", {}).pop(key, None)  # the slider shows what the site's point gives
    if prof is None:
        th.pop(key, None)
    else:
        th[key] = float(prof.threshold)


def _on_select(task: str, model_id: str) -> None:
    _set_active(task, model_id, st.session_state.get(f"site_sel/{task}/{model_id}", NONE))


def activate(task: str, model_id: str, name: str) -> None:
    """Make a profile the active one (e.g. right after saving it). Call from a widget callback."""
    st.session_state[f"site_sel/{task}/{model_id}"] = name
    _on_select(task, model_id)


def _applied(task: str, model_id: str) -> dict | None:
    try:
        return profiles.applied(task, model_id)
    except Exception:  # an unreadable site database must never stop the app
        return None


def _apply_for_everyone(task: str, model_id: str, name: str) -> None:
    """The site admin's choice of the profile every user scores this model with (checked again on the server)."""
    user = access.require("site_profiles")
    profiles.apply_for_everyone(None if name == NONE else name, task, model_id, by=user.label)
    access.note("profile_applied", user, f"{task}/{model_id} '{name}' applied for everyone")


def _follow_applied(task: str, model_id: str, ok: list[profiles.SiteProfile]) -> profiles.SiteProfile | None:
    """A user who does not set the site's point scores with the profile the site admin applied for everyone; when
    the admin changes it, the session follows (once: a slider move afterwards stays the user's)."""
    a = _applied(task, model_id)
    prof = next((p for p in ok if a and p.name == a["name"]), None)
    name = prof.name if prof is not None else NONE
    if st.session_state.get(ACTIVE, {}).get(f"{task}/{model_id}", NONE) != name:
        _set_active(task, model_id, name)
    if prof is not None:
        st.caption(f":material/location_on: Site profile **{prof.name}**, applied for everyone by {a['applied_by']} "
                   f"on {a['applied_at'][:10]}.")
    return prof


def sidebar_selector(task: str, model_id: str) -> profiles.SiteProfile | None:
    """The active site profile. The site admin picks one (the 'Site profile' selectbox, only when profiles exist for
    this model) and may apply it for everyone; every other role scores with the one applied for everyone."""
    ok, refused = _usable(task, model_id)
    key = f"{task}/{model_id}"
    if refused:
        st.caption(f":material/gpp_bad: {len(refused)} site profile(s) for this model were measured on another model "
                   "file and are refused: " + ", ".join(p.name for p in refused))
    if not ok:
        st.session_state.get(ACTIVE, {}).pop(key, None)
        return None
    if not access.can("site_profiles"):
        return _follow_applied(task, model_id, ok)
    names = [NONE] + [p.name for p in ok]
    a = _applied(task, model_id)
    applied = a["name"] if a and a["name"] in names else NONE
    wkey = f"site_sel/{key}"
    if st.session_state.get(wkey) not in names:
        chosen = st.session_state.get(ACTIVE, {}).get(key)
        if chosen not in names:  # a new session starts with what is applied for everyone
            chosen = applied
            _set_active(task, model_id, chosen)
        st.session_state[wkey] = chosen
    name = st.selectbox("Site profile", names, key=wkey, on_change=_on_select, args=(task, model_id),
                        help="A local operating point and calibration measured on this site's own labelled cases "
                             "(Site validation page). Choosing one sets the operating point to the site's for you; "
                             "'Apply for everyone' makes every user score with it.")
    if name != applied:
        st.button("Apply for everyone" if name != NONE else "Shipped point for everyone", key=f"site_apply/{key}",
                  on_click=_apply_for_everyone, args=(task, model_id, name), icon=":material/groups:",
                  help="Every user of this installation then scores this model with this profile (the audit log "
                       "records who applied it).")
    elif a:
        st.caption(f"Applied for everyone by {a['applied_by']} on {a['applied_at'][:10]}.")
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


ALL_SITES = "All confirmations in this installation"


def confirmed_sites(task: str, model_id: str) -> list[str]:
    """The site profiles readers confirmed this model's results under (for the page's filter)."""
    if not confirmations.db_path().is_file():
        return []
    f = confirmations.to_frame(task=task, kind="image", model_id=model_id)
    return sorted(f["site_profile"].dropna().unique().tolist())


def confirmed_cases(task: str, model_id: str, site_profile: str | None) -> pd.DataFrame:
    """This model file's reader-confirmed cases (none, without creating the database, when nothing was confirmed)."""
    if not confirmations.db_path().is_file():
        return pd.DataFrame(columns=["image_sha256", "label", "probability", "source"])
    return confirmations.site_labels(task, model_id, resources.version(task, model_id), site_profile=site_profile)


def confirmed_table(task: str, found: pd.DataFrame) -> pd.DataFrame:
    """The confirmed cases as the page lists them, each row saying what its label is."""
    pos, neg = get_task(task).positive, get_task(task).negative
    return pd.DataFrame({"image SHA-256": found["image_sha256"].str[:16] + "…",
                         "reader's call": np.where(found["label"] == 1, pos, neg),
                         "model probability": found["probability"].round(4),
                         "labels": build.READER_CONFIRMED})


def evaluate_confirmed(task: str, model_id: str, name: str, site_profile: str | None) -> dict:
    """Evaluate the reader-confirmed cases like an uploaded set (same intervals, same too-few rule); nothing is saved.
    Raises SiteInputError when there are not cases of both calls."""
    shipped = float(resources.card(task, model_id)["threshold"])
    found, rep = build.from_confirmations(task, model_id, resources.version(task, model_id), shipped,
                                          site_profile=site_profile)
    prof = build.make_profile(name, task, model_id, resources.version(task, model_id), shipped, rep,
                              note=build.confirmed_note(rep))
    return {"task": task, "model": model_id, "name": name, "profile": prof, "y": found["label"].to_numpy(),
            "s": found["probability"].to_numpy(), "labels": build.READER_CONFIRMED}


def save_and_apply(prof: profiles.SiteProfile) -> profiles.SiteProfile:
    """Store a profile under the signed-in site admin's name and make it the active one. Call from a callback."""
    user = access.require("site_profiles")
    saved = profiles.save(dataclasses.replace(prof, created_by=user.label, created_by_role=user.role,
                                                     created_by_sub=user.sub))
    activate(saved.task, saved.model_id, saved.name)
    _audit("profile_saved", user, saved)
    _audit("profile_applied", user, saved)
    return saved


def delete(prof: profiles.SiteProfile) -> None:
    """Delete a saved profile (and stop using it in this session). Call from a callback."""
    user = access.require("site_profiles")
    profiles.delete(prof.name, prof.task, prof.model_id)
    key = f"{prof.task}/{prof.model_id}"
    if st.session_state.get(ACTIVE, {}).get(key) == prof.name:
        st.session_state[f"site_sel/{key}"] = NONE
        _on_select(prof.task, prof.model_id)
    _audit("profile_deleted", user, prof)


def _audit(kind: str, user, prof: profiles.SiteProfile) -> None:
    access.note(kind, user, f"{prof.task}/{prof.model_id} '{prof.name}' (threshold {prof.threshold:.4f}, "
                            f"{prof.n} cases, labels {build.labels_of(prof)})")


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
        row["labels"] = build.labels_of(prof)
        rows.append(row)
    return pd.DataFrame(rows)


def show_report(prof: profiles.SiteProfile, y=None, s=None, key: str = "site") -> None:
    """Everything measured on the site's cases; charts when the scores are at hand (a fresh evaluation)."""
    m = prof.metrics
    task = prof.task
    pos, neg, _ = op.nouns(task)
    if build.labels_of(prof) == build.READER_CONFIRMED:
        st.warning(f"**Labels: {build.READER_CONFIRMED}.** These are the calls readers made on results SecondLook showed "
                   "them. Readers who saw the model's answer can share its mistakes, so the numbers below measure how the "
                   "model does against your readers, not against a verified diagnosis.", icon=":material/person_check:")
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
                          "labels": build.labels_of(p), "created": p.created_at,
                          "saved by": f"{p.created_by} ({p.created_by_role.replace('_', ' ')})" if p.created_by else "",
                          "usable": "yes" if p.model_sha256 == sha else "no: model file changed"}
                         for p in found])
