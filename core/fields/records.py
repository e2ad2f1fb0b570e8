"""Whole-field screening measured on annotated fields, recorded beside the model card (`fields.json`).

The field operating point is chosen on validation fields (`validation_fields`: the session a field model stopped on,
S3 of `train`; for the model refitted on both training sessions, every training field scored out of fold by its two
cross-session folds) by one rule: the lowest threshold whose false "infected" cells average at most
`FP_PER_FIELD_TARGET` per field. The test fields (session S1) are scored once with it. Found cells are matched one-to-one to annotated boxes at IoU >= 0.5; a
found cell matched to an infected box is infected, to a `difficult` box is left out, anything else is uninfected
(so an unannotated real cell called infected counts as a false alarm: pessimistic), except a box that contains an
infected cell's centre without matching it (a clump), which is left out. Intervals resample fields.
`infected_sensitivity` needs the IoU match; `infected_flagged_anywhere` is the lenient reading (the infected cell's
centre lies inside some found box called infected, e.g. a box around a clump of touching cells).

    python -m core.fields.records --model secondlook_twosite      # writes models/malaria/<id>/fields.json
    python -m core.fields.records --model secondlook_twosite --validation   # validation fields only, no test look
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from core.fields.cuts import STOP_SESSIONS, sessions_of
from core.fields.annotations import load_fields
from core.fields.matching import covering_centres, iou_matrix, match_greedy
from core.fields.screen import FieldScreen, screen_field
from core.io.images import read_image
from core.registry import ModelSpec, get_model_spec
from core.models.store import load_model, model_dir, read_card, write_card_file

TASK = "malaria"
TEST_SESSIONS = ("S1",)
FP_PER_FIELD_TARGET = 0.5  # false "infected" cells per field at the chosen point (the floor; aim 0.2)
N_BOOT = 2000
RECORD = "fields.json"


@dataclass
class ScoredField:
    """A screened field with the truth of each found cell and the annotated counts."""

    screen: FieldScreen
    truth: np.ndarray  # per found cell: 1 infected, 0 not, -1 matched to a difficult box (left out)
    n_boxes: int  # annotated, not difficult
    n_infected_boxes: int
    infected_found: np.ndarray  # per annotated infected box: index of the found cell matched to it, or -1
    n_matched_boxes: int  # annotated (not difficult) boxes matched by a found cell
    infected_covering: list  # per annotated infected box: indices of found boxes that contain its centre
    annotated: np.ndarray | None = None  # per found cell: matched to some annotated box (else a WBC, platelet,
    # debris, clump or an unannotated red cell)


def _match(s: FieldScreen, annotated: np.ndarray) -> list[tuple[int, int]]:
    """(found, annotated) pairs at IoU >= 0.5: the counted cells first (so the automatic figures are those of the
    counted cells alone), then the cells cut by the edge against the annotated boxes left."""
    idx_c, idx_e = np.flatnonzero(s.in_count), np.flatnonzero(~s.in_count)
    if not len(s.boxes) or not len(annotated):
        return []
    out = [(int(idx_c[i]), int(j)) for i, j in match_greedy(iou_matrix(s.boxes[idx_c], annotated))] if len(idx_c) else []
    left = np.setdiff1d(np.arange(len(annotated)), [j for _, j in out])
    if len(idx_e) and len(left):
        out += [(int(idx_e[i]), int(left[j])) for i, j in match_greedy(iou_matrix(s.boxes[idx_e], annotated[left]))]
    return out


def score_annotated(model, spec, fields) -> list[ScoredField]:
    out = []
    for f in fields:
        s = screen_field(read_image(f.image_path), model, spec, f.path)
        matches = _match(s, f.boxes)
        truth = np.zeros(len(s.boxes), np.int8)
        box_to_found = np.full(len(f.boxes), -1)
        for i, j in matches:
            truth[i] = -1 if f.difficult[j] else int(f.infected[j])
            box_to_found[j] = i
        inf = np.flatnonzero(f.infected & ~f.difficult)
        covering = covering_centres(s.boxes, f.boxes[inf])
        for c in covering:  # an unmatched box around an infected cell (a clump) is no false alarm
            truth[c[truth[c] == 0]] = -1
        annotated = np.zeros(len(s.boxes), bool)
        annotated[[i for i, _ in matches]] = True
        matched_counted = sum(1 for i, j in matches if s.in_count[i] and not f.difficult[j])
        out.append(ScoredField(s, truth, int((~f.difficult).sum()), int(len(inf)), box_to_found[inf],
                               int(matched_counted), covering, annotated))
    return out


def per_field(scored: list[ScoredField], threshold: float, review: bool = False) -> dict[str, np.ndarray]:
    """Per-field counts at a threshold (arrays over fields). The automatic count calls only the counted cells; with
    `review` the cells cut by the field's edge are queued too (`called`, `tp_boxes`, `tp_centre`, `fp`); the
    denominator (`cells`) and `tp_counted` (found infected cells called and in the count) are the counted cells'."""
    rows = {k: [] for k in ("fp", "tp_boxes", "tp_counted", "tp_centre", "inf_boxes", "found_inf_boxes", "boxes", "matched",
                            "cells", "called", "err")}
    for f in scored:
        in_count = f.screen.in_count
        above = f.screen.probabilities >= threshold
        called = above if review else above & in_count
        rows["fp"].append(int((called & (f.truth == 0)).sum()))
        found = f.infected_found[f.infected_found >= 0]
        hit = found if review else found[in_count[found]]
        rows["tp_boxes"].append(int(called[hit].sum()) if len(hit) else 0)
        rows["tp_counted"].append(int((called & in_count)[found].sum()) if len(found) else 0)  # in the count
        rows["found_inf_boxes"].append(len(hit))
        rows["tp_centre"].append(sum(bool(called[c].any()) for c in f.infected_covering if len(c)))
        rows["inf_boxes"].append(f.n_infected_boxes)
        rows["boxes"].append(f.n_boxes)
        rows["matched"].append(f.n_matched_boxes)
        n = int(in_count.sum())
        rows["cells"].append(n)
        rows["called"].append(int(called.sum()))
        pred = 100.0 * (above & in_count).sum() / n if n else 0.0
        true = 100.0 * f.n_infected_boxes / f.n_boxes if f.n_boxes else 0.0
        rows["err"].append(abs(pred - true))
    return {k: np.asarray(v, np.float64) for k, v in rows.items()}


