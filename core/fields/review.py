"""The cell review queue (malaria fields): the cells a technician looks at and confirms, most suspicious first.

Whole-field screening cannot call every infected cell at an acceptable false-alarm rate, but it ranks a field's cells
well. A *case* (the fields a technician sends together: one slide) queues its most suspicious cells, ranked across its
fields, as many as a budget of cells per counted field, plus every cell at or above the field operating point (what
the automatic count calls infected is always shown); cells cut by the picture's edge are queued too (seen, not
counted). The confirmed ones give the case's parasitemia over the counted cells. The case's *review threshold* is the
score of its last queued cell, so the queue is still "every cell at or above a threshold", set per case.

Why a budget and not one threshold for all: a stain or session the model has not seen moves every score of a slide
together. On the out-of-fold validation fields (`core.fields.records.validation_fields`: each IML training session
scored by the cross-session fold that neither trained nor stopped on it), one threshold queued 20 cells a field in
one session and 2.8 in the other, reaching 0.95 and 0.88 of their infected cells; at the threshold that keeps the
pooled queue at 5 cells a field, 0.95 and 0.71. Ranked within each session, both queue 5 cells a field and reach 0.95
and 0.92. The budget is the larger of: the fewest cells a field at which `QUEUE_SHARE` of the found infected cells
(matched one-to-one at IoU >= 0.5) reach their case's queue, each validation session read as one case (the issue's
share rule, in cells instead of a score); the issue's aim of `CELLS_PER_FIELD_AIM` cells a field. A cell the finder
never boxed can never reach the queue, so every figure is given over all annotated infected cells
(`infected_reaching_queue`) and over the found ones (`found_infected_reaching_queue`). The test fields (session S1,
one case) are scored on request, as a disclosed test look.

    python -m core.fields.review --model secondlook_fields_all          # writes models/malaria/<id>/review.json
    python -m core.fields.review --model secondlook_fields_all --test   # + the test fields (a disclosed test look)

    queue_rule(model_id) -> (QueueRule | None, note)          the recorded rule, None without a current record (made
                                                               with this model file, finder, scoring and queue)
    review_threshold(model_id, screens) -> (threshold | None, note)   a case's threshold under that rule
    case_threshold(probabilities by field, rule) -> threshold | None   the same, from scores
    review_queue(probabilities, threshold) -> indices         queued cells, most suspicious first
    with_review(row, screen, threshold, note), case_review(screens, threshold, note)   the CLI's review fields
    case_queue(screens, threshold) -> [(field, cell, p)]     a case's queue across its fields, most suspicious first
    confirmed_case(confirmations, queued, counted) -> dict    the technician's result: confirmed (+ marked) infected
                                                               cells over the case's counted red cells
    case_lines(confirmed, automatic) -> list[str]             how the app, the PDF and the DICOM SR say it
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from core.fields.annotations import load_fields
from core.fields.records import (TASK, TEST_SESSIONS, ScoredField, current_finder, current_scoring, field_threshold,
                                 flat, is_current, lowest_within, per_field, score_annotated, validation_fields,
                                 with_intervals)
from core.fields.screen import FieldScreen, parasitemia
from core.models.store import load_model, model_dir, read_card, write_card_file
from core.registry import get_model_spec, get_task

QUEUE_SHARE = 0.95  # share of the validation fields' found infected cells that reach the queue
CELLS_PER_FIELD_AIM = 5.0  # the aim for cells a technician reviews per field (floor 8)
BUDGETS = tuple(np.arange(0.5, 8.01, 0.5))  # cells a field the share rule may ask for, up to the floor
RECORD = "review.json"
QUEUE_VERSION = "case budget: the case's most suspicious cells, a budget a field, and every cell from the field point"
# what the queue holds (edge cells queued, not counted); a record of another queue is not current

POSITIVE = get_task(TASK).positive  # "Parasitized": a technician's "infected"
NOT_REVIEWED, PARTIAL, COMPLETE, NOTHING_QUEUED = "not reviewed", "partly reviewed", "reviewed", "nothing queued"
INTERVAL_NOTE = ("The 95% interval treats every counted cell as independent; the cells of one field are not, so the "
                 "true uncertainty is somewhat wider. A laboratory reports the confirmed result; the automatic count is "
                 "what the model does alone.")


@dataclass(frozen=True)
class QueueRule:
    """How a case's queue is drawn: its `cells_per_field` most suspicious cells per counted field (ranked across the
    case), and every cell at or above `always_from` (the field operating point: a cell the automatic count calls
    infected is always shown)."""

    cells_per_field: float
    always_from: float


def review_queue(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Indices of the cells at or above `threshold`, most suspicious first (none without a threshold)."""
    p = np.asarray(probabilities, np.float64)
    if threshold is None:
        return np.zeros(0, np.int64)
    idx = np.flatnonzero(p >= threshold)
    return idx[np.argsort(-p[idx], kind="stable")]


