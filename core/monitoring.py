"""Monitoring: what was scored, and do the scores still look like the model's validation scores?

* `batch_report` reads a core.batch output (`python -m core.monitor --task T --scores FILE`): rows, withheld and
  "unusual" rates, flag rate at the model's threshold, and drift (`core.evaluation.drift`: PSI over the validation
  deciles, KS p-value, alarm at `drift.ALARM_PSI`) of the assessed probabilities against the model's validation
  scores. Withheld rows have no probability: counted, never used for drift.
* `weekly` / `drift_table` / `alarms` summarise the audit log (core.audit) per task, model, site profile and ISO week,
  and the drift of its recent probabilities; the app's Monitoring page and Home's alarm line read them.
* `alarm_study` measures the numbers the alarm level was chosen on (validation patients resampled; another lab's
  training-session cells); `field_scores` scores malaria_fields cells with a bundled model (TensorFlow).

* `confirmation_frame` / `agreement_lines` / `agreement_weekly` read the readers' confirmations
  (core.confirmations): per task, model, site profile (and ISO week), how many results readers confirmed and how
  often their call agreed with SecondLook's decision, counting each result's latest word once; `with_agreement` puts
  the weekly agreement beside the audit log's weekly volume, flag and withheld rates.

The reference is the model's validation scores (`val_predictions.csv`; for a fold ensemble, out-of-fold scores over
all of train), on the scale every surface shows (the card's calibration), as batch rows and audit rows are.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from core import audit, confirmations
from core.evaluation import drift
from core.models.selection import default_model
from core.models.store import model_dir, read_card, read_predictions
from core.registry import get_task

RECENT_DAYS = 28  # the audit scores whose drift the alarm reads: the last four weeks
NO_SITE = "(none)"  # the site-profile cell of scorings made at the shipped operating point


def reference_scores(task: str, model_id: str, root: str | Path | None = None) -> np.ndarray:
    """The model's validation scores; FileNotFoundError naming the file when the model has none."""
    try:
        return read_predictions(task, model_id, "val", root)["score"].to_numpy(np.float64)
    except FileNotFoundError:
        raise FileNotFoundError(f"{task}/{model_id} has no validation scores (val_predictions.csv): "
                                "nothing to compare with") from None


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def batch_report(task: str, rows: list[dict], model_id: str | None = None, root: str | Path | None = None) -> dict:
    """Drift and rates of one core.batch output's rows against the validation scores of the model that scored them.

    The model is `model_id`, else the one the rows name, else the task's default. Rows of another task or model are
    refused (ValueError): their scores cannot be compared with this model's validation."""
    get_task(task)  # unknown task: KeyError with the known ones
    tasks = {r.get("task") for r in rows} - {None}
    models = {r.get("model") for r in rows} - {None}
    if tasks - {task}:
        raise ValueError(f"the scores are of task(s) {sorted(tasks)}, not {task}")
    if model_id is None:
        model_id = models.pop() if len(models) == 1 else default_model(task, root)
    elif models - {model_id}:
        raise ValueError(f"the scores come from model(s) {sorted(models)}, not {model_id}: "
                         "compare them with their own model's validation scores (--model)")
    ok = [r for r in rows if r.get("ok") is not False and not r.get("error")]
    withheld = [r for r in ok if r.get("withheld")]
    probs = np.array([r["probability"] for r in ok if r.get("probability") is not None and not r.get("withheld")],
                     dtype=np.float64)
    threshold = read_card(task, model_id, root).get("threshold")
    d = drift.drift(reference_scores(task, model_id, root), probs)
    return {
        "task": task, "model": model_id, "rows": len(rows), "n": d["n"], "n_withheld": len(withheld),
        "n_errors": len(rows) - len(ok), "withheld_rate": _rate(len(withheld), len(ok)),
        "unusual_rate": _rate(sum(bool(r.get("caution")) for r in ok), len(ok)),
        "threshold": threshold,
        "flag_rate": float(np.mean(probs >= threshold)) if probs.size and threshold is not None else None,
        "psi": d["psi"], "ks_p": d["ks_p"], "alarm": bool(d["alarm"]), "reason": d["reason"],
        "alarm_psi": d["alarm_psi"], "n_reference": d["n_reference"],
    }


def batch_file_report(task: str, path: str | Path, model_id: str | None = None) -> dict:
    """`batch_report` of a core.batch CSV/Parquet file (FileNotFoundError when it is not there)."""
    from core.batch.output import read_rows

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return batch_report(task, read_rows(path), model_id)


