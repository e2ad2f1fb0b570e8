"""Which bundled model a task uses by default. The rule reads model cards only, never test results.

Preferred: patient-grouped cross-validation. The default is the SecondLook (non-baseline) model with the best CV
mean AUC; any candidate within one standard error of that best mean counts as equally good, and among those the
smaller one (fewer parameters) wins. That rule needs every SecondLook candidate to have a complete CV block on its
card (`core.models.cv`); until then the task falls back to the older rule, the best single validation AUC.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.models.registry import TaskSpec, get_task
from core.models.store import read_card

RULE_CV = "best CV mean (one-SE rule: smaller model wins)"
RULE_VALIDATION = "best on validation"


@dataclass(frozen=True)
class Choice:
    model_id: str
    rule: str  # RULE_CV or RULE_VALIDATION
    note: str  # one sentence for the surfaces: what was compared, or why the fallback


def best_on_validation(task: TaskSpec, card_of: Callable[[str], dict]) -> str:
    """The SecondLook (non-baseline) model with the best validation AUC; ties go to the earlier registry entry.

    `card_of` reads a card by model id, so the app can pass its cached reader.
    """
    ours = [m.id for m in task.models if not m.baseline]
    scored = [(card_of(m).get("validation", {}).get("auc", -1.0), -i, m) for i, m in enumerate(ours)]
    return max(scored)[2]


def one_se_choice(cv: dict[str, dict], parameters: dict[str, int], order: list[str]) -> str:
    """Best CV mean; within one SE of it (the best model's SE) the fewest parameters, then the earlier entry."""
    best = max(order, key=lambda m: (cv[m]["mean_auc"], -order.index(m)))
    floor = cv[best]["mean_auc"] - cv[best]["se_auc"]
    near = [m for m in order if cv[m]["mean_auc"] >= floor - 1e-12]
    return min(near, key=lambda m: (parameters[m], order.index(m)))


def choose(task: TaskSpec, card_of: Callable[[str], dict]) -> Choice:
    """The default model of a task and the rule that chose it."""
    ours = [m.id for m in task.models if not m.baseline]
    cards = {m: card_of(m) for m in ours}
    missing = [m for m in ours if not (cards[m].get("cv") or {}).get("complete")]
    if missing:
        return Choice(best_on_validation(task, card_of), RULE_VALIDATION,
                      f"cross-validation is not complete for {len(missing)} of {len(ours)} SecondLook candidates "
                      f"({', '.join(missing)}), so the default is the best single validation AUC")
    cv = {m: cards[m]["cv"] for m in ours}
    ks = {c["k"] for c in cv.values()}
    if len(ks) != 1:
        return Choice(best_on_validation(task, card_of), RULE_VALIDATION,
                      f"the candidates' cross-validations use different k ({sorted(ks)}), so they are not compared")
    pick = one_se_choice(cv, {m: int(cards[m].get("parameters", 0)) for m in ours}, ours)
    return Choice(pick, RULE_CV, f"{ks.pop()}-fold patient-grouped CV: mean AUC {cv[pick]['mean_auc']:.4f} "
                                 f"(SE {cv[pick]['se_auc']:.4f}) over {len(ours)} SecondLook candidates")


def default_model(task: str, root: str | Path | None = None) -> str:
    """The model a task's surfaces use when none is named."""
    return choose(get_task(task), lambda m: read_card(task, m, root)).model_id


def default_choice(task: str, root: str | Path | None = None) -> Choice:
    return choose(get_task(task), lambda m: read_card(task, m, root))
