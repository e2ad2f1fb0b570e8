"""Whose film is this? A chest radiograph's population (child or adult), so a task is answered only for the patients
its models were validated on: pneumonia for children aged 1-5 (Guangzhou), effusion for adults (NIH).

The DICOM age comes first (PatientAge, else PatientBirthDate with StudyDate or AcquisitionDate); an impossible one
(negative, over 130 years, unreadable) is ignored with a note. Without a usable age, the image-based age-group check
decides (`core.training.age_check` trains it; its card holds the two thresholds chosen on validation). A film it is
unsure about gets neither answer: withheld with the reason, never a guess.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from core.config import MODELS_DIR
from core.registry import InputSpec

AGE_CHECK_DIR = MODELS_DIR / "routing" / "age_group"
INPUT = InputSpec(128, 1, "standardize")
CHILD_TASK, ADULT_TASK = "pneumonia", "effusion"
SOURCES = (CHILD_TASK, ADULT_TASK)
CHILD_AGES = (1.0, 6.0)  # years, [lo, hi): the pneumonia training population (aged 1-5)
ADULT_MIN_AGE = 18.0
MAX_AGE = 130.0

# Which population each chest task's models were trained on, and the sentence shown when a film is not of it.
TASK_POPULATION = {CHILD_TASK: "child", ADULT_TASK: "adult"}
TRAINED_ON = {CHILD_TASK: "the pneumonia models were trained on children aged 1–5",
              ADULT_TASK: "the effusion models were trained on adults"}


@dataclass(frozen=True)
class Population:
    """`group`: "child" (1-5 years), "adult" (18+), "other" (a DICOM age outside both), "unsure"; `source`: "dicom"
    or "image"; `p_child`: the image check's probability (None when the DICOM age decided)."""

    group: str
    source: str
    age_years: float | None = None
    p_child: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line for a row or a report: the group, how it was told, and any note (an ignored DICOM age)."""
        if self.source == "dicom":
            how = f"DICOM age {self.age_years:g} years"
        else:
            how = f"image check, P(child) {self.p_child:.3f}" if self.p_child is not None else "not checked"
        return f"{self.group} ({'; '.join((how, *self.notes))})"

    def as_dict(self) -> dict:
        return {"group": self.group, "source": self.source, "age_years": self.age_years, "p_child": self.p_child,
                **({"notes": list(self.notes)} if self.notes else {})}


# ------------------------------------------------------------------------------------------ DICOM age


def _date(v) -> _dt.date | None:
    s = re.sub(r"\D", "", str(v or ""))[:8]
    try:
        return _dt.datetime.strptime(s, "%Y%m%d").date() if len(s) == 8 else None
    except ValueError:
        return None


def _age_string(v) -> float | None:
    """DICOM AS: nnnD, nnnW, nnnM or nnnY -> years."""
    m = re.fullmatch(r"\s*(-?\d{1,3})\s*([DWMY])\s*", str(v or "").upper())
    if not m:
        return None
    n = int(m.group(1))
    return n / {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[m.group(2)]


def dicom_age(tags: dict | None) -> tuple[float | None, list[str]]:
    """(age in years or None, notes). Reads PatientAge, else PatientBirthDate with StudyDate/AcquisitionDate."""
    tags = tags or {}
    notes: list[str] = []
    raw = tags.get("PatientAge")
    age = _age_string(raw) if raw not in (None, "") else None
    if raw not in (None, "") and age is None:
        notes.append(f"DICOM PatientAge '{raw}' is not a valid age; ignored")
    if age is None:
        born = _date(tags.get("PatientBirthDate"))
        taken = _date(tags.get("StudyDate")) or _date(tags.get("AcquisitionDate"))
        if born and taken:
            age = (taken - born).days / 365.25
    if age is not None and not (0.0 <= age <= MAX_AGE):
        notes.append(f"DICOM age {age:.1f} years is impossible; ignored, the image check decides")
        age = None
    return age, notes


def group_of_age(age: float) -> str:
    if CHILD_AGES[0] <= age < CHILD_AGES[1]:
        return "child"
    return "adult" if age >= ADULT_MIN_AGE else "other"


# ------------------------------------------------------------------------------------------ image check


def canonical(img: np.ndarray) -> np.ndarray:
    """Both training sources brought to one form: grey, 224 px by area averaging, one JPEG q75 round trip."""
    g = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    g = cv2.resize(g, (224, 224), interpolation=cv2.INTER_AREA if min(g.shape) >= 224 else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


class AgeCheckMissing(RuntimeError):
    """No trained age-group check is installed (models/routing/age_group)."""


_CARD: dict = {}


def age_check_card() -> dict:
    """The check's card, read again only when the file changes (every scored film asks for it). Do not modify."""
    path = AGE_CHECK_DIR / "card.json"
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise AgeCheckMissing(f"no age-group check at {AGE_CHECK_DIR}; train it: python -m core.training.age_check") from None
    if _CARD.get("stamp") != stamp:
        _CARD.update(stamp=stamp, card=json.loads(path.read_text()))
    return _CARD["card"]