# ---- the audit log ------------------------------------------------------------------------------------------------

GROUP = ["task", "model_id", "site_profile"]


def audit_frame(since=None, db: str | Path | None = None) -> pd.DataFrame:
    """The audit rows (since `since`, a datetime or ISO text) with `week` (ISO, e.g. 2026-W49), `assessed`, `flagged`,
    `withheld`, `unusual` (a decision given with the "unusual for this model" caution) and a site profile of "(none)"
    for the shipped operating point."""
    df = audit.to_frame(since=since, db=db)
    positive = df["task"].map(_positive)
    return df.assign(
        site_profile=df["site_profile"].fillna(NO_SITE),
        week=pd.to_datetime(df["created_at"], utc=True, format="ISO8601").dt.strftime("%G-W%V"),
        withheld=df["withheld_reason"].notna(),
        assessed=df["probability"].notna() & df["withheld_reason"].isna(),
        flagged=df["decision"].notna() & (df["decision"] == positive),
        unusual=df["caution"].notna() & df["decision"].notna(),
    )


def _positive(task: str) -> str | None:
    try:
        return get_task(task).positive
    except KeyError:
        return None


def _lines(frame: pd.DataFrame, keys: list[str], drift_columns: list[str]) -> pd.DataFrame:
    """One row per `keys` group: scorings, assessed, withheld rate, flag rate (of the assessed) and `drift_columns`
    of its drift against the model's validation scores."""
    cols = keys + ["scorings", "assessed", "withheld_rate", "flag_rate", "unusual_rate"] + drift_columns
    out = []
    for values, g in frame.groupby(keys, sort=True):
        line = dict(zip(keys, values))
        d = _group_drift(line["task"], line["model_id"], g)
        assessed = int(g["assessed"].sum())
        out.append({**line, "scorings": len(g), "assessed": assessed, "withheld_rate": float(g["withheld"].mean()),
                    "flag_rate": _rate(int(g["flagged"].sum()), assessed),
                    "unusual_rate": _rate(int(g["unusual"].sum()), assessed), **{c: d[c] for c in drift_columns}})
    return pd.DataFrame(out, columns=cols)


