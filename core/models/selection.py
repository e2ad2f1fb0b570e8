"""Which bundled model a task uses by default. The rule reads model cards only, never test results.

Preferred: patient-grouped cross-validation. The default is the SecondLook (non-baseline) model with the best CV
mean AUC; any candidate within one standard error of that best mean counts as equally good, and among those the
smaller one (fewer parameters) wins; among equally small ones, where the task has a second site's validation cells
(malaria), the one whose shipped operating point keeps the best balanced accuracy there (`core.training.site_check`).
That rule needs every SecondLook candidate to have a complete CV block on its card (`core.training.cv`); until then the
task falls back to the older rule, the best single validation AUC.

Candidates are recipes. A fold ensemble (`core.training.fold_ensemble`) is not one: it is the chosen recipe's own k fold
models, whose CV is the recipe's. When the chosen recipe's fold ensemble is bundled, it is what the task ships, since
its threshold and calibration come from out-of-fold scores over all of train rather than one validation split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.registry import TaskSpec, get_task
from core.models.store import SITE_CHECK, read_card

RULE_CV = "best CV mean (one-SE rule: smaller model wins)"
RULE_CV_FOLDS = RULE_CV + ", shipped as its fold models averaged"
RULE_VALIDATION = "best on validation"


@dataclass(frozen=True)
class Choice:
    model_id: str
    rule: str  # RULE_CV, RULE_CV_FOLDS or RULE_VALIDATION
    note: str  # one sentence for the surfaces: what was compared, or why the fallback


def candidates(task: TaskSpec) -> list[str]:
    """The SecondLook recipes a default is chosen from: not the baselines, not the fold ensembles, not the models the
    registry says are bundled for comparison only (`not_a_candidate`, with its reason)."""
    return [m.id for m in task.models if not (m.baseline or m.fold_ensemble_of or m.not_a_candidate)]


def best_on_validation(task: TaskSpec, card_of: Callable[[str], dict]) -> str:
    """The SecondLook recipe with the best validation AUC; ties go to the earlier registry entry.

    `card_of` reads a card by model id, so the app can pass its cached reader.
    """
    ours = candidates(task)
    scored = [(card_of(m).get("validation", {}).get("auc", -1.0), -i, m) for i, m in enumerate(ours)]
    return max(scored)[2]


def cv_of(card: dict) -> dict | None:
    """A card's cross-validation block: its own, or for a fold ensemble its members' (the recipe's)."""
    return card.get("cv") or card.get("members_cv")


def cv_summary(card: dict) -> str:
    """The CV AUC for a table cell: "0.859 ± 0.004 (3-fold)", "1 of 3 folds done", or "—" without any."""
    cv = cv_of(card)
    if not cv:
        return "—"
    if not cv["complete"]:
        return f"{len(cv['folds_done'])} of {cv['k']} folds done"
    d = 4 if cv["sd_auc"] < 0.001 else 3  # a spread below 0.001 would print as "± 0.000"
    return f"{cv['mean_auc']:.{d}f} ± {cv['sd_auc']:.{d}f} ({cv['k']}-fold)"


def one_se_choice(cv: dict[str, dict], parameters: dict[str, int], order: list[str],
                  site: dict[str, float] | None = None) -> str:
    """Best CV mean; within one SE of it (the best model's SE) the fewest parameters, then (with `site`, every
    candidate's second-site balanced accuracy) the one that travels best, then the earlier entry."""
    best = max(order, key=lambda m: (cv[m]["mean_auc"], -order.index(m)))
    floor = cv[best]["mean_auc"] - cv[best]["se_auc"]
    near = [m for m in order if cv[m]["mean_auc"] >= floor - 1e-12]
    return min(near, key=lambda m: (parameters[m], -(site or {}).get(m, 0.0), order.index(m)))


def choose(task: TaskSpec, card_of: Callable[[str], dict]) -> Choice:
    """The default model of a task and the rule that chose it."""
    ours = candidates(task)
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
    checks = {m: cards[m].get(SITE_CHECK) for m in ours}
    site = {m: c["balanced_accuracy"] for m, c in checks.items()} if all(checks.values()) else None
    pick = one_se_choice(cv, {m: int(cards[m].get("parameters", 0)) for m in ours}, ours, site)
    k = ks.pop()
    note = (f"{k}-fold patient-grouped CV: mean AUC {cv[pick]['mean_auc']:.4f} (SE {cv[pick]['se_auc']:.4f}) over "
            f"{len(ours)} SecondLook candidates")
    if site:
        c = checks[pick]
        note += (f"; ties of equal size go to the one that travels: on {c['dataset']} validation cells "
                 f"({'/'.join(c['sessions'])}) it keeps sensitivity {c['sensitivity']:.3f} and specificity "
                 f"{c['specificity']:.3f} at its shipped point")
    shipped = [m.id for m in task.models if m.fold_ensemble_of == pick and m.members == k and card_of(m.id).get("threshold") is not None]
    if shipped:
        return Choice(shipped[0], RULE_CV_FOLDS, f"{note}: {pick} won; its {k} fold models are shipped together")
    return Choice(pick, RULE_CV, note)


def default_model(task: str, root: str | Path | None = None) -> str:
    """The model a task's surfaces use when none is named."""
    return choose(get_task(task), lambda m: read_card(task, m, root)).model_id


def default_choice(task: str, root: str | Path | None = None) -> Choice:
    return choose(get_task(task), lambda m: read_card(task, m, root))