def load_age_check(verify: bool = True):
    """The check's network, after its file's sha256 is checked against its card (safe mode, no optimizer)."""
    import keras

    path = AGE_CHECK_DIR / "model.keras"
    if not path.is_file():
        raise AgeCheckMissing(f"no age-group check at {path}; train it: python -m core.training.age_check")
    if verify:
        want = age_check_card().get("sha256")
        have = hashlib.sha256(path.read_bytes()).hexdigest()
        if have != want:
            raise RuntimeError(f"age-group check: file checksum {have[:12]}… does not match its card ({str(want)[:12]}…)")
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def child_probability(model, pixels: np.ndarray) -> float:
    """P(child) for one decoded film: brought to the training form (`canonical`), then the one input path (grey,
    128 px by area averaging, z-scored). The canonical form also makes the answer independent of the upload's
    resolution and encoding."""
    from core.inference.forward import predict_tensors
    from core.inference.preprocess import prepare

    x = prepare(canonical(pixels), INPUT)[None]
    try:  # onnxruntime: 2.6 ms a film against TensorFlow's 5.1 on 2 cores, the same score within 1e-6
        return float(predict_tensors(model, x, engine="onnx")[0])
    except (ImportError, ValueError):
        return float(predict_tensors(model, x)[0])


def image_group(p_child: float, thresholds: dict) -> str:
    if p_child >= thresholds["child_at_or_above"]:
        return "child"
    return "adult" if p_child <= thresholds["adult_at_or_below"] else "unsure"


_CHECK: dict = {}


def version() -> str:
    """The installed check's identity (its card's sha256; "" when none): caches of answers key on it."""
    try:
        return str(age_check_card().get("sha256", ""))
    except AgeCheckMissing:
        return ""


def checker():
    """(model, thresholds) of the installed age-group check, loaded once per process and again when it changes."""
    card = age_check_card()
    if _CHECK.get("sha256") != card.get("sha256"):
        _CHECK.clear()
        _CHECK.update(model=load_age_check(), thresholds=card["thresholds"], sha256=card.get("sha256"))
    return _CHECK["model"], _CHECK["thresholds"]


def checked(pixels: np.ndarray, tags: dict | None = None) -> Population:
    """The population from the DICOM age, else the installed image check. Without a usable check (not installed,
    or its file does not match its card), a film without a usable DICOM age is "unsure": both chest answers are
    withheld, and the note says why."""
    age, notes = dicom_age(tags)
    if age is not None:
        return Population(group_of_age(age), "dicom", round(age, 2), None, tuple(notes))
    try:
        model, thresholds = checker()
    except Exception as exc:  # missing, or a file that fails its checksum: never a guess
        why = "no DICOM age, and the image age-group check is not installed" if isinstance(exc, AgeCheckMissing) \
            else f"no DICOM age, and the image age-group check could not be used ({exc})"
        return Population("unsure", "image", None, None, tuple(notes) + (why,))
    p = child_probability(model, pixels)
    return Population(image_group(p, thresholds), "image", None, p, tuple(notes))


def withheld_reason(task: str, pop: Population) -> str | None:
    """Why `task` gives no decision for a film of this population (None: the task answers it)."""
    want = TASK_POPULATION.get(task)
    if want is None or pop.group == want:
        return None
    trained = TRAINED_ON[task]
    if pop.group == "unsure" and pop.p_child is None:
        return f"{trained}, and this patient's age could not be determined ({'; '.join(pop.notes)})"
    if pop.group == "unsure":
        return (f"{trained}, and the age-group check cannot tell whether this film is a child's or an adult's "
                f"(P(child) {pop.p_child:.2f}); no decision is given rather than a guess")
    if pop.group == "other":
        return f"{trained}; this patient's DICOM age is {pop.age_years:g} years, outside every validated population"
    if pop.source == "dicom":
        return f"{trained}; this patient's DICOM age is {pop.age_years:g} years"
    looks = {"adult": "an adult's", "child": "a young child's"}[pop.group]
    return f"{trained}; this film looks like {looks} (image age-group check; no DICOM age)"