def weekly(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task, model, site profile and ISO week (newest first): scorings, withheld rate, flag rate (of assessed
    scorings), and the week's PSI against validation where it has enough assessed scores."""
    table = _lines(frame, GROUP + ["week"], ["psi", "alarm"])
    return table.sort_values(["week"] + GROUP, ascending=[False, True, True, True], ignore_index=True)


def drift_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One drift line per task, model and site profile over the rows in `frame`: n, withheld and flag rates, PSI,
    KS p, alarm (True / False / None when too few) and the reason in words."""
    return _lines(frame, GROUP, ["psi", "ks_p", "alarm", "reason"])


def _group_drift(task: str, model_id: str, g: pd.DataFrame) -> dict:
    probs = g.loc[g["assessed"], "probability"].to_numpy(np.float64)
    try:
        ref = _cached_reference(task, model_id)
    except (FileNotFoundError, KeyError):
        return {"psi": None, "ks_p": None, "alarm": None, "n": int(probs.size), "reason": "no validation scores for this model"}
    return drift.drift(ref, probs)


def _cached_reference(task: str, model_id: str) -> np.ndarray:
    """`reference_scores` of a bundled model, read again only when its file changes (one table has many groups)."""
    path = model_dir(task, model_id) / "val_predictions.csv"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise FileNotFoundError(path) from None
    return _reference_at(task, model_id, mtime)


@lru_cache(maxsize=32)
def _reference_at(task: str, model_id: str, mtime: float) -> np.ndarray:
    del mtime  # the cache key only
    out = reference_scores(task, model_id)
    out.flags.writeable = False
    return out


def recent_since(days: int = RECENT_DAYS, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def alarms(days: int = RECENT_DAYS, db: str | Path | None = None) -> list[dict]:
    """The drift lines of the last `days` days whose alarm fires (enough scores and PSI >= the alarm level). No log
    yet: none (the log is not created by looking)."""
    if not Path(db if db is not None else audit.db_path()).expanduser().is_file():
        return []
    table = drift_table(audit_frame(since=recent_since(days), db=db))
    return [r for r in table.to_dict("records") if r["alarm"] is True]


def alarm_text(line: dict) -> str:
    """One sentence for a drift alarm."""
    site = "" if line["site_profile"] == NO_SITE else f" at site profile {line['site_profile']}"
    return (f"{line['task']} / {line['model_id']}{site}: the last {line['assessed']} scores are unlike the "
            f"model's validation scores (PSI {line['psi']:.2f} ≥ {drift.ALARM_PSI:g}, KS p {line['ks_p']:.1g}). "
            "Check the images and the site before trusting its calls.")


# ---- readers' confirmations: AI-reader agreement -------------------------------------------------------------------

WHAT = {"image": "images", "cell": "field cells"}  # what a confirmation row is about, in the tables' words
AGREEMENT_COLUMNS = ["confirmed", "judged", "agreed", "agreement_rate"]


def confirmation_frame(since=None, db: str | Path | None = None) -> pd.DataFrame:
    """The latest word on each confirmed result (a reader may change their mind: the last call counts, once), since
    `since`, with `week` (ISO, of that last word), `what` (images, field cells) and "(none)" for no site profile."""
    path = Path(db).expanduser() if db is not None else confirmations.db_path()
    df = confirmations.latest(confirmations.to_frame(db=db)) if path.is_file() else \
        pd.DataFrame(columns=confirmations.COLUMNS)  # none yet: looking creates no database
    if since is not None and not df.empty:
        start = pd.Timestamp(since)
        start = start.tz_localize("UTC") if start.tzinfo is None else start
        df = df[pd.to_datetime(df["created_at"], utc=True, format="ISO8601") >= start]
    return df.assign(
        site_profile=df["site_profile"].fillna(NO_SITE),
        week=pd.to_datetime(df["created_at"], utc=True, format="ISO8601").dt.strftime("%G-W%V"),
        what=df["kind"].map(WHAT),
    )


def _agreement(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per `keys` group: results confirmed, judged (the model had made a decision), agreed, agreement rate."""
    out = []
    for values, g in frame.groupby(keys, sort=True):
        a = confirmations.agreement(g)
        out.append({**dict(zip(keys, values)), "confirmed": len(g), "judged": a["n"], "agreed": a["agreed"],
                    "agreement_rate": np.nan if a["rate"] is None else a["rate"]})
    return pd.DataFrame(out, columns=keys + AGREEMENT_COLUMNS).astype({"agreement_rate": np.float64})


def agreement_lines(frame: pd.DataFrame) -> pd.DataFrame:
    """AI-reader agreement per task, model, site profile and what was confirmed, over the rows of `frame`."""
    return _agreement(frame, GROUP + ["what"])


def agreement_weekly(frame: pd.DataFrame) -> pd.DataFrame:
    """AI-reader agreement per task, model, site profile, what and ISO week (newest first)."""
    table = _agreement(frame, GROUP + ["what", "week"])
    return table.sort_values(["week"] + GROUP + ["what"], ascending=[False, True, True, True, True], ignore_index=True)


def with_agreement(weeks: pd.DataFrame, agreement: pd.DataFrame) -> pd.DataFrame:
    """The audit log's weekly lines with the week's image confirmations and agreement beside them (a week with
    confirmations and no scorings still shows)."""
    images = agreement[agreement["what"] == WHAT["image"]].drop(columns="what") if not agreement.empty else \
        pd.DataFrame(columns=GROUP + ["week"] + AGREEMENT_COLUMNS)
    both = weeks.merge(images, on=GROUP + ["week"], how="outer")
    for c in ("scorings", "assessed", "confirmed", "judged", "agreed"):
        both[c] = both[c].fillna(0).astype(int)
    return both.sort_values(["week"] + GROUP, ascending=[False, True, True, True], ignore_index=True)


def agreement_text(line: dict) -> str:
    """One sentence: 'Readers agreed with SecondLook on 45 of 50 confirmed results (90%) ...'."""
    site = "" if line["site_profile"] == NO_SITE else f" at site profile {line['site_profile']}"
    what = "field cells" if line.get("what") == WHAT["cell"] else "results"
    head = f"{line['task']} / {line['model_id']}{site}: "
    if not line["judged"]:
        return head + f"{line['confirmed']} {what} confirmed, none with a decision SecondLook made (all withheld)."
    rest = line["confirmed"] - line["judged"]
    return (head + f"Readers agreed with SecondLook on {line['agreed']} of {line['judged']} confirmed {what} "
            f"({line['agreement_rate']:.0%})" + (f"; {rest} more had no decision to agree with (withheld)." if rest else "."))


# ---- how the alarm level was chosen -------------------------------------------------------------------------------


def field_scores(sessions: tuple[str, ...], task: str = "malaria", model_id: str | None = None) -> dict[str, np.ndarray]:
    """Scores of the annotated cells of each malaria_fields session, cut as the model cuts field cells
    (core.site.fields) and scored by the model (its card's calibration). Needs TensorFlow and the dataset."""
    from core.models.store import load_model
    from core.site.build import score_cases
    from core.site.fields import field_cases

    model_id = model_id or default_model(task)
    spec = get_task(task).model(model_id).input
    model = load_model(task, model_id)
    return {s: score_cases(model, task, model_id, field_cases((s,), spec.field_cut, spec.field_stain)) for s in sessions}


CONVENTIONAL_PSI = 0.25  # the textbook "significant shift" level, reported beside ours


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"n": int(v.size), "median": float(np.median(v)), "p95": float(np.quantile(v, 0.95)), "max": float(v.max()),
            "min": float(v.min()), "share_at_or_above_0.25": float(np.mean(v >= CONVENTIONAL_PSI)),
            "share_at_or_above_alarm": float(np.mean(v >= drift.ALARM_PSI))}


