"""What a hand-off carries, and the one adapter to the rest of `core` (scoring, model store, operating point).

Every other module in `core.handoff` works on these dataclasses only, so when `core/` is reorganised into
packages just the imports at the top of this file move.

A `Case` is one model's look at one or more images: model identity (id, sha256, threshold, card summary),
optional site profile, and per image the probability, the decision at the operating point (or why it was
withheld), input warnings, a display copy of the picture, its Grad-CAM overlay and, for DICOM inputs, a
pixel-free copy of the source header (study/series/SOP UIDs and the patient module, which stays in memory).

A case of whole smear fields carries a `FieldCase` instead of (or beside) images: the fields (hash, counts, the
outlined picture), the automatic count at the field operating point and the technician's confirmed result
(`core.fields.review.confirmed_case`). `produced_by` names who made the hand-off ("<label> (<role>)").
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core import audit, users
from core.evaluation import operating_point as op
from core.inference import scoring
from core.models import store
from core.registry import get_task

OVERLAY_ALPHA = 0.4
DISCLAIMER = (
    "SecondLook is decision support for trained clinicians, not a diagnostic device. It has not been cleared by "
    "any regulator. Every output must be checked by a qualified reader; never act on it alone."
)


@dataclass(frozen=True)
class Rates:
    """One prediction set's numbers at the card's threshold (None where the card lacks them)."""

    n: int | None = None
    n_positive: int | None = None
    auc: float | None = None
    auc_ci: tuple[float, float] | None = None
    sensitivity: float | None = None
    sensitivity_ci: tuple[float, float] | None = None
    specificity: float | None = None
    specificity_ci: tuple[float, float] | None = None

    @classmethod
    def from_card(cls, d: dict | None) -> "Rates | None":
        if not d:
            return None
        ci = lambda k: tuple(float(v) for v in d[k]) if d.get(k) else None  # noqa: E731
        num = lambda k: float(d[k]) if d.get(k) is not None else None  # noqa: E731
        return cls(d.get("n"), d.get("n_positive"), num("auc"), ci("auc_ci"), num("sensitivity"), ci("sensitivity_ci"),
                   num("specificity"), ci("specificity_ci"))


@dataclass(frozen=True)
class ModelInfo:
    task: str
    task_title: str
    finding: str
    positive: str
    negative: str
    modality: str
    model_id: str
    model_title: str
    sha256: str
    threshold: float  # the operating point used for the decisions
    card_threshold: float | None
    threshold_rule: str
    description: str
    data: dict
    validation: Rates | None
    test: Rates | None
    external: dict | None = None  # card "external" results, when a card has them
    calibration: dict | None = None  # card "calibration": raw score -> shown probability (core.inference.calibrate)

    @property
    def threshold_is_default(self) -> bool:
        return self.card_threshold is not None and abs(self.threshold - self.card_threshold) < 1e-12


@dataclass(frozen=True)
class SourceRef:
    """Where an image came from in DICOM terms; `generated` lists the UIDs SecondLook had to make up."""

    header: object  # pydicom Dataset without pixel data, or None for a plain image
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    sop_class_uid: str | None
    generated: tuple[str, ...] = ()


@dataclass
class ImageResult:
    name: str
    sha256: str
    probability: float | None = None
    threshold: float | None = None
    positive: str = ""
    negative: str = ""
    withheld: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    image: np.ndarray | None = None  # display-size uint8, grey or RGB
    overlay: np.ndarray | None = None  # RGB uint8, Grad-CAM blended at OVERLAY_ALPHA
    source: SourceRef | None = None
    phi: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def flagged(self) -> bool | None:
        if self.probability is None or self.withheld or self.threshold is None:
            return None
        return op.decide(self.probability, self.threshold)

    @property
    def decision(self) -> str | None:
        """The class at the operating point, None when no decision is given (unreadable or withheld)."""
        f = self.flagged
        return None if f is None else (self.positive if f else self.negative)

    def withhold(self, reason: str) -> None:
        """Give no decision for this image (e.g. an input guard said the model should not be trusted here)."""
        self.withheld = reason.strip() or "withheld"


@dataclass
class FieldImage:
    """One whole smear field of a case: identified by its hash; `picture` is the outlined display copy (JPEG)."""

    name: str
    sha256: str
    n_cells: int
    n_infected: int | None  # automatic, at the field operating point (None: no cells counted)
    n_queued: int
    n_confirmed: int  # confirmed + marked infected by the technician
    picture: bytes | None = None
    message: str = ""


@dataclass
class FieldCase:
    """The fields of one slide and their result: `automatic` is `core.fields.screen.case_result` at the field
    operating point, `confirmed` is `core.fields.review.confirmed_case`. `label` is the technician's own case/slide
    label: it may name a patient, so it is printed only where patient details are asked for."""

    case_id: str
    fields: list[FieldImage]
    automatic: dict
    confirmed: dict
    field_threshold: float
    field_threshold_rule: str
    review_threshold: float | None
    review_rule: str = ""
    label: str = ""

    def lines(self) -> list[str]:
        """The result in words (`core.fields.review.case_lines`)."""
        from core.fields.review import case_lines

        return case_lines(self.confirmed, self.automatic)

    def method(self) -> list[str]:
        """How the two results were made, for the PDF and the SR."""
        from core.fields.review import INTERVAL_NOTE

        review = (f"Cells with a probability of {self.review_threshold:.4f} or more are queued for the technician, most "
                  f"suspicious first ({self.review_rule or 'review threshold chosen on the validation fields'}); the "
                  "technician confirms or rejects each and may mark any other outlined cell as infected."
                  if self.review_threshold is not None else "No review threshold is recorded for this model: no cell was queued.")
        return [INTERVAL_NOTE, review, f"The automatic count calls a cell infected at {self.field_threshold:.4f} or more "
                                       f"({self.field_threshold_rule or 'field operating point'})."]


@dataclass
class Case:
    model: ModelInfo
    images: list[ImageResult]
    site_profile: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    fields: FieldCase | None = None
    produced_by: str | None = None  # "<user label> (<role>)": who made the report (`produced_by(user)`)

    @property
    def scored(self) -> list[ImageResult]:
        return [r for r in self.images if r.ok]


def field_case(screens: list, shas: list[str], confirmations: list[dict], *, case_id: str, model_id: str,
               model_sha256: str, field_threshold: float, field_rule: str, review_threshold: float | None,
               review_rule: str = "", pictures: list[bytes | None] | None = None, label: str = "") -> FieldCase:
    """A case of whole smear fields from their screens (`core.fields.screen.FieldScreen`, one per sha256) and the
    technician's confirmations of this case: the automatic count at the field operating point and the confirmed
    result over the queue shown at `review_threshold` (rows of another model version or threshold left out)."""
    from core.fields.review import case_queue, confirmed_case
    from core.fields.screen import case_result

    queue = case_queue(screens, review_threshold)
    counted = {sha: s.n_counted for s, sha in zip(screens, shas) if s.counted}
    edge = [(sha, int(i)) for s, sha in zip(screens, shas) for i in np.flatnonzero(~s.in_count)]
    confirmed = confirmed_case(confirmations, [(shas[k], i) for k, i, _ in queue], counted, model_sha256=model_sha256,
                               threshold=review_threshold, edge=edge)
    pictures = pictures or [None] * len(screens)
    images = []
    for k, (s, sha, pic) in enumerate(zip(screens, shas, pictures)):
        r = s.result(field_threshold, model_id)
        images.append(FieldImage(s.name, sha, r["n_cells"], r["n_infected"], sum(1 for f, _, _ in queue if f == k),
                                 confirmed["per_field"].get(sha, 0), pic, s.message))
    return FieldCase(case_id, images, case_result(screens, field_threshold, model_id), confirmed, float(field_threshold),
                     field_rule, review_threshold, review_rule, label)


def produced_by(user: users.User) -> str:
    """How a report names who produced it: "<label> (<role>)"."""
    return f"{user.label} ({user.role.replace('_', ' ')})"


# ------------------------------------------------------------------------------------------------ model

def model_info(task: str, model_id: str, threshold: float | None = None, root: str | Path | None = None,
               card: dict | None = None) -> ModelInfo:
    """Identity and card summary of a bundled model; `threshold` overrides the card's operating point."""
    t = get_task(task)
    spec = t.model(model_id)
    card = card if card is not None else store.read_card(task, model_id, root)
    card_thr = card.get("threshold")
    thr = float(threshold if threshold is not None else (card_thr if card_thr is not None else 0.5))
    if not (math.isfinite(thr) and 0.0 <= thr <= 1.0):
        raise ValueError(f"threshold must be in [0, 1], got {thr!r}")
    return ModelInfo(
        task=t.name, task_title=t.title, finding=t.finding, positive=t.positive, negative=t.negative,
        modality=t.modality, model_id=model_id, model_title=str(card.get("title") or spec.title),
        sha256=str(card.get("sha256") or ""), threshold=thr,
        card_threshold=float(card_thr) if card_thr is not None else None,
        threshold_rule=str(card.get("threshold_rule") or ""), description=str(card.get("description") or spec.description),
        data=dict(card.get("data") or {}), validation=Rates.from_card(card.get("validation")),
        test=Rates.from_card(card.get("test")), external=card.get("external") or None,
        calibration=card.get("calibration") or None,
    )


