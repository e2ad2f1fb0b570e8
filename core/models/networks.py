"""Architectures. Every network ends in a `logit` Dense(1) followed by a `probability` sigmoid, so
Grad-CAM can take gradients of the logit and the app can read the probability."""
from __future__ import annotations

import re

import keras
from keras import layers, regularizers

from core.registry import ModelSpec


def _head(x, name: str, inputs) -> keras.Model:
    logit = layers.Dense(1, name="logit")(x)
    prob = layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(inputs, prob, name=name)


def _input(spec: ModelSpec):
    return keras.Input((spec.input.size, spec.input.size, spec.input.channels), name="image")


def seed_effusion_lenet(spec: ModelSpec) -> keras.Model:
    inp = _input(spec)
    x = inp
    for f in (32, 64, 128, 128):
        x = layers.Conv2D(f, 3, padding="valid", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(x)
    return _head(x, spec.id, inp)


def seed_effusion_alexnet(spec: ModelSpec) -> keras.Model:
    inp = _input(spec)
    x = layers.Conv2D(64, 7, strides=2, padding="same", activation="relu")(inp)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    for f in (256, 256, 128):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(x)
    return _head(x, spec.id, inp)


def seed_pneumonia_reduced_nodes(spec: ModelSpec) -> keras.Model:
    inp = _input(spec)
    x = inp
    for f in (50, 40, 35, 32):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    for units in (32, 16, 5):
        x = layers.Dense(units, activation="relu", kernel_regularizer=regularizers.l2(0.005))(x)
    return _head(x, spec.id, inp)


def seed_pneumonia_baseline_adam(spec: ModelSpec) -> keras.Model:
    inp = _input(spec)
    x = inp
    for f in (32, 64, 128):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    return _head(x, spec.id, inp)


def seed_malaria_base(spec: ModelSpec) -> keras.Model:
    inp = _input(spec)
    x = layers.Conv2D(32, 3, activation="relu")(inp)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return _head(x, spec.id, inp)


def _squeeze_excite(x, ratio: int = 8):
    c = x.shape[-1]
    s = layers.GlobalAveragePooling2D()(x)
    s = layers.Dense(max(c // ratio, 4), activation="relu")(s)
    s = layers.Dense(c, activation="sigmoid")(s)
    s = layers.Reshape((1, 1, c))(s)
    return layers.Multiply()([x, s])


def seed_malaria_model3(spec: ModelSpec) -> keras.Model:
    inp = _input(spec)
    x = inp
    for f, act in ((32, "leaky"), (64, "leaky"), (128, "swish")):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(negative_slope=0.1)(x) if act == "leaky" else layers.Activation("swish")(x)
        x = layers.MaxPooling2D(2)(x)
    x = _squeeze_excite(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return _head(x, spec.id, inp)


def secondlook_cnn(spec: ModelSpec, filters: tuple[int, ...], dropout: float = 0.3, stem: int = 0) -> keras.Model:
    """VGG-style BN blocks + global average pooling: few parameters, stable from scratch, clean Grad-CAM.

    `stem` > 0 puts a stride-2 5x5 convolution with that many filters first, so a full-resolution input costs
    little more than a half-resolution one while the first layer still sees every pixel.
    """
    inp = _input(spec)
    x = inp
    if stem:
        x = layers.Conv2D(stem, 5, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    for f in filters:
        for _ in range(2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    return _head(x, spec.id, inp)


def member_chains(model: keras.Model) -> list[list]:
    """A model's plain chains of layers between input and logit: one, or each member's of an ensemble (`m<k>_`)."""
    body = [layer for layer in model.layers[1:] if layer.name not in ("logit", "probability")]
    prefixes = list(dict.fromkeys(m.group(0) for layer in body if (m := re.match(r"m\d+_", layer.name))))
    if not prefixes:
        names = [layer.name for layer in model.layers]
        return [model.layers[1:names.index("probability") if "probability" in names else len(names)]]
    return [[layer for layer in body if layer.name.startswith(p)] for p in prefixes]


def ensemble(members: list[keras.Model], name: str) -> keras.Model:
    """One flat graph that runs every member on the same image and averages their logits.

    Layers are cloned with prefixed names (members are plain chains), so Grad-CAM can reach each
    member's last feature map and the file stays a single safe-mode .keras model. A member that is itself an
    ensemble (a fold model of an ensemble recipe) is opened into its chains: with members of equal size the mean
    of their means is the mean over every chain.
    """
    per_member = [member_chains(m) for m in members]
    chains = [chain for member in per_member for chain in member]
    if len({len(member) for member in per_member}) > 1:
        raise ValueError("ensemble members of different sizes would not be weighted equally")
    inp = keras.Input(members[0].inputs[0].shape[1:], name="image")
    logits = []
    for k, chain in enumerate(chains):
        x = inp
        for layer in chain:
            cfg = layer.get_config()
            cfg["name"] = f"m{k}_{re.sub(r'^m[0-9]+_', '', layer.name)}"
            clone = layer.__class__.from_config(cfg)
            x = clone(x)
            clone.set_weights(layer.get_weights())
        logits.append(x)
    logit = layers.Average(name="logit")(logits)
    prob = layers.Activation("sigmoid", name="probability")(logit)
    return keras.Model(inp, prob, name=name)


BUILDERS = {
    ("effusion", "seed_lenet"): seed_effusion_lenet,
    ("effusion", "seed_alexnet"): seed_effusion_alexnet,
    ("pneumonia", "seed_reduced_nodes"): seed_pneumonia_reduced_nodes,
    ("pneumonia", "seed_baseline_adam"): seed_pneumonia_baseline_adam,
    ("malaria", "seed_base_cnn"): seed_malaria_base,
    ("malaria", "seed_model3"): seed_malaria_model3,
    ("pneumonia", "secondlook_cnn"): lambda s: secondlook_cnn(s, (16, 32, 64, 96, 128)),
    ("effusion", "secondlook_cnn"): lambda s: secondlook_cnn(s, (16, 32, 64, 96, 128), dropout=0.4),
    ("malaria", "secondlook_cnn"): lambda s: secondlook_cnn(s, (24, 48, 96, 128)),
    ("malaria", "secondlook_long"): lambda s: secondlook_cnn(s, (24, 48, 96, 128)),
    ("malaria", "secondlook_twosite"): lambda s: secondlook_cnn(s, (24, 48, 96, 128)),
    ("malaria", "secondlook_fields"): lambda s: secondlook_cnn(s, (24, 48, 96, 128)),
    ("malaria", "secondlook_fields_stain"): lambda s: secondlook_cnn(s, (24, 48, 96, 128)),
    ("malaria", "secondlook_fields_s3"): lambda s: secondlook_cnn(s, (24, 48, 96, 128)),
    ("malaria", "secondlook_fields_all"): lambda s: secondlook_cnn(s, (24, 48, 96, 128)),
    ("pneumonia", "secondlook_hires"): lambda s: secondlook_cnn(s, (16, 32, 64, 96, 128), stem=16),
    ("effusion", "secondlook_hires"): lambda s: secondlook_cnn(s, (16, 32, 64, 96, 128), dropout=0.4, stem=16),
    ("effusion", "secondlook_transfer"): lambda s: secondlook_cnn(s, (16, 32, 64, 96, 128), dropout=0.4),
    ("effusion", "secondlook_ensemble"): lambda s: secondlook_cnn(s, (16, 32, 64, 96, 128), dropout=0.4),  # one member
    ("effusion", "secondlook_slim_ensemble"): lambda s: secondlook_cnn(s, (8, 16, 32, 48, 64), dropout=0.4),  # one member
}


def build(spec: ModelSpec) -> keras.Model:
    """One member network of the spec (an ensemble is trained member by member); a fold ensemble's is its recipe's."""
    if spec.fold_ensemble_of:
        from core.registry import get_model_spec

        return build(get_model_spec(spec.task, spec.fold_ensemble_of))
    return BUILDERS[(spec.task, spec.id)](spec)


def networks_in(spec: ModelSpec) -> int:
    """How many member networks the shipped file runs: members, times the recipe's for a fold ensemble."""
    if spec.fold_ensemble_of:
        from core.registry import get_model_spec

        return spec.members * get_model_spec(spec.task, spec.fold_ensemble_of).members
    return spec.members
