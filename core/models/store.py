"""Bundled models on disk: `models/<task>/<id>/{model.keras, card.json, val_predictions.csv, test_predictions.csv}`.

Every function takes an optional `root` (default `MODELS_DIR`) so tests can work on a model tree in a temporary
directory without touching the bundled models."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import MODELS_DIR
from core.registry import get_model_spec

# A score re-computed here vs one stored in a CSV (written on the machine the model was evaluated on): float32
# kernels take other paths on other CPUs (seen: an AMD EPYC vs the machine that wrote the CSVs, up to 1.3e-6 on
# a seed model with wide Dense layers). Bitwise equality is tested only within one machine (tests/test_inference.py).
SCORE_TOLERANCE = 1e-5
SITE_CHECK = "second_site_check"  # the card key written by core.training.site_check, read by selection


class ModelIntegrityError(RuntimeError):
    """The model file on disk is not the one its card describes."""


def model_dir(task: str, model_id: str, root: str | Path | None = None) -> Path:
    return Path(root if root is not None else MODELS_DIR) / task / model_id


def model_path(task: str, model_id: str, root: str | Path | None = None) -> Path:
    return model_dir(task, model_id, root) / "model.keras"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(task: str, model_id: str, root: str | Path | None = None) -> dict:
    path = model_dir(task, model_id, root) / "card.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_card(task: str, model_id: str, card: dict, root: str | Path | None = None) -> None:
    write_card_file(model_dir(task, model_id, root) / "card.json", card)


def write_card_file(path: str | Path, card: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def bundled_models(task: str, root: str | Path | None = None) -> list[str]:
    """Model ids of the task that have a model file and a card, in registry order."""
    from core.registry import get_task

    return [m.id for m in get_task(task).models if model_path(task, m.id, root).is_file() and read_card(task, m.id, root)]


def load_model(task: str, model_id: str, verify: bool = True, root: str | Path | None = None):
    """Load a bundled model in Keras safe mode after checking its sha256 against the card."""
    import keras

    get_model_spec(task, model_id)  # unknown ids fail with the list of known ones
    path = model_path(task, model_id, root)
    if not path.is_file():
        raise FileNotFoundError(f"No trained model file at {path}. Train it with: python -m core.train --task {task} --model {model_id}")
    if verify:
        want = read_card(task, model_id, root).get("sha256")
        if not want:
            raise ModelIntegrityError(f"{task}/{model_id}: the model card has no sha256, so the file cannot be verified.")
        have = sha256_file(path)
        if have != want:
            raise ModelIntegrityError(
                f"{task}/{model_id}: model file checksum {have[:12]}… does not match its card ({want[:12]}…). "
                "The file was changed or corrupted; SecondLook refuses to use it."
            )
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def write_predictions(path: str | Path, paths: list[str], labels: list[str], scores: np.ndarray) -> None:
    pd.DataFrame({"path": paths, "label": labels, "score": np.asarray(scores, np.float64)}).to_csv(
        path, index=False, float_format="%.8f"
    )


def read_predictions(task: str, model_id: str, which: str, root: str | Path | None = None) -> pd.DataFrame:
    """`which` is 'val' or 'test'; columns path, label, score (+ y as 0/1)."""
    from core.registry import get_task

    df = pd.read_csv(model_dir(task, model_id, root) / f"{which}_predictions.csv", dtype={"path": str, "label": str})
    df["y"] = (df["label"] == get_task(task).positive).astype(np.int8)
    return df


def save_for_inference(model, path: str | Path) -> None:
    """Save weights and graph only: optimizer state would double or triple the file and is never needed."""

    if getattr(model, "optimizer", None) is not None:
        # Rebuilt from the bare layer config. keras.models.clone_model and model_from_json both come back compiled
        # with the original's optimizer (Keras 3.15), whose moment estimates would then be saved too (3x the file).
        clean = type(model).from_config(model.get_config())
        clean.set_weights(model.get_weights())
        model = clean
    model.save(path)


def resave_without_optimizer(task: str, model_id: str) -> tuple[int, int]:
    """Rewrite a bundled model file without optimizer state; same weights, so same scores. Updates the card."""
    import keras

    path = model_path(task, model_id)
    before = path.stat().st_size
    model = load_model(task, model_id)
    x = np.random.default_rng(0).random((4, *model.inputs[0].shape[1:]), dtype=np.float32)
    expected = np.asarray(model(x, training=False))
    save_for_inference(model, path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(np.asarray(again(x, training=False)), expected)
    card = read_card(task, model_id)
    card["sha256"], card["file_bytes"] = sha256_file(path), path.stat().st_size
    write_card(task, model_id, card)
    return before, card["file_bytes"]


if __name__ == "__main__":
    import sys

    for tm in sys.argv[1:]:
        t, m = tm.split("/")
        print(tm, *resave_without_optimizer(t, m))
