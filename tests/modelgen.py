"""Tiny untrained Keras models in the project's shape (Dense `logit` -> sigmoid `probability`), saved in temp dirs."""
from __future__ import annotations

from core.models.store import model_path, sha256_file, write_card


def tiny_model(input_shape=(32, 32, 3), width: int = 4, seed: int = 0):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="image")
    x = layers.Conv2D(4, 3, activation="relu")(inp)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(width, activation="tanh")(x)
    logit = layers.Dense(1, name="logit")(x)
    return keras.Model(inp, layers.Activation("sigmoid", name="probability")(logit), name="tiny")


def install(root, task: str, model_id: str, model=None) -> None:
    """Save a model and a card with its sha256 under root/<task>/<model_id>/, as core.train does."""
    model = model or tiny_model()
    path = model_path(task, model_id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    write_card(task, model_id, {"task": task, "model_id": model_id, "sha256": sha256_file(path), "threshold": 0.5}, root)


def bn_model(input_shape=(32, 32, 3), seed: int = 0):
    """Conv -> BatchNorm -> ReLU blocks (the SecondLook pattern) with non-trivial BatchNorm statistics, untrained."""
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="image")
    x = inp
    for f in (6, 8):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    logit = layers.Dense(1, name="logit")(x)
    model = keras.Model(inp, layers.Activation("sigmoid", name="probability")(logit), name="bn_tiny")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.3, n), rng.uniform(0.2, 3, n)])
    return model
