"""One result row per scored file: the fields `core.predict` prints as JSON and `core.batch` writes as columns.

Both surfaces build their rows here, so they cannot drift. A row is a flat dict with the keys of `COLUMNS`, in that
order; a file that could not be scored has `ok` False, its `error`, and no probability or decision.

Extending: a later field (e.g. a malaria field result) is one more entry in `COLUMNS` and one more keyword in
`RowContext.row`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

COLUMNS: tuple[str, ...] = (
    "file", "sha256", "ok", "error", "probability", "decision", "withheld", "score_out_of_scope", "caution",
    "threshold", "site", "calibrated_probability", "task", "model", "model_sha256", "population",
)
# The columns that say which scorer produced a row: a batch output may only ever hold one combination of them.
PROVENANCE: tuple[str, ...] = ("task", "model", "model_sha256", "threshold", "site")


@dataclass(frozen=True)
class RowContext:
    """What is the same for every row of one run: the task, the model and its operating point."""

    task: str
    model: str
    model_sha256: str | None
    threshold: float
    negative: str
    positive: str
    calibration: dict | None = None  # the card's map from raw network output to the probability shown
    site: str | None = None  # the site profile in use (core.site.apply.with_site), whose threshold this is
    site_map: Callable[[float], float] | None = field(default=None, compare=False)  # its recalibration


    def calibrate(self, raw: float) -> float:
        """Raw network output -> the probability every surface shows (core.inference.calibrate)."""
        from core.inference.calibrate import apply_calibration

        return float(apply_calibration(float(raw), self.calibration))

    def calibrate_many(self, raws) -> list[float]:
        """`calibrate` for many outputs in one vectorised call (a batch chunk): the same values."""
        import numpy as np

        from core.inference.calibrate import apply_calibration

        return [float(v) for v in apply_calibration(np.asarray(raws, dtype=np.float64).reshape(-1), self.calibration)]

    def decision(self, probability: float, modality_verdict: str | None):
        """`core.inference.decision.decide` at this operating point: withheld when the modality check says so."""
        from core.inference.decision import decide

        return decide(probability, self.threshold, self.task, modality_verdict)

    def row(self, file: str, sha256: str | None, probability: float | None = None, error: str | None = None,
            decision=None, population: str | None = None) -> dict:
        """The row for one file: give a probability, or an error saying why there is none.

        `decision` (a `core.inference.decision.Decision`, default: `self.decision` without a modality verdict) carries
        the modality check: when it withholds, the row has no probability and no decision, the reason in `withheld`,
        and the output only as `score_out_of_scope`. Every row has every key of `COLUMNS` (None where it does not apply).
        """
        if (probability is None) == (error is None):
            raise ValueError("a row has either a probability or an error, not both or neither")
        ok = error is None
        if ok and decision is None:
            decision = self.decision(float(probability), None)
        assessed = ok and decision.assessed
        row = {
            "file": str(file),
            "sha256": sha256,
            "ok": ok,
            "error": error,
            "probability": float(probability) if assessed else None,
            "decision": decision.label if assessed else None,
            "withheld": decision.withheld if decision is not None else None,
            "caution": decision.caution if decision is not None else None,
            "threshold": float(self.threshold),
            "site": self.site,
            "calibrated_probability": float(self.site_map(float(probability))) if assessed and self.site_map else None,
            "task": self.task,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "population": population,  # a chest film's population and how it was told (DICOM age or image check)
            # kept apart: not a probability this model stands behind
            "score_out_of_scope": float(probability) if ok and not assessed else None,
        }
        return {c: row[c] for c in COLUMNS}


def row_context(task: str, model_id: str, threshold: float | None = None, root=None) -> RowContext:
    """The context of a bundled model: its card's operating point (unless `threshold` is given) and sha256."""
    from core.models.store import read_card
    from core.registry import get_task

    spec = get_task(task)
    spec.model(model_id)  # unknown ids fail with the list of known ones
    card = read_card(task, model_id, root)
    if threshold is None:
        if "threshold" not in card:
            raise KeyError(f"{task}/{model_id}: the model card has no threshold; pass one explicitly")
        threshold = float(card["threshold"])
    return RowContext(task, model_id, card.get("sha256"), float(threshold), spec.negative, spec.positive,
                      card.get("calibration"))