def _stats(r: dict[str, np.ndarray]) -> dict[str, float]:
    def ratio(a, b):
        return float(a.sum() / b.sum()) if b.sum() else float("nan")

    return {
        "red_cells_found": ratio(r["matched"], r["boxes"]),
        "infected_cells_found": ratio(r["found_inf_boxes"], r["inf_boxes"]),
        "infected_sensitivity": ratio(r["tp_boxes"], r["inf_boxes"]),
        "infected_flagged_anywhere": ratio(r["tp_centre"], r["inf_boxes"]),
        "false_positive_cells_per_field": float(r["fp"].mean()) if len(r["fp"]) else float("nan"),
        "parasitemia_abs_error_median": float(np.median(r["err"])) if len(r["err"]) else float("nan"),
        "parasitemia_abs_error_mean": float(r["err"].mean()) if len(r["err"]) else float("nan"),
        "cells_found_per_field": float(r["cells"].mean()) if len(r["cells"]) else float("nan"),
        "boxes_per_field": float(r["boxes"].mean()) if len(r["boxes"]) else float("nan"),
    }


def summarise(scored: list[ScoredField], threshold: float, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Every field metric at `threshold`, each with a 95% bootstrap interval over fields."""
    r = per_field(scored, threshold)
    return {"n_fields": len(scored), "n_annotated_cells": int(r["boxes"].sum()), "n_infected_cells": int(r["inf_boxes"].sum()),
            "threshold": float(threshold)} | with_intervals(r, _stats, n_boot, seed)


def with_intervals(r: dict[str, np.ndarray], stats, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """`stats(r)` (a dict of figures from per-field arrays), each figure followed by its 95% bootstrap interval
    (`<name>_ci`) from resampling the fields."""
    point = stats(r)
    rng = np.random.default_rng(seed)
    n = len(next(iter(r.values())))
    boots = {k: [] for k in point}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, v in stats({key: arr[idx] for key, arr in r.items()}).items():
            boots[k].append(v)
    out = {}
    for k, v in point.items():
        arr = np.asarray(boots[k], np.float64)
        arr = arr[np.isfinite(arr)]
        out[k] = v
        out[f"{k}_ci"] = [float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975))] if len(arr) else [None, None]
    return out


def false_alarm_sources(scored: list[ScoredField], threshold: float) -> dict:
    """Where the false "infected" cells at `threshold` come from, per field: found cells matched to an annotated
    uninfected cell (the cell model's call) vs found boxes matching no annotation (white cells, platelets, debris,
    clumps, unannotated red cells: what hard negatives would teach it). Issue #10's next step is chosen by this."""
    false = [(f.screen.probabilities >= threshold) & (f.truth == 0) & f.screen.in_count for f in scored]
    on_cells = sum(int((fa & f.annotated).sum()) for fa, f in zip(false, scored))
    off_cells = sum(int((fa & ~f.annotated).sum()) for fa, f in zip(false, scored))
    n = max(len(scored), 1)
    return {"n_fields": len(scored), "threshold": float(threshold), "on_annotated_cells_per_field": on_cells / n,
            "on_unannotated_boxes_per_field": off_cells / n,
            "unannotated_share_of_found": float(np.mean(np.concatenate([~f.annotated[f.screen.in_count] for f in scored])))
            if scored else 0.0}


def lowest_within(scores: np.ndarray, per_field: float, n_fields: int) -> float:
    """Lowest threshold at which at most `per_field` of `scores` per field (over `n_fields`) are at or above it: just
    above the (budget+1)-th highest score, or the smallest positive number when every score fits the budget."""
    budget = int(np.floor(per_field * n_fields))
    if len(scores) <= budget:
        return float(np.nextafter(0.0, 1.0))
    return float(np.nextafter(np.sort(np.asarray(scores))[::-1][budget], 1.0))


def choose_field_threshold(scored: list[ScoredField], target: float = FP_PER_FIELD_TARGET) -> float:
    """Lowest threshold (most sensitive) whose mean false "infected" cells per field is at most `target`."""
    probs = np.concatenate([f.screen.probabilities[(f.truth == 0) & f.screen.in_count] for f in scored] or [np.zeros(0)])
    return lowest_within(probs, target, len(scored))


def stop_sessions(spec: ModelSpec) -> tuple[str, ...]:
    """The field sessions a field model stopped on, which are its validation fields (none for a refit on all)."""
    return sessions_of(spec.train)[1]


def validation_fields(model_id: str) -> tuple[list[list[ScoredField]], list[str], str]:
    """(scored fields by session, the sessions, a note) that a field model's thresholds are chosen on: its stop
    session's fields as it screens them; for a model refitted on every training session, each of its cross-session
    folds' stop session as that fold screens it (out of fold: every training field, by a model that neither trained
    nor stopped on it). One list of fields a session: a session is one slide's case."""
    spec = get_model_spec(TASK, model_id)
    parts = [(m, get_model_spec(TASK, m)) for m in spec.session_folds] or [(model_id, spec)]
    if not any(stop_sessions(p) for _, p in parts):
        raise ValueError(f"{model_id} stopped on no field session and names no session folds: nothing validates it")
    by_session, sessions, said = [], [], []
    for member, mspec in parts:
        model = load_model(TASK, member)
        for session in stop_sessions(mspec):
            by_session.append(score_annotated(model, mspec, load_fields((session,))))
            sessions.append(session)
        said.append(f"{'+'.join(stop_sessions(mspec))} by {member}")
    n = sum(len(x) for x in by_session)
    if spec.session_folds:
        return by_session, sessions, (f"out-of-fold validation fields of train ({n} fields): {'; '.join(said)} "
                                      "(each fold neither trained nor stopped on the session it scores)")
    return by_session, sessions, f"validation fields: sessions {'+'.join(sessions)} of train ({n} fields)"


def flat(by_session: list[list[ScoredField]]) -> list[ScoredField]:
    return [f for fields in by_session for f in fields]


def build_record(model_id: str, why: str = "") -> dict:
    spec = get_model_spec(TASK, model_id)
    model = load_model(TASK, model_id)
    t0 = time.perf_counter()
    by_session, sessions, chosen_on = validation_fields(model_id)
    val = flat(by_session)
    threshold = choose_field_threshold(val)
    test_fields = load_fields(TEST_SESSIONS)
    test = score_annotated(model, spec, test_fields)
    seconds = time.perf_counter() - t0
    card = read_card(TASK, model_id)
    shipped = float(card["threshold"])
    return {
        "task": TASK, "model_id": model_id, "model_sha256": card["sha256"], "finder": current_finder(),
        "scoring": current_scoring(),
        "threshold": threshold,
        "threshold_rule": f"lowest threshold with at most {FP_PER_FIELD_TARGET} false infected cells per validation field",
        "threshold_chosen_on": chosen_on, "validation_sessions": sessions,
        "validation": summarise(val, threshold),
        "test": summarise(test, threshold),
        "test_at_card_threshold": summarise(test, shipped),
        "test_sessions": list(TEST_SESSIONS),
        "matching": "found box to annotated box one-to-one at IoU >= 0.5 (greedy); difficult boxes left out",
        "seconds": round(seconds, 1),
        "test_looks": int(read_record(model_id).get("test_looks", 0)) + 1,  # every scoring of the test fields counts
        "earlier_test_looks": _earlier(read_record(model_id)),
        **({"rescored_because": why} if why else {}),
    }


def current_finder() -> dict:
    """Which cell finder screening uses now; a record made with another one no longer describes the product."""
    from core.fields.detector import detector_sha256

    sha = detector_sha256()
    return {"kind": "learned", "detector_sha256": sha} if sha else {"kind": "classical"}


def current_scoring() -> dict:
    """How screening scores a found cell now (engine and second look); records made otherwise are not current."""
    from core.fields.screen import ROTATIONS, SECOND_LOOK_FROM

    try:
        import onnxruntime  # noqa: F401

        engine = "onnxruntime"
    except ImportError:
        engine = "tensorflow"
    return {"engine": engine, "second_look_from": SECOND_LOOK_FROM, "rotations": ROTATIONS}


def is_current(model_id: str, rec: dict | None = None) -> bool:
    """The record was made with this model file, this finder and this way of scoring cells."""
    rec = read_record(model_id) if rec is None else rec
    return bool(rec) and rec.get("model_sha256") == read_card(TASK, model_id).get("sha256") \
        and rec.get("finder", {"kind": "classical"}) == current_finder() and rec.get("scoring") == current_scoring()


def _earlier(old: dict) -> list[dict]:
    """What each earlier scoring of the test fields used and found, so a changed rule is disclosed with its cause."""
    if not old:
        return []
    t = old.get("test", {})
    return old.get("earlier_test_looks", []) + [{
        "finder": old.get("finder", {"kind": "classical"}), "scoring": old.get("scoring", {"engine": "tensorflow"}),
        "threshold_rule": old.get("threshold_rule"), "threshold": old.get("threshold"),
        "infected_sensitivity": t.get("infected_sensitivity"), "false_positive_cells_per_field": t.get("false_positive_cells_per_field"),
        "note": old.get("note", "")}]


def read_record(model_id: str) -> dict:
    path = model_dir(TASK, model_id) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def field_model() -> str:
    """The model whole-field screening uses by default: of the models with a current field record, those validated on
    the most capture sessions (a refit on both, validated out of fold by its two session folds: a figure over two
    sessions and two stains says more about a new session than one over one, and figures over different fields do not compare), then
    the one with the highest infected-cell sensitivity on its validation fields at its field point (the same
    false-alarm budget for all; ties to the earlier registry entry); without any record, the task's default."""
    from core.models.selection import default_model
    from core.models.store import bundled_models

    with_record = [m for m in bundled_models(TASK) if is_current(m)]
    if not with_record:
        return default_model(TASK)
    def rank(m: str) -> tuple[int, float]:
        rec = read_record(m)
        return len(rec.get("validation_sessions", STOP_SESSIONS)), rec["validation"]["infected_sensitivity"]

    return max(with_record, key=rank)


def field_threshold(model_id: str) -> tuple[float, str]:
    """(threshold, where it comes from): the field operating point when recorded for this model file, else the card's."""
    rec = read_record(model_id)
    if is_current(model_id, rec):
        return float(rec["threshold"]), "field operating point (validation fields)"
    return float(read_card(TASK, model_id)["threshold"]), "cell operating point of the model card (no field record)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--false-alarm-sources", action="store_true",
                   help="only print where the validation fields' false alarms come from at the field point (no test look)")
    p.add_argument("--validation", action="store_true",
                   help="only print the validation fields' figures at the field point, to compare models (no test look)")
    p.add_argument("--why", default="", help="why the test fields are scored again (kept in the record)")
    a = p.parse_args(argv)
    if a.false_alarm_sources or a.validation:
        by_session, sessions, _ = validation_fields(a.model)
        val = flat(by_session)
        threshold = choose_field_threshold(val)
        out = false_alarm_sources(val, threshold) if a.false_alarm_sources else summarise(val, threshold)
        print(json.dumps(out | {"model_id": a.model, "sessions": sessions}, default=float))
        return 0
    rec = build_record(a.model, a.why)
    write_card_file(model_dir(TASK, a.model) / RECORD, rec)
    print(json.dumps({k: rec[k] for k in ("model_id", "threshold")} | {"test": rec["test"]}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _ci(r: dict, k: str, fmt: str = "{:.3f}") -> str:
    lo, hi = r[f"{k}_ci"]
    return f"{fmt.format(r[k])} ({fmt.format(lo)}–{fmt.format(hi)})"


def record_table() -> str:
    """docs/evaluation.md's whole-field table, from every bundled malaria model's `fields.json` (current model files only)."""
    from core.models.store import bundled_models

    rows = ["| model | field threshold | red cells found | infected cells found | infected-cell sensitivity | "
            "infected flagged anywhere | false infected cells / field | parasitemia error, median (points) |",
            "|---|---:|---|---|---|---|---|---|"]
    for m in bundled_models(TASK):
        rec = read_record(m)
        if not is_current(m, rec):
            continue
        t = rec["test"]
        rows.append(f"| `{m}` | {rec['threshold']:.4f} | {_ci(t, 'red_cells_found')} | {_ci(t, 'infected_cells_found')} | "
                    f"{_ci(t, 'infected_sensitivity')} | {_ci(t, 'infected_flagged_anywhere')} | "
                    f"{_ci(t, 'false_positive_cells_per_field', '{:.2f}')} | "
                    f"{_ci(t, 'parasitemia_abs_error_median', '{:.2f}')} |")
    return "\n".join(rows)
