"""The one decision rule every surface uses (app single view, worklist, CLI JSON, CSV exports).

A probability becomes a decision only when the picture is the kind, and the patient the population, the task's
models were trained on (`input_verdict`):
  * the modality check (`core.inference.guard.modality_check`) says "wrong kind of image" -> no decision,
    `withheld` carries the reason; a deliberate "score anyway" may show the probability, never a decision;
  * a chest film whose population (`core.inference.population`: DICOM age, else the age-group check) is not the
    task's -> no decision, the reason names both (pneumonia: children aged 1-5; effusion: adults);
  * the feature-space "unusual for this model" flag keeps the decision and adds a `caution`;
  * otherwise flagged when `probability >= threshold` (the rule every metric uses).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.registry import TaskSpec, get_task

NOT_ASSESSED = "Not assessed"
OUT_OF_SCOPE = "outside the model's scope"
UNUSUAL_CAUTION = "Unusual for this model: the probability may not be reliable here."


@dataclass(frozen=True)
class Decision:
    """What a surface may say about one image. `label` is None exactly when the decision is withheld."""

    probability: float | None
    threshold: float
    label: str | None
    flagged: bool | None
    withheld: str | None = None
    caution: str | None = None

    @property
    def assessed(self) -> bool:
        return self.withheld is None and self.label is not None

    def short(self, positive: str) -> str:
        """Worklist / CSV text: 'Flag: PNEUMONIA', 'NORMAL' or 'Not assessed'."""
        if not self.assessed:
            return NOT_ASSESSED
        return f"Flag: {positive}" if self.flagged else str(self.label)

    def fields(self) -> dict:
        """The JSON keys of the CLI contract: decision (label or null), withheld (reason or null), caution."""
        return {"decision": self.label, "withheld": self.withheld, "caution": self.caution}


def decide(probability: float | None, threshold: float, task: str | TaskSpec, modality_verdict: str | None,
           ood_flag: bool | str | None = False) -> Decision:
    """One image's decision. `modality_verdict` is `modality_check`'s message (None when the image fits).

    `ood_flag` is True/False or a caution message of its own. A missing probability (unreadable file) is
    never a decision either.
    """
    t = get_task(task) if isinstance(task, str) else task
    caution = (ood_flag if isinstance(ood_flag, str) else UNUSUAL_CAUTION) if ood_flag else None
    if modality_verdict:
        return Decision(probability, float(threshold), None, None, str(modality_verdict), caution)
    if probability is None or probability != probability:  # None or NaN
        return Decision(probability, float(threshold), None, None, "the image could not be scored", caution)
    flagged = bool(probability >= threshold)
    return Decision(float(probability), float(threshold), t.positive if flagged else t.negative, flagged, None, caution)


# A single-cell crop is ~60-200 px a side (NIH crops here: 64 px; IML cell boxes: median 82 px); a microscope
# field is ~1000 px and holds ~100 cells (malaria_fields: 1280x960). Measured in tests/test_decision.py.
FIELD_MIN_SIDE = 400


def modality_verdict(pixels, task: str | TaskSpec) -> str | None:
    """The modality check for a task's models: None when the picture fits, else the reason to withhold.

    For the cell task a whole smear field is the right modality but the wrong input: the model scores one cell.
    """
    import numpy as np

    from core.inference.guard import modality_check

    t = get_task(task) if isinstance(task, str) else task
    msg = modality_check(pixels, t.modality)
    if msg or t.modality != "smear":
        return msg
    h, w = np.asarray(pixels).shape[:2]
    if min(h, w) >= FIELD_MIN_SIDE:
        return (f"This looks like a whole blood-smear field ({w}x{h} px, many cells) rather than one cell: the cell "
                f"model scores a single cell crop (about 60-200 px), so a score for the whole field is not meaningful. "
                "Screen it cell by cell instead: the Predict page does this for a field, or `python -m core.fields FILE`.")
    return None


def input_checks(pixels, task: str | TaskSpec, tags: dict | None = None, population=None):
    """(reason to withhold or None, the film's `Population` or None): the modality check, then, for a chest task,
    the population check. `tags`: the file's DICOM tags (for its age); `population`: an already assessed
    `core.inference.population.Population` (saves a second look at the same film)."""
    msg = modality_verdict(pixels, task)
    t = get_task(task) if isinstance(task, str) else task
    from core.inference import population as pop

    if msg or t.name not in pop.TASK_POPULATION:
        return msg, None
    film = population or pop.checked(pixels, tags)
    return pop.withheld_reason(t.name, film), film


def input_verdict(pixels, task: str | TaskSpec, tags: dict | None = None, population=None) -> str | None:
    """Every reason to withhold a decision that the picture itself gives (`input_checks`' first part)."""
    return input_checks(pixels, task, tags, population)[0]


def assess(pixels, probability: float | None, threshold: float, task: str | TaskSpec,
           ood_flag: bool | str | None = False, tags: dict | None = None) -> Decision:
    """Input checks + `decide` in one call, for surfaces that hold the decoded pixels."""
    return decide(probability, threshold, task, input_verdict(pixels, task, tags), ood_flag)
