"""PDF case report (fpdf2): what the model said about one image or a case of several, and how far to trust it.

Contents: task, model id and checksum, date, site profile; per image the picture and its Grad-CAM overlay, the
probability, the decision at the operating point (or why it was withheld) and input warnings; what the
operating point means (validation sensitivity/specificity with 95% CIs from the model card); a short model-card
summary (training data, test and external results); the decision-support disclaimer on every page.

A case of whole smear fields (`Case.fields`) gets its own section: the technician's confirmed result ("proposed by
SecondLook, confirmed by <user>", or that the case is not yet reviewed) with the automatic count beside it, labelled
as such, the two operating points, a table of the fields and their outlined pictures. `Case.produced_by` names who
made the report.

Patient name and id (and a field case's own slide label) appear only with `include_patient=True` (default: none). Images go in as JPEG at display
size, so a one-image report stays well under 1 MB. Returns bytes; nothing is written to disk here.
"""
from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from core.handoff.case import DISCLAIMER, Case, FieldCase, ImageResult, disagreement, fmt_ci, fmt_pct, fmt_prob, meaning

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
JPEG_QUALITY = 85
IMAGE_MAX_H = 51.0  # mm: a one-image report fits on one A4 page (with the validation/test sentence, "Produced by")
FIELD_PICTURES = 8  # outlined field pictures printed (two a row); every field is in the table
FIELD_PICTURE_H = 52.0  # mm: two fields and the summary fit on the first page
DESCRIPTION_CHARS = 150
RED, GREEN, AMBER, GREY = (176, 32, 32), (24, 110, 48), (150, 90, 0), (90, 90, 90)


class _Doc(FPDF):
    def __init__(self, title: str, unicode: bool = False) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.report_title = title
        self.set_margins(15, 14, 15)
        self.set_auto_page_break(True, margin=16)
        self.set_creator("SecondLook")
        self.set_title(title)
        self.font_family_name = _fonts(self) if unicode else "Helvetica"

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(self.font_family_name, "", 7.5)
        self.set_text_color(*GREY)
        self.cell(0, 4, "SecondLook · decision support only, not a diagnostic device · a clinician makes every decision",
                  align="L")
        self.cell(0, 4, f"page {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0, 0, 0)


def _fonts(pdf: FPDF) -> str:
    """DejaVu (any script) when the Debian font is there, else the core Helvetica (Latin-1 only).

    Embedding a TrueType font (parse + subset) costs more than the rest of a one-image report, so it is used only
    when some text of the case is not Latin-1 (`_needs_unicode`)."""
    reg, bold = FONT_DIR / "DejaVuSans.ttf", FONT_DIR / "DejaVuSans-Bold.ttf"
    if reg.is_file() and bold.is_file():
        pdf.add_font("DejaVu", "", str(reg))
        pdf.add_font("DejaVu", "B", str(bold))
        return "DejaVu"
    return "Helvetica"


_ASCII = str.maketrans({"≥": ">=", "≤": "<=", "–": "-", "—": "-", "…": "...", "‘": "'", "’": "'", "“": '"', "”": '"'})


def _latin1(s: str) -> str:
    return s.translate(_ASCII)


def _text(pdf: _Doc, s: str) -> str:
    if pdf.font_family_name != "Helvetica":
        return s
    return _latin1(s).encode("latin-1", "replace").decode("latin-1")


def _needs_unicode(case: Case, include_patient: bool) -> bool:
    """True when a user-supplied text (file name, note, warning, site profile, patient name) is not Latin-1."""
    texts = [case.site_profile or "", case.model.description, case.model.model_title, case.produced_by or ""]
    if case.fields is not None:
        texts += [f.name for f in case.fields.fields] + case.fields.lines() + [case.fields.label if include_patient else ""]
    for r in case.images:
        texts += [r.name, r.error or "", r.withheld or "", *r.warnings, *r.notes]
        if include_patient:
            texts += [str(v) for v in r.phi.values()]
    try:
        _latin1("\n".join(texts)).encode("latin-1")
        return False
    except UnicodeEncodeError:
        return True


def _jpeg(img: np.ndarray) -> io.BytesIO:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=JPEG_QUALITY)
    buf.seek(0)
    return buf


