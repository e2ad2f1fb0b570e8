"""Markdown tables generated from the bundled models' cards: what ships (README.md) and every model's test and
external results (docs/evaluation.md); `python -m core.report` writes them.

Intervals are the card's patient-level ones (cluster bootstrap over patients) where it has them; a † marks an
image-level interval (DeLong for AUC, Wilson for rates) on a card without patient ids.
"""
from __future__ import annotations

from pathlib import Path

from core.registry import TASKS
from core.models.selection import RULE_CV, RULE_CV_FOLDS, cv_summary, default_choice
from core.models.store import bundled_models, read_card


def _ci(c: dict, k: str) -> str:
    lo, hi = c[f"{k}_ci"]
    return f"{c[k]:.3f} ({lo:.3f}–{hi:.3f})"


def _ece(c: dict) -> str:
    check = (c.get("calibration_check") or {}).get("test")
    return f"{check['ece_raw']:.3f} → {check['ece_calibrated']:.3f}" if check else "—"


def results_table() -> str:
    rows = [
        "| task | model | params | CV AUC, mean ± sd | val AUC | test AUC (95% CI) | threshold | test sensitivity "
        "| test specificity | test accuracy | test ECE, raw → calibrated |",
        "|---|---|---:|---|---:|---|---:|---|---|---|---|",
    ]
    for task in TASKS:
        choice = default_choice(task)
        default = choice.model_id
        why = {RULE_CV: "best CV mean", RULE_CV_FOLDS: "best CV mean, its fold models averaged"}.get(choice.rule, "best on validation")
        for mid in bundled_models(task):
            c = read_card(task, mid)
            t = c.get("test")
            if not t:
                continue
            role = " (baseline)" if c["baseline"] else f" (**default**: {why})" if mid == default else ""
            ci = c.get("test_patient_level") or t  # patient-level intervals where the card has them
            mark = "" if "test_patient_level" in c else " †"
            rows.append(
                f"| {task} | `{mid}`{role} | {c['parameters']:,} | {cv_summary(c)} | {c['validation']['auc']:.4f} | "
                f"{_ci(ci, 'auc')}{mark} | {c['threshold']:.3f} | {_ci(ci, 'sensitivity')}{mark} | {_ci(ci, 'specificity')}{mark} | "
                f"{_ci(ci, 'accuracy')}{mark} | {_ece(c)} |"
            )
    return "\n".join(rows)



def external_table() -> str:
    """Every bundled model's external results (the card's `external` block) at its shipped operating point."""
    rows = ["| task | model | external set | images (clusters) | AUC (95% CI) | sensitivity | specificity |",
            "|---|---|---|---|---|---|---|"]
    for task in TASKS:
        default = default_choice(task).model_id
        cards = {mid: read_card(task, mid).get("external") for mid in bundled_models(task)}
        none = {e["none"] for e in cards.values() if e and "none" in e}
        if none and all(e and "none" in e for e in cards.values()):  # one line for a task without an external set
            rows.append(f"| {task} | every model | {none.pop()} | — | — | — | — |")
            continue
        for mid, ext in cards.items():
            name = f"`{mid}`" + (" (**default**)" if mid == default else "")
            for what, e in (ext or {}).items():
                if not isinstance(e, dict):
                    rows.append(f"| {task} | {name} | {e} | — | — | — | — |")
                    continue
                rows.append(f"| {task} | {name} | {what} | {_clusters(e)} | "
                            f"{_ci(e, 'auc')} | {_ci(e, 'sensitivity')} | {_ci(e, 'specificity')} |")
    return "\n".join(rows)


def _clusters(e: dict) -> str:
    """'6,123 (52 fields)': an external block's images and the clusters its intervals resample."""
    return f"{e['n_images']:,} ({e['n_patients']} {'fields' if e['unit'] == 'field' else 'patients'})"


def _rates(c: dict) -> str:
    return f"AUC {_ci(c, 'auc')}, sensitivity {_ci(c, 'sensitivity')}, specificity {_ci(c, 'specificity')}"


FIELD_INPUT = "Malaria (whole thin-smear field)"
FIELD_NO_EXTERNAL = "no external set exists here: every annotated field on this machine comes from the one IML lab"


def _shipped_row(task: str) -> str:
    """One task's default model: its held-out test figures (patient-level intervals) and its external sets."""
    mid = default_choice(task).model_id
    c = read_card(task, mid)
    t, mark = (c["test_patient_level"], "") if "test_patient_level" in c else (c["test"], " †")
    unit = "cells" if TASKS[task].modality == "smear" else "images"
    clusters = f" ({t['n_patients']} patients)" if "n_patients" in t else ""
    test = f"{t.get('n_images', t.get('n')):,} {unit}{clusters}: {_rates(t)}{mark}"
    external = "; ".join(f"{what}, {_clusters(e)}: {_rates(e)}" if isinstance(e, dict) else
                         e if what == "none" else f"{what}: {e}" for what, e in (c.get("external") or {}).items())
    return f"| {TASKS[task].title} | `{mid}` | {c['threshold']:.3f} | {test} | {external or '—'} |"