def patient_resamples(scores: np.ndarray, groups: np.ndarray, repeats: int = 200, seed: int = 0) -> dict:
    """PSI between patient-disjoint parts of one source's scores (the rest of the patients the reference): random
    halves of the patients; draws of a tenth of them (a test-split-sized set of new patients), all their scores and
    `drift.MIN_SCORES` of them."""
    rng = np.random.default_rng(seed)
    patients = np.unique(groups)
    k = max(1, round(patients.size / 10))
    halves, tenths, ks, small = [], [], [], []
    for _ in range(repeats):
        perm = rng.permutation(patients)
        a = np.isin(groups, perm[: patients.size // 2])
        halves.append(drift.psi(scores[a], scores[~a]))
        b = np.isin(groups, perm[:k])
        tenths.append(drift.psi(scores[~b], scores[b]))
        ks.append(drift.ks_test(scores[~b], scores[b]))
        small.append(drift.psi(scores[~b], scores[rng.choice(np.flatnonzero(b), drift.MIN_SCORES, replace=False)]))
    return {"patients": int(patients.size), "halves": _summary(halves),
            f"draws_of_{k}_patients": {**_summary(tenths), "median_ks_p": float(np.median(ks))},
            f"draws_of_{drift.MIN_SCORES}_scores_of_{k}_patients": _summary(small)}


def small_draws(reference: np.ndarray, scores: np.ndarray, repeats: int = 200, seed: int = 0) -> dict:
    """PSI of random `drift.MIN_SCORES`-score draws of `scores` (the smallest set the alarm judges)."""
    rng = np.random.default_rng(seed)
    return _summary([drift.psi(reference, rng.choice(scores, drift.MIN_SCORES, replace=False)) for _ in range(repeats)])


def alarm_study(task: str = "malaria", repeats: int = 200, seed: int = 0) -> dict:
    """The numbers `drift.ALARM_PSI` was chosen on: no test split is read. Quiet side: the default model's validation
    scores resampled by patient. Alarm side: the default model on malaria_fields training-session cells (S2, S3)."""
    from core.evaluation.patients import prediction_groups
    from core.fields.cuts import STOP_SESSIONS, TRAIN_SESSIONS

    model_id = default_model(task)
    val = read_predictions(task, model_id, "val")
    groups = prediction_groups(task, val["path"])
    if groups is None:
        raise FileNotFoundError(f"the {task} manifest is needed to group validation scores by patient (SECONDLOOK_DATA)")
    ref = val["score"].to_numpy(np.float64)
    other = {}
    for session, s in field_scores(TRAIN_SESSIONS + STOP_SESSIONS, task, model_id).items():
        d = drift.drift(ref, s)
        other[session] = {**{k: d[k] for k in ("n", "psi", "ks_p", "alarm")},
                          f"draws_of_{drift.MIN_SCORES}": small_draws(ref, s, repeats, seed)}
    negatives = val["y"].to_numpy() == 0
    return {"task": task, "model": model_id, "n_reference": int(ref.size), "alarm_psi": drift.ALARM_PSI,
            "same_source": {**patient_resamples(ref, groups, repeats, seed),
                            "only_the_negative_cells": drift.psi(ref, ref[negatives])},
            "another_lab": other}