def case_threshold(probabilities: Iterable[np.ndarray], rule: QueueRule | None) -> float | None:
    """The review threshold of one case (the probabilities of its counted fields' cells, one array a field): the
    score of its (budget x fields)-th most suspicious cell, or the rule's `always_from` when that is lower. Why a
    budget and not one threshold for every case: a stain or session the model has not seen moves every score of a
    slide together. On the out-of-fold validation fields one threshold queued 20 cells a field in one session and 2.8
    in the other, where it reached 0.88 of the infected cells; ranked within the case, both sessions' queues hold 5
    cells a field and reach 0.95 and 0.92 (docs/evaluation.md, "Cell review queue")."""
    if rule is None:
        return None
    fields = [np.asarray(p, np.float64) for p in probabilities]
    scores = np.sort(np.concatenate(fields or [np.zeros(0)]))[::-1]
    k = math.ceil(rule.cells_per_field * len(fields) - 1e-9)
    if k >= len(scores):  # the budget holds every cell: queue them all
        return float(min(np.nextafter(0.0, 1.0), rule.always_from))
    return float(min(scores[k - 1], rule.always_from))


def cases_threshold(cases: list[list[ScoredField]], rule: QueueRule) -> list[float]:
    return [case_threshold([f.screen.probabilities for f in case], rule) for case in cases]


def choose_budget(cases: list[list[ScoredField]], always_from: float, share: float = QUEUE_SHARE) -> float:
    """Fewest cells a field (of `BUDGETS`) at which at least `share` of these cases' found infected cells reach
    their case's queue; the largest budget when none does."""
    found = len(found_infected_scores(flat(cases)))
    if not found:
        raise ValueError("no found infected cells to choose a review budget on")
    for b in BUDGETS:
        rule = QueueRule(float(b), always_from)
        reached = sum(int(per_field(case, t, review=True)["tp_boxes"].sum()) for case, t in zip(cases, cases_threshold(cases, rule)))
        if reached >= share * found - 1e-9:
            return float(b)
    return float(BUDGETS[-1])


def found_infected_scores(scored: list[ScoredField]) -> np.ndarray:
    """Score of each found cell matched to an annotated infected cell, over all fields."""
    return np.concatenate([f.screen.probabilities[f.infected_found[f.infected_found >= 0]] for f in scored] or [np.zeros(0)])


def _queue_stats(r: dict[str, np.ndarray]) -> dict[str, float]:
    def ratio(a, b):
        return float(a.sum() / b.sum()) if b.sum() else float("nan")

    confirmed, annotated = 100 * ratio(r["tp_counted"], r["cells"]), 100 * ratio(r["inf_boxes"], r["boxes"])
    return {
        "infected_reaching_queue": ratio(r["tp_boxes"], r["inf_boxes"]),
        "found_infected_reaching_queue": ratio(r["tp_boxes"], r["found_inf_boxes"]),
        "infected_in_queue_anywhere": ratio(r["tp_centre"], r["inf_boxes"]),
        "cells_reviewed_per_field": float(r["called"].mean()),
        "cells_reviewed_per_field_median": float(np.median(r["called"])),
        "cells_counted_per_field": float(r["cells"].mean()),
        "confirmed_parasitemia": confirmed,
        "annotated_parasitemia": annotated,
        "confirmed_parasitemia_relative_error": abs(confirmed - annotated) / annotated if annotated else float("nan"),
    }