def _field_row() -> str:
    """Whole-field screening: the field model (core.fields.records.field_model) and its test-field figures."""
    from core.fields.records import _ci as field_ci, field_model, is_current, read_record

    mid = field_model()
    rec = read_record(mid)
    if not is_current(mid, rec):
        return f"| {FIELD_INPUT} | `{mid}` | — | no current field record: `python -m core.fields.records --model {mid}` | — |"
    t = rec["test"]
    test = (f"{t['n_fields']} test fields (session {', '.join(rec['test_sessions'])}; {t['n_infected_cells']} infected of "
            f"{t['n_annotated_cells']:,} cells): infected-cell sensitivity {field_ci(t, 'infected_sensitivity')}, "
            f"false infected cells per field {field_ci(t, 'false_positive_cells_per_field', '{:.2f}')}")
    return f"| {FIELD_INPUT} | `{mid}` | {rec['threshold']:.4f} | {test} | {FIELD_NO_EXTERNAL} |"


def shipped_table() -> str:
    """The README's "What ships": each task's default model and the field screening model, with the headline test
    numbers (95% intervals, patient-level where the card has them) and external results at the shipped threshold."""
    rows = ["| input | shipped model | threshold | held-out test (95% CI) | external (95% CI, same threshold) |",
            "|---|---|---:|---|---|"]
    rows += [_shipped_row(task) for task in TASKS]
    rows.append(_field_row())
    return "\n".join(rows)


def age_check_table() -> str:
    """The age-group check that routes a chest film without a DICOM age (its card: models/routing/age_group)."""
    from core.inference.population import age_check_card

    rows = ["| age-group check | thresholds (child at or above / adult at or below) | validation AUC | test AUC | "
            "children (pneumonia test): child / unsure / adult | adults (effusion test): adult / unsure / child | "
            "test films upscaled 4x or re-encoded: calls changed |",
            "|---|---|---:|---:|---|---|---|"]
    try:
        c = age_check_card()
    except Exception:  # not trained yet: the table says so
        return "\n".join(rows + ["| not installed | — | — | — | — | — | — |"])
    t, th, inv = c.get("test") or {}, c["thresholds"], (c.get("test") or {}).get("invariance") or {}
    changed = ", ".join(f"{k}: {v['calls_changed']} of {inv['n']}" for k, v in inv.items() if isinstance(v, dict))
    pct = lambda v: f"{v:.1%}"  # noqa: E731
    rows.append(
        f"| `age_group` ({c['parameters']:,} parameters) | {th['child_at_or_above']:.4f} / {th['adult_at_or_below']:.4f} | "
        f"{c['validation']['auc']:.4f} | {t['auc']:.4f} | "
        f"{pct(t['children_called_child'])} / {pct(t['children_unsure'])} / {pct(t['children_called_adult'])} "
        f"({t['n_children']}) | {pct(t['adults_called_adult'])} / {pct(t['adults_unsure'])} / "
        f"{pct(t['adults_called_child'])} ({t['n_adults']}) | {changed or '—'} |" if t else
        f"| `age_group` | {th['child_at_or_above']:.4f} / {th['adult_at_or_below']:.4f} | {c['validation']['auc']:.4f} "
        "| not scored | — | — | — |")
    return "\n".join(rows)


def evaluation_tables() -> list[str]:
    """docs/evaluation.md's results tables, as `python -m core.report` prints them."""
    from core.fields.records import record_table

    return [results_table(), external_table(), record_table(), age_check_table()]


def readme_tables() -> list[str]:
    """The README's one generated table (`python -m core.report --readme`)."""
    return [shipped_table()]


def replace_table(text: str, table: str) -> str:
    """`text` with the table that has `table`'s header row replaced by `table` (ValueError when it has none)."""
    lines, header = text.split("\n"), table.split("\n")[0]
    if header not in lines:
        raise ValueError(f"the file has no table with the header {header[:60]!r}...")
    start = end = lines.index(header)
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + table.split("\n") + lines[end:])


def write_tables(path: Path, tables: list[str]) -> None:
    """Replace each of `tables` in the markdown file at `path` in place (found by its header row)."""
    text = path.read_text()
    for t in tables:
        text = replace_table(text, t)
    path.write_text(text)
