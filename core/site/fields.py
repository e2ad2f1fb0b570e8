"""The real case: cells cut from the annotated `malaria_fields` smear fields as a "new site" for the NIH-trained
cell models (another lab, species, stain and microscope).

`field_cases` cuts every annotated, decided cell of the given capture sessions (the test split is session S1)
with `core.fields.cuts.session_crops` (in memory only). The field a cell comes from is its cluster: cells of
one field share slide, stain and focus, so intervals resample fields, not cells.

A profile built on all of S1 evaluates its site point on the very cells it was chosen on (optimistic). Two honest
checks: `split_study` chooses the point on one half of the S1 fields (contiguous in file-name order, i.e. in capture
order) and reads it on the other half, both ways round; `cross_session` chooses it on another session of the same
lab (S3, a training-split session) and reads it on S1, as a site would use a profile on its next patients.
"""
from __future__ import annotations

import numpy as np

from core.evaluation import metrics
from core.registry import get_task
from core.site import build as site_build
from core.site.cases import SiteCases, from_arrays

TARGET_SPECIFICITY = 0.97


def field_cases(sessions: tuple[str, ...] = ("S1",), cut: str = "box", stain: str = "raw") -> SiteCases:
    """Every annotated, decided cell of `sessions`, cut as the model at hand cuts field cells (`InputSpec.field_cut`,
    `InputSpec.field_stain`)."""
    from core.fields.cuts import session_crops

    crops, y, boxes = session_crops(tuple(sessions), cut=cut, stain=stain)
    names = [f"{r.path}#x{r.x}y{r.y}" for r in boxes.itertuples()]
    return from_arrays(crops, y, names, boxes["path"].tolist(), unit="field")


def halves(groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the cases in the first and second half of the fields, by field name (capture order)."""
    fields = sorted(set(groups))
    first = set(fields[: len(fields) // 2])
    g = np.asarray(groups)
    mask = np.isin(g, list(first))
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def _rates(y, s, thr: float) -> dict:
    m = metrics.metrics_at(y, s, thr)
    return {"threshold": float(thr), "sensitivity": m["sensitivity"], "specificity": m["specificity"],
            "tp": m["tp"], "fn": m["fn"], "fp": m["fp"], "tn": m["tn"]}


def split_study(task: str, y, s, groups: list[str], shipped: float) -> list[dict]:
    """Choose on one half of the fields, evaluate on the other (both directions): the rule's point, the
    specificity >= 0.97 point, and the shipped point on the evaluation half."""
    rule = get_task(task).threshold_rule
    a, b = halves(groups)
    y, s = np.asarray(y), np.asarray(s)
    out = []
    for name, (fit, ev) in (("choose on fields 1st half, evaluate on 2nd", (a, b)),
                            ("choose on fields 2nd half, evaluate on 1st", (b, a))):
        t_rule = metrics.choose_threshold(rule, y[fit], s[fit])
        t_spec = metrics.threshold_for_specificity(y[fit], s[fit], TARGET_SPECIFICITY)
        out.append({
            "split": name, "n_fit": int(fit.size), "n_eval": int(ev.size), "positives_eval": int(y[ev].sum()),
            "shipped": _rates(y[ev], s[ev], shipped),
            "site_rule": _rates(y[ev], s[ev], t_rule),
            "site_specificity_0.97": _rates(y[ev], s[ev], t_spec),
        })
    return out


def cross_session(task: str, y_fit, s_fit, y, s) -> dict:
    """Site points chosen on one session's cells (the task's rule; specificity >= 0.97), read on another's."""
    rule = get_task(task).threshold_rule
    return {"site_rule": _rates(y, s, metrics.choose_threshold(rule, y_fit, s_fit)),
            "site_specificity_0.97": _rates(y, s, metrics.threshold_for_specificity(y_fit, s_fit, TARGET_SPECIFICITY)),
            "auc_chosen_on": metrics.roc_auc(y_fit, s_fit)}


CHOOSE_ON = ("S3",)  # the other session of the training split that no cell model trains on (secondlook_twosite stops on it)