def _automatic_stats(r: dict[str, np.ndarray]) -> dict[str, float]:
    auto, annotated = 100 * r["called"].sum() / r["cells"].sum(), 100 * r["inf_boxes"].sum() / r["boxes"].sum()
    return {"automatic_parasitemia": float(auto),
            "automatic_parasitemia_relative_error": float(abs(auto - annotated) / annotated) if annotated else float("nan")}


def measure(cases: list[list[ScoredField]], rule: QueueRule, field_point: float) -> dict:
    """The queue drawn by `rule` in each case (a list of fields read as one case: the test fields are one, each
    validation session one), pooled, with 95% intervals resampling fields (the annotation plays the technician: a
    queued cell is confirmed when it matches an annotated infected cell); and, for contrast, the unconfirmed
    automatic count at the field operating point `field_point`."""
    thresholds = cases_threshold(cases, rule)
    parts = [per_field(case, t, review=True) for case, t in zip(cases, thresholds)]
    r = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    scored = flat(cases)
    out = {"n_fields": len(scored), "n_cases": len(cases), "n_annotated_cells": int(r["boxes"].sum()),
           "n_infected_cells": int(r["inf_boxes"].sum()), "n_found_infected_cells": int(r["found_inf_boxes"].sum()),
           "n_counted_cells": int(r["cells"].sum()), "n_reviewed_cells": int(r["called"].sum()),
           "n_confirmed_cells": int(r["tp_boxes"].sum()), "n_confirmed_counted_cells": int(r["tp_counted"].sum()),
           "cells_per_field": rule.cells_per_field, "case_thresholds": [float(t) for t in thresholds]}
    out |= with_intervals(r, _queue_stats)
    return out | {"field_threshold": float(field_point)} | with_intervals(per_field(scored, field_point), _automatic_stats)


def case_queue(screens: list[FieldScreen], threshold: float | None) -> list[tuple[int, int, float]]:
    """(field index, cell index, probability) of every queued cell of a case's counted fields, most suspicious first
    across the fields (ties: field order, then the field's own queue order)."""
    items = [(k, int(i), float(s.probabilities[i])) for k, s in enumerate(screens) if s.counted
             for i in review_queue(s.probabilities, threshold)]
    return sorted(items, key=lambda t: -t[2])


def reviewer(row: Mapping) -> str:
    """How a confirmation names its reader: as `core.users.User.label` does (e-mail, else the account)."""
    sub = str(row.get("user_sub") or "")
    return str(row.get("user_email") or sub.removeprefix("local:"))


def confirmed_case(confirmations: Iterable[Mapping], queued: Iterable[tuple[str, int]], counted: Mapping[str, int], *,
                   model_sha256: str | None = None, threshold: float | None = None, positive: str = POSITIVE,
                   edge: Iterable[tuple[str, int]] = ()) -> dict:
    """The case result a laboratory reports: infected cells the technician confirmed among the queued ones, plus the
    unqueued cells they marked infected, over every counted red cell of the case, with a 95% Wilson interval.

    `confirmations`: `core.confirmations` cell rows of this case (the latest word on a cell counts: a reader may
    change their mind); `queued`: (field sha256, cell index) of the queue shown now; `counted`: field sha256 -> red
    cells counted. Rows for another field, another model checksum or another review threshold than `model_sha256` /
    `threshold` (when given) describe another queue and are left out (`n_left_out`); a cell index only means this
    cell under the model and finder that numbered it. `calls`: the latest call kept on each (sha256, cell).
    `edge`: (field sha256, cell index) of the cells cut by the picture's edge: an infected one confirmed there is
    reported (`n_edge_infected`: the case has parasites) but, like every edge cell, left out of the count.
    """
    edge_cells = {(str(sha), int(c)) for sha, c in edge}
    queue = {(str(sha), int(c)) for sha, c in queued}
    last: dict[tuple[str, int], Mapping] = {}
    left_out = 0
    for row in sorted(confirmations, key=lambda r: int(r.get("id") or 0)):
        key = (str(row.get("image_sha256")), int(row.get("cell") if row.get("cell") is not None else -1))
        stale = (model_sha256 is not None and row.get("model_sha256") != model_sha256) or (
            threshold is not None and not math.isclose(float(row.get("threshold", math.nan)), float(threshold), abs_tol=1e-9))
        if key[0] not in counted or key[1] < 0 or stale:
            left_out += 1
            continue
        last[key] = row
    seen = {k for k, r in last.items() if r.get("reader_call") == positive}
    infected, edge_infected = seen - edge_cells, seen & edge_cells
    reviewed = queue & set(last)
    n_cells = int(sum(int(n) for n in counted.values()))
    k = len(infected)
    p, lo, hi = parasitemia(k, n_cells)
    n_queued, n_reviewed = len(queue), len(reviewed)
    status = (NOTHING_QUEUED if not n_queued else COMPLETE if n_reviewed == n_queued
              else PARTIAL if n_reviewed or infected else NOT_REVIEWED)
    readers = list(dict.fromkeys(reviewer(last[key]) for key in sorted(last, key=lambda key: int(last[key].get("id") or 0))))
    return {
        "n_cells": n_cells, "n_queued": n_queued, "n_reviewed": n_reviewed,
        "n_confirmed": len(infected & queue), "n_rejected": n_reviewed - len(seen & queue),
        "n_marked": len(infected - queue), "n_infected": k, "n_edge_infected": len(edge_infected), "parasitemia": p,
        "parasitemia_ci": [lo, hi] if n_cells else None, "status": status, "complete": status in (COMPLETE, NOTHING_QUEUED),
        "confirmed_by": readers, "per_field": {sha: sum(1 for s, _ in infected if s == sha) for sha in counted},
        "n_left_out": left_out, "calls": {key: str(r.get("reader_call")) for key, r in last.items()},
    }


