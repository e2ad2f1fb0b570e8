"""One result row per scored file: the fields `core.predict` prints as JSON and `core.batch` writes as columns.

Both surfaces build their rows here, so they cannot drift. A row is a flat dict with the keys of `COLUMNS`, in that
order; a file that could not be scored has `ok` False, its `error`, and no probability or decision.

Extending: a later field (a withheld decision and its reason, a malaria field result) is one more entry in
`COLUMNS` and one more keyword in `RowContext.row`; readers take columns by name, so older outputs stay readable.
"""
from __future__ import annotations

from dataclasses import dataclass

COLUMNS: tuple[str, ...] = (
    "file", "sha256", "ok", "error", "probability", "decision", "threshold", "task", "model", "model_sha256",
)
# The columns that say which scorer produced a row: a batch output may only ever hold one combination of them.
PROVENANCE: tuple[str, ...] = ("task", "model", "model_sha256", "threshold")


@dataclass(frozen=True)
class RowContext:
    """What is the same for every row of one run: the task, the model and its operating point."""

    task: str
    model: str
    model_sha256: str | None
    threshold: float
    negative: str
    positive: str

    def decide(self, probability: float) -> str:
        """The class label at this operating point (a probability equal to the threshold counts as positive)."""
        return self.positive if probability >= self.threshold else self.negative

    def row(self, file: str, sha256: str | None, probability: float | None = None, error: str | None = None) -> dict:
        """The row for one file: give a probability, or an error saying why there is none."""
        if (probability is None) == (error is None):
            raise ValueError("a row has either a probability or an error, not both or neither")
        ok = error is None
        return {
            "file": str(file),
            "sha256": sha256,
            "ok": ok,
            "error": error,
            "probability": float(probability) if ok else None,
            "decision": self.decide(float(probability)) if ok else None,
            "threshold": float(self.threshold),
            "task": self.task,
            "model": self.model,
            "model_sha256": self.model_sha256,
        }


def row_context(task: str, model_id: str, threshold: float | None = None, root=None) -> RowContext:
    """The context of a bundled model: its card's operating point (unless `threshold` is given) and sha256."""
    from core.models.store import read_card
    from core.models.registry import get_task

    spec = get_task(task)
    spec.model(model_id)  # unknown ids fail with the list of known ones
    card = read_card(task, model_id, root)
    if threshold is None:
        if "threshold" not in card:
            raise KeyError(f"{task}/{model_id}: the model card has no threshold; pass one explicitly")
        threshold = float(card["threshold"])
    return RowContext(task, model_id, card.get("sha256"), float(threshold), spec.negative, spec.positive)