def field_study(model_ids: list[str], name: str, sessions: tuple[str, ...] = ("S1",), task: str = "malaria",
                db=None, n_boot: int = 1000, save: bool = True, choose_on: tuple[str, ...] = CHOOSE_ON) -> list[dict]:
    """Build (and save) a site profile per model from the field cells, with the shipped-vs-site comparison, the
    split check and the cross-session check. One dict per model (the CLI prints each as a JSON line)."""
    from core.models.store import load_model

    cross = bool(choose_on) and not set(choose_on) & set(sessions)
    by_kind: dict[tuple[str, str], tuple] = {}
    rows = []
    for mid in model_ids:
        spec_in = get_task(task).model(mid).input
        kind = (spec_in.field_cut, spec_in.field_stain)
        if kind not in by_kind:  # cut once per kind of cut and stain, shared by the models that cut alike
            by_kind[kind] = (field_cases(sessions, *kind), field_cases(choose_on, *kind) if cross else None)
        cases, other = by_kind[kind]
        model = load_model(task, mid)
        p = site_build.build(name, task, mid, cases, model=model, db=db, n_boot=n_boot, save=save,
                             note=f"cells cut from malaria_fields session(s) {', '.join(sessions)} (annotated boxes); "
                                  "the site point is evaluated on the same cells it was chosen on")
        s = site_build.score_cases(model, task, mid, cases)
        y = cases.y
        spec_thr = metrics.threshold_for_specificity(y, s, TARGET_SPECIFICITY)
        line = site_build.summary_line(p)
        line["fields"] = {
            "sessions": list(sessions), "n_fields": len(set(cases.groups)), "cluster": "field",
            "shipped": _rates(y, s, p.shipped_threshold),
            "site_rule_same_cells": _rates(y, s, p.threshold),
            "site_specificity_0.97_same_cells": _rates(y, s, spec_thr),
            "split": split_study(task, y, s, cases.groups, p.shipped_threshold),
        }
        if other is not None:
            line["fields"]["cross_session"] = {"chosen_on": list(choose_on), "n_chosen_on": len(other.y),
                                               **cross_session(task, other.y, site_build.score_cases(model, task, mid, other), y, s)}
        rows.append(line)
    return rows


def _pct(r: dict, key: str) -> str:
    n = r["tp"] + r["fn"] if key == "sensitivity" else r["tn"] + r["fp"]
    k = r["tp"] if key == "sensitivity" else r["tn"]
    return f"{r[key]:.3f} ({k}/{n})" if key == "sensitivity" else f"{r[key]:.3f}"


def markdown_table(rows: list[dict]) -> str:
    """docs/evaluation.md's table of what a site profile recovers, from `field_study` rows (one block per model)."""
    out = ["| model | point | threshold | sensitivity | specificity |", "|---|---|---|---|---|"]
    for row in rows:
        f, cur = row["fields"], row["current"]
        ci = cur["ci"]
        label = f"{row['model']} (AUC {row['auc']:.3f})"
        out.append(f"| {label} | shipped | {f['shipped']['threshold']:.3f} | {_pct(f['shipped'], 'sensitivity')}; "
                   f"{ci['sensitivity'][0]:.2f}-{ci['sensitivity'][1]:.2f} | {f['shipped']['specificity']:.3f} "
                   f"({ci['specificity'][0]:.3f}-{ci['specificity'][1]:.3f}) |")
        for key, text in (("site_rule_same_cells", "site, task rule, same cells"),
                          ("site_specificity_0.97_same_cells", "site, specificity >= 0.97, same cells")):
            out.append(f"| | {text} | {f[key]['threshold']:.3f} | {_pct(f[key], 'sensitivity')} | {_pct(f[key], 'specificity')} |")
        cs = f.get("cross_session")
        if cs:
            on = "+".join(cs["chosen_on"])
            for key, text in (("site_rule", f"site, task rule, chosen on {on}"),
                              ("site_specificity_0.97", f"site, specificity >= 0.97 on {on}")):
                out.append(f"| | {text} | {cs[key]['threshold']:.3f} | {_pct(cs[key], 'sensitivity')} | "
                           f"{_pct(cs[key], 'specificity')} |")
    return "\n".join(out)
