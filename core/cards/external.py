"""External results beside the internal ones: the card's `external` block, one entry per external set.

What counts as external differs by task, and each set says what it is:
  * effusion: the test images with verified NIH names and real patient ids (`patient_id_known`), from the stored
    test predictions: the only effusion images whose labels and patients can be checked (SOURCE.md);
  * malaria: every annotated cell of the `malaria_fields` test session S1 (another lab, species, stain and
    microscope), scored by the model; intervals resample fields, since cells of one field share slide and focus;
  * pneumonia: no external set exists here, and the card says so.
All at the card's (shipped) operating point, with cluster-bootstrap intervals (`intervals.patient_level_summary`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.evaluation import intervals
from core.models.store import read_card, read_predictions, write_card

EFFUSION_SET = "verified NIH test images (real patient ids)"
MALARIA_SET = "malaria_fields test session S1 cells (IML lab, P. vivax)"
SHORT = {EFFUSION_SET: "verified NIH subset", MALARIA_SET: "IML field cells"}  # for a table cell
NO_SET = ("no external set exists here: every pediatric chest X-ray on this machine comes from the one Guangzhou "
          "source the model was trained on, so its test numbers say nothing about another hospital")


def _effusion(model_id: str, root=None) -> dict:
    from core.data import load_task_manifest

    card = read_card("effusion", model_id, root)
    df = read_predictions("effusion", model_id, "test", root)
    man = load_task_manifest("effusion").set_index("path")
    known = man.loc[df["path"], "patient_id_known"].astype(str).str.lower().eq("true").to_numpy()
    groups = man.loc[df["path"], "patient_id"].astype(str).to_numpy()[known]
    return intervals.patient_level_summary(df["y"].to_numpy()[known], df["score"].to_numpy()[known], groups,
                                           float(card["threshold"]), unit="patient_id")


def _malaria(model_id: str, root=None, model=None) -> dict:
    from core.models.store import load_model
    from core.site.build import score_cases
    from core.site.fields import field_cases

    from core.registry import get_model_spec

    card = read_card("malaria", model_id, root)
    spec_in = get_model_spec("malaria", model_id).input
    cases = field_cases(("S1",), spec_in.field_cut, spec_in.field_stain)
    scores = score_cases(model if model is not None else load_model("malaria", model_id), "malaria", model_id, cases)
    return intervals.patient_level_summary(np.asarray(cases.y), scores, cases.groups, float(card["threshold"]),
                                           unit="field")


def external_block(task: str, model_id: str, root: str | Path | None = None, model=None) -> dict:
    """{set name: metrics with intervals} for the card (or {"none": why} where no external set exists)."""
    if task == "effusion":
        return {EFFUSION_SET: _effusion(model_id, root)}
    if task == "malaria":
        return {MALARIA_SET: _malaria(model_id, root, model)}
    return {"none": NO_SET}


def add_external(task: str, model_id: str, root: str | Path | None = None, model=None) -> dict:
    block = external_block(task, model_id, root, model)
    card = read_card(task, model_id, root)
    card["external"] = block
    write_card(task, model_id, card, root)
    return block


def add_external_brief(task: str, model_id: str) -> dict:
    """`add_external`, with only the headline numbers of each set (what `core.evaluate --external` prints)."""
    return {k: ({m: v[m] for m in ("n_images", "auc", "sensitivity", "specificity")} if isinstance(v, dict) else v)
            for k, v in add_external(task, model_id).items()}


def external_summary(ext: dict | None) -> str:
    """A card's external results in one line: the set, AUC and the rates at the shipped point (or why none)."""
    if not ext:
        return "not measured"
    if "none" in ext:
        return "none: " + ext["none"].split(":")[0]
    what, e = next(iter(ext.items()))
    return (f"{SHORT.get(what, what)}: AUC {e['auc']:.3f} · sens {e['sensitivity']:.0%} · spec {e['specificity']:.0%} "
            f"(n={e['n_images']:,})")
