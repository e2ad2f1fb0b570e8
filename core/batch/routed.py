"""`python -m core.batch --task auto`: every file routed by kind, as `core.predict` routes one (issue #28).

A radiograph goes to both chest tasks, and each answers only for its own population (the rows of the other carry
the withheld reason); a cell crop to the malaria cell model; a whole smear field to field screening with the field
model at its field operating point. Each task's rows are an ordinary `core.batch` output of their own (resumable,
one scorer per file): OUT with the task before the suffix (`rows.pneumonia.csv`, ...); fields go to `rows.fields.csv`
(one row per field: counts and parasitemia; written anew on each run, not resumed) and files that cannot be read to
`rows.unreadable.csv`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.batch.inputs import expand_inputs
from core.batch.output import output_format
from core.registry import TASKS

FIELD_COLUMNS = ("file", "ok", "error", "n_cells", "n_infected", "parasitemia", "parasitemia_ci", "threshold",
                 "threshold_source", "model", "task")


def part(out: str | Path, name: str) -> Path:
    """rows.csv + 'pneumonia' -> rows.pneumonia.csv (same folder, same format)."""
    p = Path(out)
    return p.with_name(f"{p.stem}.{name}{p.suffix}")


def route_files(files: list[str]) -> tuple[dict[str, list[str]], list[str], list[tuple[str, str]]]:
    """({task: files}, fields, [(file, error)]): one decode per file, kind by `core.inference.routing.kind_of`."""
    from core.inference.routing import kind_of
    from core.io.images import InputError, read_image
    from core.models.store import bundled_models

    by_task: dict[str, list[str]] = {t: [] for t in TASKS if bundled_models(t)}
    fields: list[str] = []
    bad: list[tuple[str, str]] = []
    for f in files:
        try:
            kind = kind_of(read_image(f))
        except InputError as exc:
            bad.append((f, str(exc)))
            continue
        except Exception as exc:  # one file never stops the archive
            bad.append((f, f"unexpected error while reading this file: {type(exc).__name__}: {exc}"))
            continue
        if kind == "field":
            fields.append(f)
            continue
        modality = "xray" if kind == "radiograph" else "smear"
        targets = [t for t in by_task if TASKS[t].modality == modality]
        if not targets:
            bad.append((f, f"this looks like a {kind}, and no model for it is installed"))
        for t in targets:
            by_task[t].append(f)
    return by_task, fields, bad


def _write(rows: list[dict], path: Path, columns) -> None:
    df = pd.DataFrame(rows, columns=list(columns))
    if output_format(path) == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def screen_fields(files: list[str], path: Path) -> int:
    """Field screening rows (the field model at its field operating point); returns how many fields were counted."""
    from core.fields.records import TASK, field_model, field_threshold
    from core.fields.screen import screen_field
    from core.io.images import InputError, read_image
    from core.models.store import load_model
    from core.registry import get_model_spec

    mid = field_model()
    threshold, source = field_threshold(mid)
    model, spec = load_model(TASK, mid), get_model_spec(TASK, mid)
    rows, counted = [], 0
    for f in files:
        try:
            r = screen_field(read_image(f), model, spec, f).result(threshold, mid)
            r.pop("cells", None)
            counted += bool(r.get("ok"))
        except InputError as exc:
            r = {"file": f, "ok": False, "error": str(exc), "threshold": threshold, "model": mid}
        except Exception as exc:  # one field never stops the archive
            r = {"file": f, "ok": False, "error": f"unexpected error while screening this file: {type(exc).__name__}: {exc}",
                 "threshold": threshold, "model": mid}
        r.update({"task": TASK, "threshold_source": source})
        r["parasitemia_ci"] = str(r.get("parasitemia_ci")) if r.get("parasitemia_ci") is not None else None
        rows.append({c: r.get(c) for c in FIELD_COLUMNS})
    _write(rows, path, FIELD_COLUMNS)
    return counted


def run_auto(inputs: list[str], out: str, engine: str = "local", progress: bool | None = None, **engine_options) -> list:
    """Route and score every file the inputs name; returns one `Summary` per task output (plus field and unreadable
    counts as plain dicts)."""
    from core.batch.job import run_batch

    output_format(out)  # wrong suffix: refuse before any work
    files = expand_inputs(inputs)
    by_task, fields, bad = route_files(files)
    summaries: list = []
    for task, fs in by_task.items():
        if fs:
            summaries.append(run_batch(task, fs, str(part(out, task)), engine=engine, progress=progress, **engine_options))
    if fields:
        n = screen_fields(fields, part(out, "fields"))
        summaries.append({"out": str(part(out, "fields")), "fields": len(fields), "counted": n})
    if bad:
        _write([{"file": f, "ok": False, "error": e} for f, e in bad], part(out, "unreadable"), ("file", "ok", "error"))
        summaries.append({"out": str(part(out, "unreadable")), "files": len(bad)})
    return summaries
