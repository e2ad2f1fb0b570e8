"""The card's patient-level blocks: every headline metric with its cluster-bootstrap CI over patients.

Needs no model: only the stored val/test predictions and the task manifest (for each image's patient). Written as
`test_patient_level` and `validation_patient_level`, at the card's threshold, beside the image-level `test`
block (DeLong / Wilson), which stays as the labelled image-level numbers.
"""
from __future__ import annotations

from pathlib import Path

from core.data.manifests import manifest_path
from core.evaluation import intervals
from core.evaluation.patients import prediction_groups, unit_column, unit_text
from core.models.store import read_card, read_predictions, write_card

BLOCKS = (("test", "test_patient_level"), ("val", "validation_patient_level"))


def patient_level_blocks(task: str, model_id: str, root: str | Path | None = None,
                         n_boot: int = intervals.N_BOOT, seed: int = intervals.SEED) -> dict[str, dict]:
    """{"test_patient_level": ..., "validation_patient_level": ...} from the predictions CSVs and the manifest."""
    card = read_card(task, model_id, root)
    if "threshold" not in card:
        raise ValueError(f"{task}/{model_id}: the card has no threshold yet (train the model first)")
    out = {}
    for which, key in BLOCKS:
        df = read_predictions(task, model_id, which, root)
        groups = prediction_groups(task, df["path"].tolist())
        if groups is None:
            raise FileNotFoundError(
                f"{task}: patient ids come from {manifest_path(task)} (column {unit_column(task)!r}, every "
                f"{which}_predictions.csv path listed); set SECONDLOOK_DATA to the folder holding {task}/manifest.csv")
        out[key] = intervals.patient_level_summary(df["y"].to_numpy(), df["score"].to_numpy(), groups,
                                                   float(card["threshold"]), unit=unit_text(task), n_boot=n_boot, seed=seed)
    return out


def add_patient_level(task: str, model_id: str, root: str | Path | None = None) -> dict:
    """Compute the blocks and store them on the card; returns them."""
    blocks = patient_level_blocks(task, model_id, root)
    card = read_card(task, model_id, root)
    card.update(blocks)
    write_card(task, model_id, card, root)
    return blocks