def _h(pdf: _Doc, text: str, size: float = 12.5, space: float = 1.8) -> None:
    pdf.ln(space)
    pdf.set_font(pdf.font_family_name, "B", size)
    pdf.multi_cell(0, size * 0.5, _text(pdf, text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.font_family_name, "", 9.5)
    pdf.ln(0.8)


def _para(pdf: _Doc, text: str, size: float = 9.5, colour=(0, 0, 0), bold: bool = False, h: float = 4.6) -> None:
    pdf.set_font(pdf.font_family_name, "B" if bold else "", size)
    pdf.set_text_color(*colour)
    pdf.multi_cell(0, h, _text(pdf, text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.set_font(pdf.font_family_name, "", 9.5)


def _kv(pdf: _Doc, rows: list[tuple[str, str]], key_w: float = 42) -> None:
    for k, v in rows:
        pdf.set_font(pdf.font_family_name, "", 9)
        lines = pdf.multi_cell(pdf.epw - key_w, 4.3, _text(pdf, v), dry_run=True, output="LINES")
        if pdf.get_y() + 4.3 * len(lines) > pdf.page_break_trigger:
            pdf.add_page()  # keep a key with its value
        pdf.set_font(pdf.font_family_name, "B", 9)
        y = pdf.get_y()
        pdf.cell(key_w, 4.3, _text(pdf, k))
        pdf.set_font(pdf.font_family_name, "", 9)
        pdf.set_xy(pdf.l_margin + key_w, y)
        pdf.multi_cell(0, 4.3, _text(pdf, v), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _box(pdf: _Doc, text: str, colour, fill=(252, 246, 232), bold_first: str = "") -> None:
    pdf.set_fill_color(*fill)
    pdf.set_draw_color(*colour)
    pdf.set_text_color(*colour)
    pdf.set_font(pdf.font_family_name, "", 9)
    body = (f"**{bold_first}** " if bold_first else "") + text
    pdf.multi_cell(0, 4.6, _text(pdf, body), border=1, fill=True, markdown=True, padding=1.6, align="L",
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_fill_color(255, 255, 255)
    pdf.ln(1.5)


def _decision_text(r: ImageResult, finding: str) -> tuple[str, tuple[int, int, int]]:
    if r.withheld:
        return "No decision: withheld", AMBER
    if r.flagged:
        return f"Flag: {r.positive}", RED
    return f"{r.negative} (not flagged)", GREEN


def _image_pair(pdf: _Doc, r: ImageResult, finding: str) -> None:
    gap = 6.0
    w = (pdf.epw - gap) / 2
    h_img, w_img = r.image.shape[:2]
    h = min(w * h_img / w_img, IMAGE_MAX_H)
    w_each = h * w_img / h_img
    y = pdf.get_y()
    x0 = pdf.l_margin + (w - w_each) / 2
    pdf.image(_jpeg(r.image), x=x0, y=y, w=w_each, h=h)
    if r.overlay is not None:
        pdf.image(_jpeg(r.overlay), x=x0 + w + gap, y=y, w=w_each, h=h)
    pdf.set_y(y + h + 1)
    pdf.set_font(pdf.font_family_name, "", 7.8)
    pdf.set_text_color(*GREY)
    pdf.cell(w + gap, 3.6, _text(pdf, "Image as decoded (display size)"), align="C")
    pdf.cell(w, 3.6, _text(pdf, "Grad-CAM overlay" if r.overlay is not None else "(no overlay)"), align="C",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.multi_cell(0, 3.4, _text(pdf, f"Grad-CAM: warm colours mark where the model found evidence for {finding}. "
                                     "It is shown even when the call is negative, and it is not an outline of the lesion."),
                   align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.ln(1.5)


def _image_section(pdf: _Doc, case: Case, r: ImageResult, index: int, n: int) -> None:
    m = case.model
    if r.ok and pdf.get_y() + IMAGE_MAX_H + 30 > pdf.page_break_trigger:
        pdf.add_page()  # keep the heading with its pictures
    _h(pdf, f"Image {index} of {n}: {r.name}" if n > 1 else f"Image: {r.name}", size=11.5)
    if not r.ok:
        _box(pdf, r.error or "could not be read", RED, fill=(252, 236, 236), bold_first="Not scored.")
        return
    _image_pair(pdf, r, m.finding)
    text, colour = _decision_text(r, m.finding)
    pdf.set_font(pdf.font_family_name, "B", 10.5)
    shown = "not given (the decision is withheld)" if r.withheld else fmt_prob(r.probability)
    pdf.cell(0, 5.5, _text(pdf, f"Probability of {m.finding}: {shown}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*colour)
    pdf.cell(0, 5.5, _text(pdf, f"Decision at the operating point: {text}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    if r.withheld:
        _box(pdf, r.withheld, AMBER, bold_first="Decision withheld:")
    else:
        side = "at or above" if r.flagged else "below"
        _para(pdf, f"The probability {fmt_prob(r.probability)} (exact output {r.probability:.8f}) is {side} the "
                   f"operating-point threshold {m.threshold:.4f}, so the model "
                   + (f"flags this image for {m.finding}." if r.flagged else "does not flag this image."), size=9)
    for w in r.warnings:
        _box(pdf, w, AMBER, bold_first="Input warning:")
    if r.notes:
        _para(pdf, "How the file was read: " + " ".join(r.notes), size=8, colour=GREY, h=3.8)


def _summary_table(pdf: _Doc, case: Case) -> None:
    m = case.model
    _h(pdf, f"Case summary: {len(case.images)} images, "
            f"{sum(1 for r in case.scored if r.flagged)} flagged", size=11.5)
    pdf.set_font(pdf.font_family_name, "", 8.5)
    with pdf.table(col_widths=(8, 78, 28, 66), text_align=("RIGHT", "LEFT", "RIGHT", "LEFT"), line_height=4.8,
                   first_row_as_headings=True) as table:
        table.row(["#", "File", "Probability", "Decision"])
        for i, r in enumerate(case.images, 1):
            if not r.ok:
                row = [str(i), r.name, "—", "not read (see below)"]
            else:
                row = [str(i), r.name, "—" if r.withheld else fmt_prob(r.probability), _decision_text(r, m.finding)[0]]
            table.row([_text(pdf, c) for c in row])
    pdf.ln(2)


def _operating_point(pdf: _Doc, case: Case) -> None:
    m = case.model
    _h(pdf, "What the operating point means", size=11.5)
    rule = f" (card rule: {m.threshold_rule})" if m.threshold_rule else ""
    state = "the model card's validated default" if m.threshold_is_default else "changed from the card's default by the user"
    _para(pdf, f"Images with a probability of {m.threshold:.4f} or more are flagged for {m.finding}; this threshold is "
               f"{state}{rule}. {meaning(m)}", size=9)
    warn = disagreement(m)
    if warn:  # one line more, not a box: a one-image report stays on one page
        _para(pdf, f"Validation and test disagree: {warn[0].lower()}{warn[1:]}", size=8.5, colour=AMBER, bold=True, h=4.0)
    v, t = m.validation, m.test
    rows = []
    for label, s in (("Validation", v), ("Held-out test", t)):
        if s is not None:
            rows.append([label, str(s.n or "—"), f"{fmt_pct(s.sensitivity)} ({fmt_ci(s.sensitivity_ci)})",
                         f"{fmt_pct(s.specificity)} ({fmt_ci(s.specificity_ci)})",
                         f"{s.auc:.3f}" if s.auc is not None else "—"])
    if rows:
        pdf.ln(1)
        pdf.set_font(pdf.font_family_name, "", 8.5)
        with pdf.table(col_widths=(30, 16, 50, 50, 18), text_align=("LEFT", "RIGHT", "LEFT", "LEFT", "RIGHT"),
                       line_height=4.8) as table:
            table.row(["Card threshold", "Images", "Sensitivity (95% CI)", "Specificity (95% CI)", "AUC"])
            for row in rows:
                table.row([_text(pdf, c) for c in row])
        pdf.ln(1)
        _para(pdf, "Sensitivity: share of images WITH the finding that the model flags. Specificity: share WITHOUT it "
                   "that the model clears. Intervals are 95% bootstrap intervals from the model card.", size=7.8,
              colour=GREY, h=3.6)


def _model_card(pdf: _Doc, case: Case) -> None:
    m = case.model
    _h(pdf, "Model card summary", size=11.5)
    d = m.data
    data = []
    if d.get("n_train") is not None:
        data.append(f"{d['n_train']} training and {d.get('n_val', '?')} validation images")
    if d.get("validation"):
        data.append(f"validation split: {d['validation']}")
    rows = [("Model", f"{m.model_title} ({m.model_id})"), ("What it is", _shorten(m.description) or "—")]
    if data:
        rows.append(("Training data", "; ".join(data)))
    if m.test is not None:
        rows.append(("Test results", f"{m.test.n} held-out test images: AUC {m.test.auc:.3f}"
                     + (f" (95% CI {m.test.auc_ci[0]:.3f}–{m.test.auc_ci[1]:.3f})" if m.test.auc_ci else "")
                     + f", sensitivity {fmt_pct(m.test.sensitivity)}, specificity {fmt_pct(m.test.specificity)}"
                     if m.test.auc is not None else "see the model card"))
    if m.external:
        from core.cards.external import external_summary

        rows.append(("External results", external_summary(m.external)))
    else:
        rows.append(("External results", "none on the model card: the model has not been tested on data from another site."))
    _kv(pdf, rows, key_w=32)


def _field_pictures(pdf: _Doc, fc: FieldCase) -> None:
    """The outlined fields, two a row, each named with its counts."""
    from PIL import Image

    shown = [f for f in fc.fields if f.picture][:FIELD_PICTURES]
    gap, w = 6.0, (pdf.epw - 6.0) / 2
    for k in range(0, len(shown), 2):
        pair = shown[k:k + 2]
        h = min(w * 0.75, FIELD_PICTURE_H)
        if pdf.get_y() + h + 6 > pdf.page_break_trigger:
            pdf.add_page()
        y = pdf.get_y()
        for j, f in enumerate(pair):
            with Image.open(io.BytesIO(f.picture)) as im:
                iw, ih = im.size
            fh = min(h, w * ih / iw)
            pdf.image(io.BytesIO(f.picture), x=pdf.l_margin + j * (w + gap), y=y, w=fh * iw / ih, h=fh)
            pdf.set_xy(pdf.l_margin + j * (w + gap), y + fh + 0.5)
            pdf.set_font(pdf.font_family_name, "", 7.5)
            pdf.set_text_color(*GREY)
            pdf.cell(w, 3.4, _text(pdf, f"{f.name}: {f.n_cells} red cells, {f.n_confirmed} confirmed infected"))
        pdf.set_text_color(0, 0, 0)
        pdf.set_y(y + h + 5)
    more = len([f for f in fc.fields if f.picture]) - len(shown)
    _para(pdf, "Outlined pictures: every found red cell outlined, numbered as in the review; green below half the field "
               "operating point, orange to red as the probability reaches it, thick red = counted infected by the model."
               + (f" {more} more field(s) are in the table only." if more > 0 else ""), size=7.8, colour=GREY, h=3.6)


def _fields_section(pdf: _Doc, case: Case, include_patient: bool) -> None:
    """The technician's confirmed result first, the automatic count beside it, then how each was made."""
    fc = case.fields
    c = fc.confirmed
    _h(pdf, f"Whole smear fields: case {fc.case_id}" + (f" ({fc.label})" if include_patient and fc.label else ""), size=11.5)
    lines = fc.lines()
    auto = [ln for ln in lines if ln.startswith("Automatic")]
    main = [ln for ln in lines if ln not in auto]
    colour = GREEN if c["complete"] and c["confirmed_by"] else AMBER
    _box(pdf, " ".join(main[1:]), colour, fill=(236, 246, 238) if colour == GREEN else (252, 246, 232),
         bold_first=main[0])
    for ln in auto:
        _para(pdf, ln, size=9, colour=GREY)
    note, review, auto_rule = fc.method()
    _para(pdf, note, size=7.8, colour=GREY, h=3.6)
    _para(pdf, f"{review} {auto_rule}", size=9)
    pdf.ln(1)
    pdf.set_font(pdf.font_family_name, "", 8.5)
    with pdf.table(col_widths=(8, 74, 22, 22, 28, 26), text_align=("RIGHT", "LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
                   line_height=4.6, first_row_as_headings=True) as table:
        table.row(["#", "Field", "Red cells", "Queued", "Confirmed infected", "Automatic infected"])
        for i, f in enumerate(fc.fields, 1):
            auto_n = "—" if f.n_infected is None else str(f.n_infected)
            table.row([_text(pdf, v) for v in (str(i), f.name + (f" ({f.message})" if f.message else ""), str(f.n_cells),
                                               str(f.n_queued), str(f.n_confirmed), auto_n)])
    pdf.ln(2)
    if fc.automatic.get("advice"):
        _box(pdf, fc.automatic["advice"], AMBER, bold_first="Too few cells:")
    _field_pictures(pdf, fc)


def _person(pn: str | None) -> str:
    """DICOM person name 'Family^Given^Middle' as 'Family, Given Middle'."""
    if not pn:
        return "—"
    parts = [p for p in str(pn).split("^") if p]
    return parts[0] + (", " + " ".join(parts[1:]) if len(parts) > 1 else "") if parts else "—"


def _shorten(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """The card's description cut at a word boundary (the full card ships with the model)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: text.rfind(" ", 0, limit)].rstrip(",;:") + " … (full text in the model card)"


def _point(case: Case) -> str:
    m, fc = case.model, case.fields
    if fc is None:
        return f"threshold {m.threshold:.4f}" + (" (card default)" if m.threshold_is_default else " (changed by the user)")
    review = f"review queue from {fc.review_threshold:.4f}" if fc.review_threshold is not None else "no review queue"
    return f"{review}; automatic count at the field operating point {fc.field_threshold:.4f}"


def build_pdf(case: Case, include_patient: bool = False, title: str = "SecondLook case report") -> bytes:
    """The report as PDF bytes. `include_patient` adds the DICOM patient fields of the first DICOM image."""
    m = case.model
    pdf = _Doc(title, unicode=_needs_unicode(case, include_patient))
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font(pdf.font_family_name, "B", 17)
    pdf.cell(0, 8, _text(pdf, title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    _box(pdf, DISCLAIMER, RED, fill=(252, 236, 236), bold_first="Decision support only.")
    created: datetime = case.created
    rows = [
        ("Task", f"{m.task_title}: does the image show {m.finding}?" if case.fields is None
         else f"{m.task_title}: which red cells of the whole smear fields are infected?"),
        ("Model", f"{m.model_title} (id {m.model_id})"),
        ("Model SHA-256", m.sha256 or "unknown (no checksum on the card)"),
        ("Operating point", _point(case)),
        ("Report created", created.strftime("%Y-%m-%d %H:%M UTC")),
        ("Site profile", case.site_profile or "none"),
    ]
    if case.produced_by:
        rows.append(("Produced by", case.produced_by))
    if case.fields is not None:
        rows.append(("Case", f"{case.fields.case_id}: {len(case.fields.fields)} whole smear field(s)"))
    if case.images or case.fields is None:
        rows.append(("Images", str(len(case.images))))
    if include_patient:
        phi = next((r.phi for r in case.images if r.phi), {})
        rows += [("Patient", f"{_person(phi.get('PatientName'))} · ID {phi.get('PatientID') or '—'} · born "
                             f"{phi.get('PatientBirthDate') or '—'} · sex {phi.get('PatientSex') or '—'}"),
                 ("Study", f"accession {phi.get('AccessionNumber') or '—'} · date {phi.get('StudyDate') or '—'}")]
    _kv(pdf, rows)
    if len(case.images) > 1:
        _summary_table(pdf, case)
    if case.fields is not None:
        _fields_section(pdf, case, include_patient)
    for i, r in enumerate(case.images, 1):
        _image_section(pdf, case, r, i, len(case.images))
    if case.images:  # a field case states its own operating points (the card's are a single cell crop's)
        _operating_point(pdf, case)
    _model_card(pdf, case)
    return bytes(pdf.output())
