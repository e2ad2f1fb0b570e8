"""Screen whole thin-smear fields: one JSON line per field, then one summary line for all fields together.

    python -m core.fields [--model ID] [--threshold T | --site NAME] FILE...

Each field line: {"file", "ok", "width", "height", "n_cells", "n_infected", "parasitemia", "parasitemia_ci",
"threshold", "model", "review_threshold", "n_review", "cells": [{"x", "y", "w", "h", "probability", "infected",
"counted", "review"}]} (boxes in the original image's pixels, x/y top-left; parasitemia in percent with its 95% Wilson
interval). "counted": false marks a cell cut by the picture's edge: scored and reviewable, not in the count.
"review" marks the cells of the review queue (score >= the case's review threshold: the files given together are one
case, which queues its most suspicious cells up to the model's budget of cells a field, chosen on the validation
fields by `python -m core.fields.review`, so the field lines are printed once every file is screened); without a
current review record "review_threshold" is null, no cell is queued and "review_note" says why. A file that cannot
be read or holds no countable red cells gets "ok": false and a readable "error"; the others still go through. The last line is {"summary": {...}} (all counted fields as one case, with
"review_threshold" and "n_review", the cells queued over them). With --site the site profile's cell threshold counts
the cells and every line has "site": NAME (its recalibration is monotone, so it changes no count). Exit code 0 unless
the command is misused.
"""
from __future__ import annotations

import argparse
import json
import sys

from core.fields.records import TASK, field_model, field_threshold
from core.fields.review import case_review, review_threshold, with_review
from core.fields.screen import FieldScreen, case_result, screen_field
from core.io import InputError, read_image
from core.registry import get_model_spec
from core.models.store import load_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.fields", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="malaria cell model id (default: the two-site model when bundled)")
    p.add_argument("--threshold", type=float, help="cell operating point (default: the model's field operating point)")
    p.add_argument("--site", help="a site profile of the cell model (python -m core.site): its threshold counts the cells")
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    model_id = a.model or field_model()
    try:
        spec = get_model_spec(TASK, model_id)
    except KeyError as exc:
        p.error(str(exc.args[0]))
    site = {}
    if a.site:
        from core.site.apply import load_site

        try:
            profile = load_site(a.site, TASK, model_id)
        except ValueError as exc:
            p.error(str(exc))
        site = {"site": profile.name}
    if a.threshold is not None:
        threshold, source = a.threshold, "--threshold"
    elif a.site:
        threshold, source = profile.threshold, f"site profile {profile.name!r}"
    else:
        threshold, source = field_threshold(model_id)
    model = load_model(TASK, model_id)
    screens: list[FieldScreen] = []
    lines: list[tuple[dict, FieldScreen | None]] = []
    for f in a.files:
        s = None
        try:
            s = screen_field(read_image(f), model, spec, f)
            screens.append(s)
            row = s.result(threshold, model_id)
        except InputError as exc:
            row = {"file": f, "ok": False, "error": str(exc)}
        except Exception as exc:  # one bad file never stops the others
            row = {"file": f, "ok": False, "error": f"unexpected error while screening this file: {type(exc).__name__}: {exc}"}
        lines.append((row, s))
    review, note = review_threshold(model_id, screens)  # the case's: every file screened first
    for row, s in lines:
        print(json.dumps(with_review(row, s, review, note) | site), flush=True)
    summary = case_result(screens, threshold, model_id) | {"n_files": len(a.files), "threshold_source": source} | site \
        | case_review(screens, review, note)
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
