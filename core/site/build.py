"""Build a site profile: score a site's labelled cases with one model, evaluate them, propose the site point.

Scoring goes through the evaluation path (`prepare` -> `predict_tensors`), so a case scores here exactly as in
`core.evaluate` and the app. A case the modality check would withhold (the wrong kind of image for the task) is
a bad input here: it names the file, and nothing is evaluated or saved.

A site may instead validate on the results its readers confirmed (`from_confirmations`): the probabilities the model
gave and the readers' calls as labels. Those are readers' calls, not ground truth, and the report and profile say so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.inference.decision import modality_verdict
from core.inference.calibrate import calibrated
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare_batch
from core.registry import get_task
from core.site import profiles, validate
from core.site.cases import SiteCases, SiteInputError

READER_CONFIRMED = "reader-confirmed, not ground truth"  # how every surface names labels that are readers' calls
HAND_LABELLED = "hand-labelled"


def score_cases(model, task: str, model_id: str, cases: SiteCases) -> np.ndarray:
    """Scores of every case; raises SiteInputError naming the cases of the wrong kind for the task."""
    t = get_task(task)
    wrong = [f"'{n}': not assessed for {t.title}: {msg}" for n, px in zip(cases.names, cases.pixels)
             if (msg := modality_verdict(px, t))]
    if wrong:
        raise SiteInputError(wrong)
    spec = t.model(model_id)
    out = []
    for i in range(0, len(cases), 256):  # prepared tensors in chunks keep memory flat for big sets
        out.append(calibrated(spec.task, spec.id, predict_tensors(model, prepare_batch(cases.pixels[i:i + 256], spec.input))))
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def report(task: str, y, scores, shipped_threshold: float, groups=None, n_boot: int = 1000, seed: int = 0,
           unit: str = "patient") -> dict:
    """`validate.evaluate_site` with the task's own threshold rule."""
    return validate.evaluate_site(y, scores, shipped_threshold, get_task(task).threshold_rule, groups, n_boot, seed, unit)


def make_profile(name: str, task: str, model_id: str, model_sha256: str, shipped_threshold: float, rep: dict,
                 note: str = "") -> profiles.SiteProfile:
    """A profile from a report: the proposed point and recalibration, or the shipped point when too few cases."""
    thr = rep["proposed_threshold"] if rep["proposed_threshold"] is not None else shipped_threshold
    note = note or (rep["too_small"] or "")
    return profiles.SiteProfile(name, task, model_id, model_sha256, int(rep["n"]), float(thr), float(shipped_threshold),
                                rep["recalibration"], rep, note=note)


def from_confirmations(task: str, model_id: str, model_sha256: str, shipped_threshold: float, *,
                       site_profile: str | None = None, db=None, n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Local validation from the readers' calls collected here (core.confirmations): the cases (one row per image,
    its latest call, the probability the model gave when it was shown) and `report` on them, with the same intervals
    and the same too-few rule as hand-made labels. Only this model file's results count. The report says its labels
    are readers' calls (`"labels"`), not ground truth. Fewer than one case of each class: SiteInputError."""
    from core import confirmations

    confirmed = confirmations.site_labels(task, model_id, model_sha256, site_profile=site_profile, db=db)
    y = confirmed["label"].to_numpy(np.int8)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if not n_pos or not n_neg:
        t = get_task(task)
        raise SiteInputError([f"Too few confirmed cases to validate: {n_pos} {t.positive} and {n_neg} {t.negative} by "
                              f"the readers' calls ({READER_CONFIRMED}). Local validation needs both, and at least "
                              f"{validate.MIN_PER_CLASS} of each to propose an operating point."])
    rep = report(task, y, confirmed["probability"].to_numpy(np.float64), shipped_threshold, None, n_boot, seed)
    return confirmed, {**rep, "labels": READER_CONFIRMED, "site_profile_filter": site_profile}


def labels_of(p: profiles.SiteProfile) -> str:
    """Where a profile's labels came from: hand-made (an uploaded set) or readers' calls."""
    return str(p.metrics.get("labels") or HAND_LABELLED)


def confirmed_note(rep: dict) -> str:
    """The saved note of a profile built from confirmations: what its labels are, then the too-few reason if any."""
    return (f"Labels are {READER_CONFIRMED}: {rep['n']} results as readers called them in SecondLook."
            + (f" {rep['too_small']}" if rep.get("too_small") else ""))


def summary_line(p: profiles.SiteProfile) -> dict:
    """The one JSON line of `python -m core.site`: metrics at the current point, the proposed point and its metrics."""
    m = p.metrics

    def brief(pt: dict | None) -> dict | None:
        if pt is None:
            return None
        keep = ("threshold", "tp", "fp", "fn", "tn", "sensitivity", "specificity", "ppv", "npv", "accuracy", "f1")
        return {**{k: pt[k] for k in keep}, "ci": {k: pt["ci"][k] for k in ("sensitivity", "specificity", "ppv", "npv")},
                "ci_method": pt["ci_method"]}

    return {
        "site": p.name, "task": p.task, "model": p.model_id, "model_sha256": p.model_sha256, "n": p.n,
        "n_positive": m["n_positive"], "n_negative": m["n_negative"], "auc": m["auc"], "auc_ci": m["auc_ci"],
        "rule": m["rule"], "current": brief(m["current"]), "proposed_threshold": m["proposed_threshold"],
        "proposed": brief(m["proposed"]), "too_small": m["too_small"], "recalibration": p.calibration,
        "ece_before": m["calibration"]["ece"], "ece_after": (m.get("calibration_after") or {}).get("ece"),
        "saved_threshold": p.threshold,
    }


def build(name: str, task: str, model_id: str, cases: SiteCases, model=None, db=None, n_boot: int = 1000,
          save: bool = True, note: str = "") -> profiles.SiteProfile:
    """Score, evaluate and (by default) save a site profile for the bundled model `task/model_id`."""
    from core.models.store import load_model, read_card

    card = read_card(task, model_id)
    sha = str(card.get("sha256", ""))
    model = model if model is not None else load_model(task, model_id)
    scores = score_cases(model, task, model_id, cases)
    rep = report(task, cases.y, scores, float(card["threshold"]), cases.groups, n_boot, unit=cases.unit)
    p = make_profile(name, task, model_id, sha, float(card["threshold"]), rep, note)
    return profiles.save(p, db) if save else p
