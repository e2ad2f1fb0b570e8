"""Model integrity: a model file that does not match its card's sha256 is refused (tiny model in a temp dir)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.config import MODELS_DIR
from core.models.store import (
    ModelIntegrityError,
    bundled_models,
    load_model,
    model_dir,
    model_path,
    read_card,
    write_card,
)
from tests.modelgen import install as _install
from tests.modelgen import tiny_model

TASK, MODEL_ID = "malaria", "seed_base_cnn"  # any registered id; the file itself is a tiny stand-in


def install(root, task: str = TASK, model_id: str = MODEL_ID, model=None) -> None:
    _install(root, task, model_id, model)


@pytest.fixture
def root(tmp_path):
    install(tmp_path)
    return tmp_path


def test_default_root_is_unchanged():
    assert model_dir(TASK, MODEL_ID) == MODELS_DIR / TASK / MODEL_ID
    assert model_path(TASK, MODEL_ID) == MODELS_DIR / TASK / MODEL_ID / "model.keras"


def test_verified_model_loads_from_root(root):
    assert bundled_models(TASK, root) == [MODEL_ID]
    model = load_model(TASK, MODEL_ID, root=root)
    assert model.get_layer("logit") is not None
    assert np.asarray(model(np.zeros((1, 32, 32, 3), np.float32))).shape == (1, 1)


def test_tampered_copy_is_refused(root, tmp_path):
    copy_root = tmp_path / "copy"
    shutil.copytree(model_dir(TASK, MODEL_ID, root), model_dir(TASK, MODEL_ID, copy_root))
    load_model(TASK, MODEL_ID, root=copy_root)  # an exact copy is fine
    path = model_path(TASK, MODEL_ID, copy_root)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match its card"):
        load_model(TASK, MODEL_ID, root=copy_root)
    load_model(TASK, MODEL_ID, root=root)  # the original is untouched


def test_swapped_model_file_is_refused(root, tmp_path):
    other = tmp_path / "other"
    install(other, model=tiny_model(width=5))
    shutil.copy(model_path(TASK, MODEL_ID, other), model_path(TASK, MODEL_ID, root))  # a valid Keras file, wrong one
    with pytest.raises(ModelIntegrityError):
        load_model(TASK, MODEL_ID, root=root)


def test_card_without_checksum_is_refused(root):
    card = read_card(TASK, MODEL_ID, root)
    del card["sha256"]
    write_card(TASK, MODEL_ID, card, root)
    with pytest.raises(ModelIntegrityError, match="no sha256"):
        load_model(TASK, MODEL_ID, root=root)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(TASK, MODEL_ID, root=tmp_path)


def test_saved_for_inference_without_optimizer_state(tmp_path):
    """A trained, compiled model is saved with its weights only: same scores, no optimizer moments in the file."""
    import io
    import zipfile

    import h5py
    import keras

    from core.models.store import save_for_inference
    from tests.modelgen import bn_model

    def stored_groups(path):
        return set(h5py.File(io.BytesIO(zipfile.ZipFile(path).read("model.weights.h5"))).keys())

    trained = bn_model((16, 16, 1))
    trained.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="binary_crossentropy")
    trained.fit(np.random.default_rng(0).random((8, 16, 16, 1)), np.array([0, 1] * 4, np.float32), verbose=0)
    save_for_inference(trained, tmp_path / "trained.keras")
    assert "optimizer" not in stored_groups(tmp_path / "trained.keras"), stored_groups(tmp_path / "trained.keras")
    again = keras.saving.load_model(tmp_path / "trained.keras", safe_mode=True, compile=False)
    x = np.random.default_rng(1).random((3, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(again(x, training=False)), np.asarray(trained(x, training=False)))