def load_model(task: str, model_id: str, root: str | Path | None = None):
    """The Keras model (checksum verified against its card) and its OOD statistics (None when absent)."""
    model = store.load_model(task, model_id, root=root)
    try:
        from core.inference.guard import load_ood

        ood = load_ood(task, model_id, root=root, model=model)
    except Exception:  # missing or stale statistics never stop scoring (as in the app)
        ood = None
    return model, ood


def meaning(info: ModelInfo) -> str:
    """What the operating point did on validation, in words (from the card's counts when it has them)."""
    v = info.validation
    if v is None or v.sensitivity is None or v.specificity is None:
        return "The model card has no validation results for this operating point."
    pos, neg, _ = op.nouns(info.task)
    s = (f"On validation the model caught {op.fmt_pct(v.sensitivity)} of {pos} (sensitivity"
         + (f", 95% CI {op.fmt_ci(v.sensitivity_ci)}" if v.sensitivity_ci else "") + ") and cleared "
         f"{op.fmt_pct(v.specificity)} of {neg} (specificity"
         + (f", 95% CI {op.fmt_ci(v.specificity_ci)}" if v.specificity_ci else "") + ")")
    if not info.threshold_is_default:
        s += (f". These figures belong to the card's threshold {info.card_threshold:.4f}; this report used "
              f"{info.threshold:.4f}, so they do not describe it exactly" if info.card_threshold is not None
              else ". The card has no threshold of its own")
    return s + "."


