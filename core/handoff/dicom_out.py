"""DICOM results for a PACS (highdicom): a Secondary Capture of the Grad-CAM overlay and a Comprehensive SR.

Per scored image:

* **Secondary Capture** (RGB): the overlay with a black banner burnt in above the picture, reading
  "SecondLook AI overlay - NOT FOR DIAGNOSIS" plus model, probability and decision. Its Source Image Sequence
  points at the input image.
* **Comprehensive SR**, TID 1500 "Imaging Measurement Report": the finding as a qualitative evaluation
  (present / absent / undetermined when withheld), the probability and the threshold as measurements,
  validation sensitivity and specificity, model identity as the device observer (model id; SHA-256 as the
  device serial number) and as the algorithm identification (SHA-256 as its version), the source image as
  the measurement group's source, and plain-text comments saying what the decision means, any input warning
  and which UIDs SecondLook had to generate.

A case of whole smear fields (`Case.fields`) gets one Secondary Capture per field (the outlined picture with the
banner; one series) and one Comprehensive SR for the case: a measurement group per field (red cells counted, the
automatic count, cells queued, cells the technician confirmed infected) and one for the case (the confirmed count
and parasitemia with its 95% interval, the automatic count beside it, malaria present / absent / undetermined while
the review is not finished), with the result in words ("proposed by SecondLook, confirmed by <user>").

Both go into the source study (new series each). A plain image (PNG, JPEG, ...) gets a new study; DICOM inputs
without Study/Series/SOP Instance UIDs get new ones; the SR says so in both cases.

Patient identity: `include_patient=False` (the default) blanks name, id, birth date, sex, accession number and
study date/time, which is right for files that leave the hospital. A PACS files a result under its patient and
study by these fields, so `pacs.store` callers pass `include_patient=True` (results stay in the hospital).
"""
from __future__ import annotations

import copy
import functools
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.handoff.case import DISCLAIMER, Case, ImageResult, ModelInfo, fmt_ci, fmt_pct

MANUFACTURER = "SecondLook"
SC_SERIES_NUMBER, SR_SERIES_NUMBER = 9901, 9902
SC_SERIES_DESCRIPTION = "SecondLook AI overlay - not for diagnosis"
SR_SERIES_DESCRIPTION = "SecondLook AI result - not for diagnosis"
BANNER_TITLE = "SecondLook AI overlay - NOT FOR DIAGNOSIS"
SCHEME = "99SECONDLOOK"  # private coding scheme for the concepts DICOM has no code for
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
BLANKED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
           "StudyTime", "ReferringPhysicianName")
_KEEP = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality", "PatientOrientation",
         "Laterality", "BodyPartExamined", "SpecificCharacterSet", "StudyDescription", "FrameOfReferenceUID", "Rows", "Columns",
         "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
         "NumberOfFrames") + BLANKED
UTF8 = "ISO_IR 192"  # texts carry en dashes and the patient name may not be Latin-1

# SNOMED CT codes of the findings (SCT is a DICOM coding scheme designator)
FINDING_CODES = {
    "pneumonia": ("233604007", "SCT", "Pneumonia"),
    "effusion": ("60046008", "SCT", "Pleural effusion"),
    "malaria": ("61462000", "SCT", "Malaria"),
}


class DicomOutputError(ValueError):
    """An image cannot be turned into DICOM results (e.g. it was never scored)."""


@dataclass
class DicomResult:
    """The two objects for one image, and what SecondLook had to make up for them."""

    name: str
    sc: object  # highdicom SCImage (a pydicom Dataset)
    sr: object  # highdicom ComprehensiveSR
    generated: list[str] = field(default_factory=list)

    @property
    def datasets(self) -> list:
        return [self.sc, self.sr]

    def files(self) -> list[tuple[str, bytes]]:
        """(file name, Part-10 bytes) for the SC and the SR; names carry no input name (it may identify a patient)."""
        return [(f"{ds.Modality}_{ds.SOPInstanceUID}.dcm", to_bytes(ds)) for ds in self.datasets]


@dataclass
class FieldsDicom(DicomResult):
    """A field case: one SC per field with a picture (`scs`) and the case's SR; `sc` is the first SC."""

    scs: list = field(default_factory=list)

    @property
    def datasets(self) -> list:
        return [*self.scs, self.sr]


