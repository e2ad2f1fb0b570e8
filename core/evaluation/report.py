"""Markdown table of every bundled model's card (the README's results table)."""
from __future__ import annotations

from core.models.registry import TASKS
from core.models.selection import default_model
from core.models.store import bundled_models, read_card


def _ci(c: dict, k: str) -> str:
    lo, hi = c[f"{k}_ci"]
    return f"{c[k]:.3f} ({lo:.3f}–{hi:.3f})"


def results_table() -> str:
    rows = [
        "| task | model | params | val AUC | test AUC (95% CI, DeLong) | threshold | test sensitivity | test specificity | test accuracy |",
        "|---|---|---:|---:|---|---:|---|---|---|",
    ]
    for task in TASKS:
        default = default_model(task)
        for mid in bundled_models(task):
            c = read_card(task, mid)
            t = c.get("test")
            if not t:
                continue
            role = " (baseline)" if c["baseline"] else " (**default**: best on validation)" if mid == default else ""
            rows.append(
                f"| {task} | `{mid}`{role} | {c['parameters']:,} | {c['validation']['auc']:.4f} | "
                f"{_ci(t, 'auc')} | {c['threshold']:.3f} | {_ci(t, 'sensitivity')} | {_ci(t, 'specificity')} | {_ci(t, 'accuracy')} |"
            )
    return "\n".join(rows)

