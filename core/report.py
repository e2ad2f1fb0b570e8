"""Markdown table of every bundled model's card: `python -m core.report` (used for the README)."""
from __future__ import annotations

from .store import bundled_models, read_card
from .tasks import TASKS


def _ci(c: dict, k: str) -> str:
    lo, hi = c[f"{k}_ci"]
    return f"{c[k]:.3f} ({lo:.3f}–{hi:.3f})"


def results_table() -> str:
    rows = [
        "| task | model | params | val AUC | test AUC (95% CI, DeLong) | threshold | test sensitivity | test specificity | test accuracy |",
        "|---|---|---:|---:|---|---:|---|---|---|",
    ]
    for task in TASKS:
        default = TASKS[task].default_model
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


if __name__ == "__main__":
    print(results_table())