def to_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _code(value: str, scheme: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(value, scheme, meaning)


def _private(value: str, meaning: str):
    return _code(value, SCHEME, meaning)


def _device_uid(sha256: str) -> str:
    """A stable UID per model file: 2.25 + the first 128 bits of its SHA-256 (a UUID-style OID)."""
    return "2.25." + str(int(sha256[:32], 16)) if sha256 else "2.25.0"


# ------------------------------------------------------------------------------------------------ source

def _source_header(r: ImageResult, include_patient: bool) -> tuple[object, list[str], bool]:
    """A pixel-free reference dataset for the results: copy of the input's header, or a new study for a plain image.

    Returns (dataset, notes about generated UIDs, whether the input was DICOM).
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    notes: list[str] = []
    src = r.source
    ds = Dataset()
    if src is not None and src.header is not None:
        for kw in _KEEP:
            if kw in src.header:
                ds[kw] = copy.deepcopy(src.header[kw])
        for kw, label in (("StudyInstanceUID", "Study Instance UID"), ("SeriesInstanceUID", "Series Instance UID"),
                          ("SOPInstanceUID", "SOP Instance UID")):
            if not str(ds.get(kw, "") or "").strip():
                setattr(ds, kw, generate_uid())
                notes.append(f"The input DICOM file had no {label}; SecondLook generated {getattr(ds, kw)}"
                             + (", so the result is filed in a new study." if kw == "StudyInstanceUID" else
                                ", so the reference to it cannot be resolved in any archive." if kw == "SOPInstanceUID" else "."))
        if not str(ds.get("SOPClassUID", "") or "").strip():
            ds.SOPClassUID = SecondaryCaptureImageStorage
        dicom_input = True
    else:
        ds = _new_study()
        notes.append(f"The input was a plain image file, not DICOM: SecondLook generated a new study "
                     f"(Study Instance UID {ds.StudyInstanceUID}) for these results; the input image is "
                     f"identified by its SHA-256 {r.sha256} only.")
        dicom_input = False
    _blank(ds, include_patient)
    return ds, notes, dicom_input


def _new_study():
    """A reference for results whose inputs are not DICOM: a new study, no patient."""
    from pydicom.dataset import Dataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    return ds


def _blank(ds, include_patient: bool) -> None:
    for kw in BLANKED:
        if not include_patient or kw not in ds:
            setattr(ds, kw, "")


# ------------------------------------------------------------------------------------------------ SC

@functools.lru_cache(maxsize=16)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype(str(FONT), size) if FONT.is_file() else ImageFont.load_default(size)
    except OSError:
        return ImageFont.load_default()


def labelled_overlay(r: ImageResult, m: ModelInfo) -> np.ndarray:
    """The overlay with a banner above it: the label cannot be cropped off without cutting the picture's frame."""
    img = r.overlay if r.overlay is not None else r.image
    if img is None:
        raise DicomOutputError(f"{r.name}: no image to capture")
    decision = "decision withheld" if r.withheld else (f"Flag: {r.positive}" if r.flagged else f"{r.negative} (not flagged)")
    return banner(img, f"{m.model_id} | p={r.probability:.3f} | thr={m.threshold:.3f} | {decision}")


def banner(img: np.ndarray, line: str) -> np.ndarray:
    """`img` (grey or RGB) below a black band reading BANNER_TITLE and `line`."""
    from PIL import Image, ImageDraw

    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    size = max(11, w // 34)
    band = int(size * 3.4)
    canvas = Image.new("RGB", (w, h + band), (0, 0, 0))
    canvas.paste(Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)), (0, band))
    draw = ImageDraw.Draw(canvas)
    draw.text((size // 2, size // 3), BANNER_TITLE, fill=(255, 210, 0), font=_font(size))
    draw.text((size // 2, int(size * 1.75)), line, fill=(255, 255, 255), font=_font(max(10, int(size * 0.85))))
    return np.asarray(canvas)


def _sc(pixels: np.ndarray, m: ModelInfo, ref, dicom_input: bool, comments: str | None = None,
        derivation: str = "Grad-CAM heat map of the SecondLook model blended over the input image",
        series_uid: str | None = None, instance: int = 1):
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    common = dict(pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
                  series_instance_uid=series_uid or generate_uid(), series_number=SC_SERIES_NUMBER,
                  sop_instance_uid=generate_uid(), instance_number=instance, manufacturer=MANUFACTURER,
                  patient_orientation=("L", "F"))
    sc = hd.sc.SCImage(study_instance_uid=ref.StudyInstanceUID, patient_id=ref.PatientID, patient_name=ref.PatientName,
                       patient_birth_date=ref.PatientBirthDate, patient_sex=ref.PatientSex or None,
                       accession_number=ref.AccessionNumber, study_id=ref.StudyID, study_date=ref.StudyDate or None,
                       study_time=ref.StudyTime or None, referring_physician_name=ref.ReferringPhysicianName, **common)
    # the overlay's orientation is the source's (scaling keeps directions); unknown for a plain image: empty (type 2)
    orient = ref.get("PatientOrientation") if dicom_input else None
    sc.PatientOrientation = list(orient) if orient else ""
    for kw in ("Laterality", "BodyPartExamined"):
        if dicom_input and ref.get(kw):
            setattr(sc, kw, ref.get(kw))
    sc.SpecificCharacterSet = UTF8
    if not dicom_input and m.modality == "xray":
        sc.BodyPartExamined = "CHEST"
    if "Laterality" not in sc and "BodyPartExamined" not in sc:
        sc.Laterality = ""  # type 2C: unknown body part, so possibly paired; present and empty = unknown
    sc.SeriesDescription = SC_SERIES_DESCRIPTION
    sc.ImageComments = comments or f"{BANNER_TITLE}. Grad-CAM evidence for {m.finding} from model {m.model_id}."
    sc.DerivationDescription = derivation
    sc.BurnedInAnnotation = "NO"  # the banner names the model and the result, no patient
    sc.RecognizableVisualFeatures = "NO"
    sc.LossyImageCompression = "00"
    if dicom_input:
        item = Dataset()
        item.ReferencedSOPClassUID = ref.SOPClassUID
        item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
        sc.SourceImageSequence = [item]
    return sc


# ------------------------------------------------------------------------------------------------ SR

def _comments(r: ImageResult, m: ModelInfo, notes: list[str], sc) -> list[str]:
    if r.withheld:
        decision = f"No decision: withheld ({r.withheld})."
    else:
        side = ">=" if r.flagged else "<"
        decision = (f"Decision at the operating point: {'Flag: ' + r.positive if r.flagged else r.negative + ' (not flagged)'} "
                    f"(probability {r.probability:.8f} {side} threshold {m.threshold:.8f}).")
    v = m.validation
    op_text = (f"Operating point {m.threshold:.4f}" + (" (model card default" + (f", rule {m.threshold_rule}" if m.threshold_rule else "") + ")"
                                                      if m.threshold_is_default else " (changed from the card default by the user)"))
    if v is not None and v.sensitivity is not None:
        op_text += (f": on validation ({v.n} images) sensitivity {fmt_pct(v.sensitivity)} (95% CI {fmt_ci(v.sensitivity_ci)}), "
                    f"specificity {fmt_pct(v.specificity)} (95% CI {fmt_ci(v.specificity_ci)}) at the card threshold.")
    out = [decision, op_text,
           f"Model: {m.model_title} (id {m.model_id}), SHA-256 {m.sha256 or 'unknown'}; task {m.task}: does the image show {m.finding}?",
           f"Overlay image: Secondary Capture SOP Instance UID {sc.SOPInstanceUID} (series {sc.SeriesInstanceUID})."]
    out += [f"Input warning: {w}" for w in r.warnings]
    out += notes
    out.append(DISCLAIMER)
    return out


def _sr(r: ImageResult, m: ModelInfo, ref, notes: list[str], sc, source_for_group):
    import highdicom as hd
    from pydicom.uid import generate_uid

    no_units = _code("1", "UCUM", "no units")
    algorithm, context = _algorithm(m), _context(m)
    finding = _code(*FINDING_CODES.get(m.task, ("SLK100", SCHEME, m.finding.capitalize())))
    value = (_code("373068000", "SCT", "Undetermined") if r.withheld else
             _code("52101004", "SCT", "Present") if r.flagged else _code("2667000", "SCT", "Absent"))
    measurements = [
        # the group's algorithm identification covers its measurements (TID 1501), so none repeats it
        hd.sr.Measurement(name=_private("SLK001", f"Model probability of {m.finding}"), value=float(r.probability),
                          unit=no_units),
        hd.sr.Measurement(name=_private("SLK002", "Operating point threshold"), value=float(m.threshold), unit=no_units),
    ]
    v = m.validation
    if v is not None and v.sensitivity is not None and v.specificity is not None:
        measurements += [
            hd.sr.Measurement(name=_private("SLK003", "Validation sensitivity at card threshold"), value=float(v.sensitivity),
                              unit=no_units),
            hd.sr.Measurement(name=_private("SLK004", "Validation specificity at card threshold"), value=float(v.specificity),
                              unit=no_units),
        ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"SecondLook {m.task} finding"),
        algorithm_id=algorithm, measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=finding, value=value)],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source_for_group)],
    )
    return _report(m, context, [group], _comments(r, m, notes, sc), [source_for_group])


