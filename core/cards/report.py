"""Markdown table of every bundled model's card (the README's results table).

Intervals are the card's patient-level ones (cluster bootstrap over patients) where it has them; a † marks an
image-level interval (DeLong for AUC, Wilson for rates) on a card without patient ids.
"""
from __future__ import annotations

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
                unit = "fields" if e["unit"] == "field" else "patients"
                rows.append(f"| {task} | {name} | {what} | {e['n_images']:,} ({e['n_patients']} {unit}) | "
                            f"{_ci(e, 'auc')} | {_ci(e, 'sensitivity')} | {_ci(e, 'specificity')} |")
    return "\n".join(rows)


def readme_tables() -> list[str]:
    """The README's three results tables, as `python -m core.report` prints them."""
    from core.fields.records import record_table  # fields sit above evaluation; only the README needs both

    return [results_table(), external_table(), record_table()]


def replace_table(text: str, table: str) -> str:
    """`text` with the table that has `table`'s header row replaced by `table` (ValueError when it has none)."""
    lines, header = text.split("\n"), table.split("\n")[0]
    if header not in lines:
        raise ValueError(f"README has no table with the header {header[:60]!r}...")
    start = end = lines.index(header)
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + table.split("\n") + lines[end:])