def _pct(p: float | None, ci: list | None) -> str:
    if p is None:
        return "no red cells counted"
    return f"parasitemia {p:.2f}%" + (f" (95% interval {ci[0]:.2f}–{ci[1]:.2f}%)" if ci and ci[0] is not None else "")


def case_lines(confirmed: dict, automatic: dict | None = None) -> list[str]:
    """The case result in plain words, one wording for the app, the PDF and the DICOM SR: the confirmed count first
    (or that the case is not yet reviewed), then how far the review got, then the automatic count labelled as such.

    `automatic`: `core.fields.screen.case_result` at the field operating point."""
    c = confirmed
    who = ", ".join(c["confirmed_by"]) or "nobody yet"
    cells = f"{c['n_cells']:,} red cells"
    extra = f" ({c['n_confirmed']} from the review queue, {c['n_marked']} marked by the technician)" if c["n_marked"] else ""
    edge = (f" Also {c['n_edge_infected']} infected cell{'s' if c['n_edge_infected'] != 1 else ''} cut by the "
            "field's edge: seen, not counted." if c.get("n_edge_infected") else "")
    if c["status"] == NOT_REVIEWED:
        lines = [f"Not yet reviewed: 0 of {c['n_queued']} queued cells reviewed, so there is no confirmed result."]
    elif c["status"] == NOTHING_QUEUED and not c["confirmed_by"]:
        lines = ["No cell of this case reached the review queue and none was marked infected: there is no confirmed result."]
    else:
        lines = [f"Confirmed: {c['n_infected']} infected of {cells}{extra}, {_pct(c['parasitemia'], c['parasitemia_ci'])}; "
                 f"proposed by SecondLook, confirmed by {who}.{edge}"]
        if c["status"] == PARTIAL:
            lines.append(f"Not fully reviewed: {c['n_reviewed']} of {c['n_queued']} queued cells reviewed; the confirmed "
                         "count may still rise.")
        elif c["status"] == NOTHING_QUEUED:
            lines.append("No cell of this case reached the review queue.")
        else:
            at_edge = f", {c['n_edge_infected']} infected at the edge" if c.get("n_edge_infected") else ""
            lines.append(f"All {c['n_queued']} queued cells reviewed ({c['n_confirmed']} confirmed infected{at_edge}, "
                         f"{c['n_rejected']} not infected).")
    if automatic is not None and automatic.get("n_infected") is not None:
        lines.append(f"Automatic (unconfirmed): {automatic['n_infected']} infected of {automatic['n_cells']:,} red cells, "
                     f"{_pct(automatic['parasitemia'], automatic['parasitemia_ci'])}, at the field operating point "
                     f"{float(automatic['threshold']):.4f}.")
    return lines