def _algorithm(m: ModelInfo, parameters: list[str] | None = None):
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(name=f"SecondLook {m.model_id}", version=m.sha256 or "unknown",
                                         parameters=parameters or [f"threshold={m.threshold:.8f}"],
                                         manufacturer=MANUFACTURER)


def _context(m: ModelInfo):
    """SecondLook as the device observer: model id, and the model file's SHA-256 as its serial number."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=_device_uid(m.sha256), name="SecondLook",
                                                       manufacturer_name=MANUFACTURER, model_name=m.model_id,
                                                       serial_number=m.sha256 or None)
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def _report(m: ModelInfo, context, groups: list, comments: list[str], evidence: list):
    """The TID 1500 report with `groups` and `comments` as a Comprehensive SR in a new series."""
    import highdicom as hd
    from highdicom.sr import RelationshipTypeValues, TextContentItem
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    procedure = (_code("399208008", "SCT", "Plain chest X-ray") if m.modality == "xray"
                 else _code("363679005", "SCT", "Imaging"))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=procedure,
                                     imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    root = report[0]
    for text in comments:
        root.ContentSequence.append(TextContentItem(name=_code("121106", "DCM", "Comment"), value=text,
                                                    relationship_type=RelationshipTypeValues.CONTAINS))
    sr = hd.sr.ComprehensiveSR(evidence=evidence, content=root, series_instance_uid=generate_uid(),
                               series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
                               manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False)
    sr.SpecificCharacterSet = UTF8
    sr.SeriesDescription = SR_SERIES_DESCRIPTION
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "SecondLook concepts"
    scheme.CodingSchemeResponsibleOrganization = "SecondLook"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def _evidence_dataset(ref):
    """The minimal attributes highdicom reads from evidence (patient/study module + UIDs)."""
    ev = copy.deepcopy(ref)
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
               "StudyTime", "ReferringPhysicianName"):
        if kw not in ev:
            setattr(ev, kw, "")
    return ev


def build(case: Case, r: ImageResult, include_patient: bool = False) -> DicomResult:
    """SC + SR for one scored image of a case."""
    if not r.ok or r.probability is None:
        raise DicomOutputError(f"{r.name}: the image was not scored, so there is no result to write ({r.error}).")
    m = case.model
    ref, notes, dicom_input = _source_header(r, include_patient)
    sc = _sc(labelled_overlay(r, m), m, ref, dicom_input)
    if case.site_profile:
        notes = notes + [f"Site profile: {case.site_profile}."]
    if case.produced_by:
        notes = notes + [f"Produced by {case.produced_by}."]
    ev = _evidence_dataset(ref)
    sr = _sr(r, m, ev, notes, sc, ev if dicom_input else sc)
    return DicomResult(r.name, sc, sr, notes)


def build_case(case: Case, include_patient: bool = False) -> list[DicomResult]:
    """SC + SR for every scored image of a case (unreadable ones are skipped; the PDF reports them), and for a case of
    whole smear fields its SCs and SR (`build_fields`)."""
    out = [build(case, r, include_patient) for r in case.scored]
    return out + ([build_fields(case)] if case.fields is not None else [])


# ------------------------------------------------------------------------------------------------ whole fields

def _field_measurements(pairs: list[tuple[str, str, float, object]]) -> list:
    import highdicom as hd

    return [hd.sr.Measurement(name=_private(code, meaning), value=float(v), unit=unit) for code, meaning, v, unit in pairs]


def _field_comments(case: Case, scs: list, notes: list[str]) -> list[str]:
    fc, m = case.fields, case.model
    out = fc.lines() + fc.method() + [
        f"Model: {m.model_title} (id {m.model_id}), SHA-256 {m.sha256 or 'unknown'}; case {fc.case_id}, "
        f"{len(fc.fields)} whole smear field(s).",
    ]
    out += [f"Field {i}: SHA-256 {f.sha256}" + (f"; outlined picture: Secondary Capture SOP Instance UID {sc.SOPInstanceUID}"
                                                 if sc is not None else "; no cells counted, no picture")
            for i, (f, sc) in enumerate(zip(fc.fields, scs), 1)]
    if case.produced_by:
        out.append(f"Produced by {case.produced_by}.")
    return out + notes + [DISCLAIMER]


def build_fields(case: Case, include_patient: bool = False) -> FieldsDicom:
    """One SC per field with a picture (the outlined field under the banner) and the case's SR, in a new study: a
    field is a plain picture, identified by its SHA-256 only (no patient module: `include_patient` changes nothing)."""
    import highdicom as hd
    from PIL import Image
    from pydicom.uid import generate_uid

    fc, m = case.fields, case.model
    if fc is None:
        raise DicomOutputError("the case has no whole smear fields")
    ref = _new_study()
    _blank(ref, False)
    series = generate_uid()
    scs: list = []
    for i, f in enumerate(fc.fields, 1):
        if not f.picture:
            scs.append(None)
            continue
        px = np.asarray(Image.open(io.BytesIO(f.picture)).convert("RGB"))
        auto = "no cells counted" if f.n_infected is None else f"automatic {f.n_infected} infected (thr {fc.field_threshold:.3f})"
        scs.append(_sc(banner(px, f"{m.model_id} | case {fc.case_id} field {i} of {len(fc.fields)} | {f.n_cells} red cells | {auto}"),
                       m, ref, False, comments=f"{BANNER_TITLE}. Every red cell found in the field outlined by model {m.model_id}.",
                       derivation="Red cells found by SecondLook outlined on the field", series_uid=series, instance=i))
    n = _code("1", "UCUM", "no units")
    pct = _code("%", "UCUM", "percent")
    params = [f"field threshold={fc.field_threshold:.8f}"] + (
        [f"review threshold={fc.review_threshold:.8f}"] if fc.review_threshold is not None else [])
    groups = []
    for i, (f, sc) in enumerate(zip(fc.fields, scs), 1):
        values = [("SLK010", "Red cells counted", f.n_cells, n), ("SLK012", "Cells queued for review", f.n_queued, n),
                  ("SLK013", "Infected cells confirmed by the technician", f.n_confirmed, n)]
        if f.n_infected is not None:
            values.insert(1, ("SLK011", "Infected cells, automatic (unconfirmed)", f.n_infected, n))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"SecondLook field {i}"),
            algorithm_id=_algorithm(m, params), measurements=_field_measurements(values),
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(sc)] if sc is not None else None))
    c, a = fc.confirmed, fc.automatic
    values = [("SLK020", "Red cells counted in the case", c["n_cells"], n),
              ("SLK021", "Cells queued for review in the case", c["n_queued"], n),
              ("SLK022", "Queued cells reviewed", c["n_reviewed"], n)]
    if c["confirmed_by"] and c["parasitemia"] is not None:
        values += [("SLK023", "Infected cells confirmed by the technician", c["n_infected"], n),
                   ("SLK024", "Confirmed parasitemia", c["parasitemia"], pct),
                   ("SLK025", "Confirmed parasitemia, 95% interval lower limit", c["parasitemia_ci"][0], pct),
                   ("SLK026", "Confirmed parasitemia, 95% interval upper limit", c["parasitemia_ci"][1], pct)]
    if a.get("parasitemia") is not None:
        values += [("SLK027", "Infected cells, automatic (unconfirmed)", a["n_infected"], n),
                   ("SLK028", "Parasitemia, automatic (unconfirmed)", a["parasitemia"], pct)]
    finding = _code(*FINDING_CODES.get(m.task, ("SLK100", SCHEME, m.finding.capitalize())))
    value = (_code("52101004", "SCT", "Present") if c["n_infected"] and c["confirmed_by"] else
             _code("2667000", "SCT", "Absent") if c["complete"] and c["confirmed_by"] else
             _code("373068000", "SCT", "Undetermined"))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"SecondLook case {fc.case_id}"),
        algorithm_id=_algorithm(m, params), measurements=_field_measurements(values),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=finding, value=value)]))
    notes = [f"The fields were plain image files, not DICOM: SecondLook generated a new study (Study Instance UID "
             f"{ref.StudyInstanceUID}) for these results; each field is identified by its SHA-256 only."]
    if case.site_profile:
        notes.append(f"Site profile: {case.site_profile}.")
    shown = [sc for sc in scs if sc is not None]
    sr = _report(m, _context(m), groups, _field_comments(case, scs, notes), shown or [ref])
    return FieldsDicom(f"case {fc.case_id}", shown[0] if shown else None, sr, notes, scs=shown)