def disagreement(info: ModelInfo) -> str | None:
    """The plain sentence for the report when validation and test disagree beyond their 95% intervals at the card's
    point (`core.evaluation.operating_point.honest_summary`), leading with the less flattering; else None."""
    sets = {}
    for name, r in (("validation", info.validation), ("test", info.test)):
        if r and r.sensitivity is not None and r.specificity is not None and r.sensitivity_ci and r.specificity_ci \
                and r.n and r.n_positive:
            sets[name] = {"sensitivity": r.sensitivity, "sensitivity_ci": r.sensitivity_ci, "specificity": r.specificity,
                          "specificity_ci": r.specificity_ci, "n_pos": int(r.n_positive), "n_neg": int(r.n - r.n_positive)}
    lines = op.honest_summary(info.task, sets) if len(sets) == 2 else []
    return lines[0] if lines and lines[0].startswith("The ") else None


def fmt_prob(p: float | None) -> str:
    return op.fmt_prob(p)


def fmt_pct(v: float | None) -> str:
    return op.fmt_pct(v)


def fmt_ci(ci) -> str:
    return op.fmt_ci(ci) if ci else "—"


# ------------------------------------------------------------------------------------------------ scoring

def source_ref(data: bytes) -> SourceRef | None:
    """Pixel-free header of a DICOM input (None for other formats); missing UIDs are left None here."""
    from core.io.dicom import has_preamble, looks_like_dicom

    if not looks_like_dicom(data):
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=not has_preamble(data))
    except Exception:  # decoding already succeeded, so this cannot really fail; no header, no references
        return None
    get = lambda k: str(ds.get(k)) if ds.get(k) else None  # noqa: E731
    return SourceRef(ds, get("StudyInstanceUID"), get("SeriesInstanceUID"), get("SOPInstanceUID"), get("SOPClassUID"))