def read_review(model_id: str) -> dict:
    path = model_dir(TASK, model_id) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def is_current_review(model_id: str, rec: dict) -> bool:
    """The review record was made with this model file, cell finder, scoring and queue."""
    return is_current(model_id, rec) and rec.get("queue") == QUEUE_VERSION


def queue_rule(model_id: str, rec: dict | None = None) -> tuple[QueueRule | None, str]:
    """(rule, note): the recorded queue rule when the record was made with this model file, finder, scoring and
    queue; else (None, why not)."""
    rec = read_review(model_id) if rec is None else rec
    if not rec:
        return None, f"no review record for model {model_id!r} (python -m core.fields.review --model {model_id}): no cell is queued"
    if not is_current_review(model_id, rec):
        return None, (f"the review record of model {model_id!r} was made with another model file, cell finder, scoring "
                      f"or queue (python -m core.fields.review --model {model_id}): no cell is queued")
    return QueueRule(float(rec["cells_per_field"]), float(rec["always_from"])), "review budget chosen on the validation fields"


def review_threshold(model_id: str, screens: list[FieldScreen], rec: dict | None = None) -> tuple[float | None, str]:
    """(threshold, note) of the case made of these screens (its counted fields) under the model's current rule."""
    rule, note = queue_rule(model_id, rec)
    return case_threshold([s.probabilities for s in screens if s.counted], rule), note


def with_review(row: dict, screen: FieldScreen | None, threshold: float | None, note: str = "") -> dict:
    """A `python -m core.fields` field line with the review queue: "review" on each of its cells, "review_threshold",
    "n_review" and, without a threshold, "review_note" (a line for a file that could not be screened queues none)."""
    queued = np.zeros(len(screen.boxes) if screen is not None else 0, bool)
    if screen is not None:
        queued[review_queue(screen.probabilities, threshold)] = True
    for cell, q in zip(row.get("cells", []), queued.tolist()):
        cell["review"] = q
    return row | _line(int(queued.sum()), threshold, note)


def case_review(screens: list[FieldScreen], threshold: float | None, note: str = "") -> dict:
    """The summary line's review fields: the queue over all counted fields of a case."""
    return _line(sum(len(review_queue(s.probabilities, threshold)) for s in screens if s.counted), threshold, note)


def _line(n: int, threshold: float | None, note: str) -> dict:
    return {"review_threshold": threshold, "n_review": n} | ({} if threshold is not None else {"review_note": note})


def compare_rules(cases: list[list[ScoredField]], names: list[str], rule: QueueRule) -> dict:
    """Per validation case (session): the share of annotated infected cells reaching the queue and the cells queued a
    field, under one threshold for all (the share rule on the pooled fields; the one keeping the pooled queue at the
    aim) and under the case budget: why the queue is drawn per case (validation only)."""
    val = flat(cases)
    found = np.sort(found_infected_scores(val))[::-1]
    fixed = {"one threshold: the share rule on the pooled fields": float(found[math.ceil(QUEUE_SHARE * len(found) - 1e-9) - 1]),
             f"one threshold: at most {CELLS_PER_FIELD_AIM:g} cells a field, pooled": lowest_within(
                 np.concatenate([f.screen.probabilities for f in val]), CELLS_PER_FIELD_AIM, len(val))}

    def figures(thresholds: list[float]) -> dict:
        out = {}
        for name, case, t in zip(names, cases, thresholds):
            q = _queue_stats(per_field(case, t, review=True))
            out[name] = {"threshold": float(t)} | {k: q[k] for k in ("infected_reaching_queue", "cells_reviewed_per_field")}
        return out

    return {name: figures([t] * len(cases)) for name, t in fixed.items()} | {
        f"case budget: {rule.cells_per_field:g} cells a field": figures(cases_threshold(cases, rule))}


