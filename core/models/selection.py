"""Which bundled model a task uses by default. The rule reads model cards only, never test results."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from core.models.registry import TaskSpec, get_task
from core.models.store import read_card


def best_on_validation(task: TaskSpec, card_of: Callable[[str], dict]) -> str:
    """The SecondLook (non-baseline) model with the best validation AUC; ties go to the earlier registry entry.

    `card_of` reads a card by model id, so the app can pass its cached reader.
    """
    ours = [m.id for m in task.models if not m.baseline]
    scored = [(card_of(m).get("validation", {}).get("auc", -1.0), -i, m) for i, m in enumerate(ours)]
    return max(scored)[2]


def default_model(task: str, root: str | Path | None = None) -> str:
    """The model a task's surfaces use when none is named."""
    return best_on_validation(get_task(task), lambda m: read_card(task, m, root))