def score_one(model, info: ModelInfo, data: bytes, name: str, ood=None) -> ImageResult:
    """Through the app's scoring path (`core.inference.scoring.score_bytes`): same probability, warnings and Grad-CAM."""
    from core.inference.explain import overlay

    spec = get_task(info.task).model(info.model_id)
    s = scoring.score_bytes(model, spec, data, name, with_heatmap=True, ood=ood, with_display=True,
                            calibration=info.calibration)
    r = ImageResult(name, s.digest, s.probability, info.threshold, info.positive, info.negative, withheld=s.withheld,
                    error=s.error, warnings=list(s.warnings), notes=list(s.notes), phi=dict(s.phi or {}))
    if not s.ok:
        return r
    r.image = s.display
    r.overlay = overlay(s.display, s.heatmap, alpha=OVERLAY_ALPHA) if s.heatmap is not None else None
    r.source = source_ref(data) if s.format == "DICOM" else None
    return r


def score_case(model, info: ModelInfo, files: list[tuple[str, bytes]], ood=None, site_profile: str | None = None,
               surface: str | None = "handoff", audit_db=None, withhold=None, produced_by: str | None = None) -> Case:
    """Score every file (a bad one keeps its error and does not stop the others); one audit row per scoring.

    `withhold(result) -> reason | None` lets a caller's guard refuse a decision before it is recorded;
    `produced_by` ("<label> (<role>)") is printed on the report.
    """
    images = [score_one(model, info, data, name, ood) for name, data in files]
    for r in images:
        reason = withhold(r) if (withhold is not None and r.ok) else None
        if reason:
            r.withhold(reason)
    case = Case(info, images, site_profile, produced_by=produced_by)
    if surface:
        record_audit(case, surface, db=audit_db)
    return case


def record_audit(case: Case, surface: str, db=None) -> list[int]:
    """Audit rows for the scored images of a case (unreadable files were never scored)."""
    m = case.model
    return [audit.record(image_sha256=r.sha256, task=m.task, model_id=m.model_id, model_sha256=m.sha256,
                         threshold=m.threshold, probability=r.probability if r.decision is not None else None,
                         decision=r.decision,
                         withheld_reason=r.withheld, site_profile=case.site_profile, surface=surface,
                         caution="; ".join(r.warnings) if r.decision is not None and r.warnings else None, db=db)
            for r in case.scored]


def from_scored(info: ModelInfo, s, data: bytes) -> ImageResult:
    """An ImageResult from the app's cached `scoring.Scored` (no re-scoring: the picture is decoded again only
    for the report, because the app's cache keeps scores small)."""
    from core.inference.explain import overlay

    r = ImageResult(s.name, s.digest, s.probability, info.threshold, info.positive, info.negative,
                    withheld=getattr(s, "withheld", None), error=s.error, warnings=list(s.warnings), notes=list(s.notes),
                    phi=dict(s.phi or {}))
    if not s.ok:
        return r
    dec = scoring.decode(data, s.name)
    r.image = scoring.display_image(dec.pixels)
    r.overlay = overlay(r.image, s.heatmap, alpha=OVERLAY_ALPHA) if s.heatmap is not None else None
    r.source = source_ref(data) if dec.format == "DICOM" else None
    return r