def looks_by_others(model_id: str) -> dict[str, int]:
    """How often the other bundled models' queues were measured on the test fields: the same session, looked at
    before this model's record was made (a disclosure, not a rule)."""
    from core.models.store import bundled_models

    looks = {m: int(read_review(m).get("test_looks", 0)) for m in bundled_models(TASK) if m != model_id}
    return {m: n for m, n in looks.items() if n}


def build_review(model_id: str, test: bool = False, why: str = "") -> dict:
    """The review record: the queue rule chosen on the validation fields, their figures, and (with `test`) one look
    at the test fields; an earlier test look is kept when the rule and model are unchanged, else disclosed."""
    spec, model = get_model_spec(TASK, model_id), load_model(TASK, model_id)
    card, old = read_card(TASK, model_id), read_review(model_id)
    field_point, _ = field_threshold(model_id)
    t0 = time.perf_counter()
    cases, sessions, chosen_on = validation_fields(model_id)
    val = flat(cases)
    scores = found_infected_scores(val)
    by_share = choose_budget(cases, field_point)
    rule = QueueRule(max(by_share, CELLS_PER_FIELD_AIM), field_point)
    rec = {
        "task": TASK, "model_id": model_id, "model_sha256": card["sha256"], "finder": current_finder(),
        "scoring": current_scoring(), "cells_per_field": rule.cells_per_field, "always_from": rule.always_from,
        "share": QUEUE_SHARE, "cells_per_field_aim": CELLS_PER_FIELD_AIM, "queue": QUEUE_VERSION,
        "by_share": by_share,
        "rule": "each case (the fields a technician sends together) queues its most suspicious cells, ranked across "
                "its fields, as many as the budget times its counted fields, and every cell at or above the field "
                "operating point; the budget is the larger of: the fewest cells a field at which at least "
                f"{QUEUE_SHARE} of the validation fields' found infected cells (matched at IoU >= 0.5, cells cut by the "
                f"edge included) reach their case's queue, each validation session read as one case; the aim of "
                f"{CELLS_PER_FIELD_AIM:g} cells a field",
        "chosen_on": chosen_on, "validation_cases": sessions,
        "matching": "found box to annotated box one-to-one at IoU >= 0.5 (greedy, core.fields.records); difficult boxes left out",
        "technician": "the annotation plays the technician: a queued cell is confirmed when it matches an annotated infected cell",
        "validation": measure(cases, rule, field_point),
        "validation_rules_compared": compare_rules(cases, sessions, rule),
        "validation_found_infected_scores": [float(s) for s in np.sort(scores)[::-1]],
        "test_sessions": list(TEST_SESSIONS),
        "test_looks": int(old.get("test_looks", 0)),
        "earlier_test_looks": list(old.get("earlier_test_looks", [])),
        "test_looks_by_other_models": looks_by_others(model_id),
    }
    same = is_current_review(model_id, old) and old.get("cells_per_field") == rule.cells_per_field \
        and old.get("always_from") == rule.always_from
    if "test" in old and (test or not same):  # a look that no longer describes the queue is disclosed, not dropped
        rec["earlier_test_looks"].append({k: old.get(k) for k in ("model_id", "model_sha256", "finder", "scoring", "queue",
                                                                   "review_threshold", "cells_per_field", "rule")}
                                         | {k: old["test"].get(k) for k in ("infected_reaching_queue", "cells_reviewed_per_field",
                                                                             "confirmed_parasitemia_relative_error")})
    elif "test" in old:
        rec["test"] = old["test"]
    if test:
        rec["test"] = measure([score_annotated(model, spec, load_fields(TEST_SESSIONS))], rule, field_point)
        rec["test_looks"] += 1
        if why:
            rec["rescored_because"] = why
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.fields.review", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--test", action="store_true", help="also score the test fields once (recorded as a test look)")
    p.add_argument("--why", default="", help="why the test fields are scored again (kept in the record)")
    a = p.parse_args(argv)
    try:
        get_model_spec(TASK, a.model)
    except KeyError as exc:
        p.error(str(exc.args[0]))
    rec = build_review(a.model, a.test, a.why)
    write_card_file(model_dir(TASK, a.model) / RECORD, rec)
    print(json.dumps({k: rec[k] for k in ("model_id", "cells_per_field", "always_from", "validation")} | {"test": rec.get("test")},
                     default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
