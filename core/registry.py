"""Task and model registry: labels, modality, input spec and training recipe for every model id.

The bottom layer with `config`: what a model *is*, imported by every other layer. Public API: `TASKS`, `get_task`,
`get_model_spec`, `TaskSpec`, `ModelSpec`, `InputSpec`, `TrainConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class InputSpec:
    """What a model eats. `normalize`: 'unit' scales to [0, 1]; 'standardize' is per-image z-score. `field_cut`: how a
    cell is cut from a whole smear field for it (`core.fields.cuts.cut_cells`): 'box' keeps the padded box,
    'ellipse' blacks out what lies outside the ellipse in the box, as the NIH crops show a cell on black. `field_stain`:
    'raw' cuts the field as photographed, 'normalize' first maps its stain to the reference (`core.data.stain`)."""

    size: int
    channels: int
    normalize: str = "unit"
    field_cut: str = "box"
    field_stain: str = "raw"

    def as_dict(self) -> dict:
        return {"size": self.size, "channels": self.channels, "normalize": self.normalize,
                **({"field_cut": self.field_cut} if self.field_cut != "box" else {}),
                **({"field_stain": self.field_stain} if self.field_stain != "raw" else {})}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"  # or "cosine"
    augment: str = "none"  # "none" | "xray" | "cell"
    class_weight: bool = False
    early_stopping: str = "val_auc"  # monitored quantity, restores best weights ("none": every epoch, last weights)
    patience: int = 6
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    pretrain_task: str | None = None  # first train on this task's training split, then fine-tune
    pretrain_epochs: int = 0
    init_from: str = ""  # start from this bundled model's weights (same task and architecture; checksum-verified)
    second_site: str = ""  # "malaria_fields": add cells cut from the training fields (core.fields.cuts)
    hard_negatives: bool = False  # with second_site: also the finder's boxes there that are no annotated cell
    site_negatives: int = 0  # with second_site: uninfected training-session cells drawn (0: cuts.TRAIN_NEGATIVES)
    site_positive_repeat: int = 0  # with second_site: copies of each infected one per epoch (0: cuts.POSITIVE_REPEAT)
    site_sessions: tuple[str, ...] = ()  # with second_site: the sessions trained on (empty: cuts.TRAIN_SESSIONS)
    site_stop_sessions: tuple[str, ...] | None = None  # with second_site: the sessions stopped on (None:
    # cuts.STOP_SESSIONS; empty: none, the task's validation patients alone stop training)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModelSpec:
    id: str
    task: str
    title: str
    baseline: bool
    input: InputSpec
    train: TrainConfig
    description: str
    deviations: str = ""
    members: int = 1  # >1: an ensemble of this many independently seeded networks, logits averaged
    fold_ensemble_of: str = ""  # this recipe's k cross-validation fold models, logits averaged (core.training.fold_ensemble)
    not_a_candidate: str = ""  # why this SecondLook model is bundled for comparison but never chosen as the default
    session_folds: tuple[str, ...] = ()  # a field model refitted on every training session: the cross-session fold
    # models whose out-of-fold scores choose its field and review thresholds (core.fields.records.validation_fields)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    labels: tuple[str, str]  # (negative, positive): the positive class is second
    modality: str  # "xray" or "smear"
    finding: str
    group_column: tuple[str, ...]  # manifest columns that define the validation grouping unit
    threshold_rule: str  # how the operating point is chosen on validation
    val_fraction: float = 0.15
    models: tuple[ModelSpec, ...] = field(default_factory=tuple)

    @property
    def positive(self) -> str:
        return self.labels[1]

    @property
    def negative(self) -> str:
        return self.labels[0]

    def model(self, model_id: str) -> ModelSpec:
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(f"unknown model {model_id!r} for task {self.name!r}; known: {[m.id for m in self.models]}")


def fold_models(recipe: ModelSpec, k: int = 3) -> ModelSpec:
    """The shipped form of a cross-validated recipe: its k fold models, logits averaged (core.training.fold_ensemble)."""
    nets = f"{k} x {recipe.members}" if recipe.members > 1 else f"{k}"
    return replace(
        recipe, id=f"{recipe.id}_folds", title=f"{recipe.title} × {k} CV folds", members=k,
        fold_ensemble_of=recipe.id, not_a_candidate="",
        description=f"The {k} models of {recipe.id}'s patient-grouped {k}-fold cross-validation ({nets} networks), logits "
                    "averaged. Calibration and threshold come from their out-of-fold scores over every training image.",
    )


def _pneumonia() -> TaskSpec:
    recipe = TrainConfig(epochs=20, learning_rate=2e-3, schedule="cosine", augment="xray_strong", class_weight=True, patience=8,
                         weight_decay=1e-4, label_smoothing=0.05)  # the SecondLook recipe for this task
    models = (
        ModelSpec(
            "seed_reduced_nodes", "pneumonia", "Seed notebook: reduced-nodes CNN", True,
            InputSpec(128, 1), TrainConfig(epochs=20, optimizer="sgd", learning_rate=0.01, early_stopping="val_loss", patience=5),
            "Conv 50/40/35/32 3x3 same, each with 2x2 max-pool; Dense 32/16/5 (L2 0.005); sigmoid; SGD; early stopping on validation loss.",
            deviations="Input 128x128 instead of the notebook's 256x256 (CPU budget); SGD momentum 0.9.",
        ),
        ModelSpec(
            "seed_baseline_adam", "pneumonia", "Seed notebook: baseline CNN with Adam", True,
            InputSpec(64, 1), TrainConfig(epochs=15, early_stopping="val_loss", patience=4),
            "6 conv layers (32,32,64,64,128,128, 3x3 same, pool after each pair) + Dense 128 + sigmoid output; 64x64x1; Adam.",
            deviations="The notebook's exact filter counts were not recorded in the issue; 32/32/64/64/128/128 used.",
        ),
        ModelSpec(
            "secondlook_cnn", "pneumonia", "SecondLook CNN", False,
            InputSpec(128, 1, "standardize"),
            recipe,
            "5 blocks of (Conv-BN-ReLU)x2 + max-pool (16-128 filters), global average pooling, dropout, sigmoid; "
            "geometric, gamma, exposure and noise augmentation; label smoothing; class weights; cosine learning-rate decay; "
            "early stopping on validation AUC. Operating point: the highest threshold keeping validation sensitivity >= 0.97 "
            "(the product's 0.95 screening target plus a margin for sampling error).",
        ),
        ModelSpec(
            "secondlook_hires", "pneumonia", "SecondLook CNN at full resolution", False,
            InputSpec(224, 1, "standardize"),
            recipe,
            "The secondlook_cnn recipe on the full 224x224 image: a stride-2 5x5 stem (16 filters) then the same 5 blocks, "
            "so the first layer sees every pixel at little extra cost. Same operating-point rule.",
        ),
    )
    models += (fold_models(next(m for m in models if m.id == "secondlook_cnn")),)
    return TaskSpec(
        "pneumonia", "Pneumonia (pediatric chest X-ray)", ("NORMAL", "PNEUMONIA"), "xray", "pneumonia",
        ("patient_id", "subtype"), "sensitivity_0.97", 0.15, models,
    )


def _effusion() -> TaskSpec:
    recipe = TrainConfig(epochs=60, learning_rate=2e-3, schedule="cosine", augment="xray_flip", class_weight=True, patience=15,
                         weight_decay=1e-4)  # the SecondLook recipe for this task
    models = (
        ModelSpec(
            "seed_lenet", "effusion", "Seed notebook: LeNet-5-inspired CNN", True,
            InputSpec(64, 1), TrainConfig(epochs=40, early_stopping="val_loss", patience=8),
            "Conv 32/64/128/128 3x3 valid, each followed by 2x2 max-pool; Dense 128, 32; sigmoid; 64x64x1; Adam.",
        ),
        ModelSpec(
            "seed_alexnet", "effusion", "Seed notebook: AlexNet-inspired CNN", True,
            InputSpec(64, 1), TrainConfig(epochs=40, early_stopping="val_loss", patience=8),
            "Conv 64 7x7 stride 2 same, pool, Conv 128 5x5 same, pool, Conv 256, 256, 128 3x3 same, pool; Dense 128, 32; sigmoid; 64x64x1; Adam.",
        ),
        ModelSpec(
            "secondlook_cnn", "effusion", "SecondLook CNN", False,
            InputSpec(128, 1, "standardize"),
            recipe,
            "5 blocks of (Conv-BN-ReLU)x2 + max-pool (16-128 filters), global average pooling, dropout, sigmoid; "
            "geometric and contrast augmentation incl. horizontal flip; cosine learning-rate decay; early stopping on validation AUC.",
        ),
        ModelSpec(
            "secondlook_hires", "effusion", "SecondLook CNN at full resolution", False,
            InputSpec(256, 1, "standardize"),
            recipe,
            "The secondlook_cnn recipe on the full 256x256 image: a stride-2 5x5 stem (16 filters) then the same 5 blocks. "
            "Blunted costophrenic angles and thin fluid layers are a few pixels wide at 128x128.",
        ),
        ModelSpec(
            "secondlook_transfer", "effusion", "SecondLook CNN pretrained on pediatric CXR", False,
            InputSpec(128, 1, "standardize"),
            TrainConfig(epochs=40, learning_rate=1e-3, schedule="cosine", augment="xray_flip", class_weight=True, patience=12,
                        weight_decay=1e-4, pretrain_task="pneumonia", pretrain_epochs=4),
            "The secondlook_cnn architecture, first trained for 4 epochs on the pneumonia training split (5k chest X-rays, "
            "our own weights, no download), then fine-tuned on effusion. Chest-X-ray features learned on more images help a "
            "task with only ~800 training images.",
        ),
        ModelSpec(
            "secondlook_ensemble", "effusion", "SecondLook ensemble (3 CNNs)", False,
            InputSpec(128, 1, "standardize"),
            recipe,
            "Three SecondLook CNNs (the secondlook_cnn recipe) trained with different seeds; their logits are averaged. "
            "Small data makes single networks noisy; averaging reduces variance.",
            members=3,
            not_a_candidate="a default ships as its recipe's fold models averaged (core.training.fold_ensemble), so a "
                            "secondlook_cnn default already averages three networks; this seed ensemble would ship as "
                            "nine, and its cross-validation alone costs nine trainings",
        ),
        ModelSpec(
            "secondlook_slim_ensemble", "effusion", "SecondLook ensemble (4 slim CNNs)", False,
            InputSpec(128, 1, "standardize"),
            recipe,
            "Four half-width SecondLook CNNs (8-64 filters; the secondlook_cnn recipe, different seeds), logits averaged. "
            "On validation, averaging networks helped every effusion model; four slim members cost about as much as one "
            "full-width CNN, so the ensemble keeps the X-ray speed target.",
            members=4,
        ),
    )
    models += (fold_models(next(m for m in models if m.id == "secondlook_slim_ensemble")),)
    return TaskSpec(
        "effusion", "Pleural effusion (adult chest X-ray)", ("NORMAL", "EFFUSION"), "xray", "pleural effusion",
        ("split_group",), "youden", 0.2, models,
    )


def _malaria() -> TaskSpec:
    recipe = TrainConfig(epochs=14, learning_rate=2e-3, schedule="cosine", augment="cell", patience=5, weight_decay=1e-4)
    fields_recipe = replace(recipe, epochs=6, learning_rate=5e-4, patience=3, augment="cell_stain", init_from="secondlook_long",
                            second_site="malaria_fields", hard_negatives=True, site_negatives=100_000, site_positive_repeat=8)
    models = (
        ModelSpec(
            "seed_base_cnn", "malaria", "Seed notebook: base CNN", True,
            InputSpec(64, 3), TrainConfig(epochs=12, early_stopping="val_loss", patience=4),
            "Conv 32/64/64 3x3 with 2x2 max-pools; Dense 64; sigmoid; 64x64x3; Adam.",
            deviations="Sigmoid output instead of 2-way softmax (equivalent for two classes; gives a logit for Grad-CAM).",
        ),
        ModelSpec(
            "seed_model3", "malaria", "Seed notebook: model 3 (BN, SE block)", True,
            InputSpec(64, 3), TrainConfig(epochs=12, early_stopping="val_loss", patience=4),
            "Conv blocks with BatchNorm and LeakyReLU 0.1 / Swish, a squeeze-and-excite block, global average pooling, "
            "Dense 128/64 with dropout 0.5; sigmoid; 64x64x3; Adam.",
        ),
        ModelSpec(
            "secondlook_cnn", "malaria", "SecondLook CNN", False,
            InputSpec(64, 3, "unit"),
            recipe,
            "4 blocks of (Conv-BN-ReLU)x2 + max-pool (24-128 filters), global average pooling, dropout, sigmoid; "
            "flip/rotate/colour augmentation; cosine learning-rate decay; early stopping on validation AUC.",
        ),
        ModelSpec(
            "secondlook_long", "malaria", "SecondLook CNN, longer schedule", False,
            InputSpec(64, 3, "unit"),
            replace(recipe, epochs=30, patience=8),
            "The secondlook_cnn architecture and augmentation with a 30-epoch cosine schedule: the 14-epoch run was "
            "still improving on validation in its last epochs.",
        ),
        ModelSpec(
            "secondlook_twosite", "malaria", "SecondLook CNN, two sites (NIH crops + IML field cells)", False,
            InputSpec(64, 3, "unit"),
            replace(recipe, epochs=5, learning_rate=5e-4, patience=3, augment="cell_stain", init_from="secondlook_long",
                    second_site="malaria_fields"),
            "secondlook_long fine-tuned for 5 epochs (cosine from 5e-4) on the NIH P. falciparum crops plus cells cut "
            "from whole IML P. vivax fields of capture session S2 (every infected cell x4, 4,000 uninfected), with "
            "colour-balance and gamma jitter for stain differences; early stopping on the NIH validation patients plus "
            "the cells of session S3. Meant for whole-field screening at a lab other than the one that made the NIH crops.",
        ),
        ModelSpec(
            "secondlook_fields", "malaria", "SecondLook CNN for whole fields (two sites, cells on black, hard negatives)",
            False, InputSpec(64, 3, "unit", field_cut="ellipse"),
            fields_recipe,
            "secondlook_long fine-tuned like secondlook_twosite, aimed at whole-field screening, where about 100 cells a "
            "field make specificity decide the false alarms: every uninfected cell of IML session S2 (not 4,000), each "
            "infected one x8, and as negatives the boxes the cell finder cuts there that are no annotated cell (white "
            "cells, platelets, debris: 40% of the two-site model's false alarms on the validation fields S3); every field "
            "cell is cut on black outside its ellipse, as the NIH crops show a cell, so a touching infected neighbour "
            "does not show in the corners.",
            not_a_candidate="a whole-field cell model: chosen against secondlook_twosite on the validation fields "
                            "(core.fields.records.field_model), not a single-crop default",
        ),
        ModelSpec(
            "secondlook_fields_s3", "malaria", "SecondLook CNN for whole fields, trained on session S3 (the other fold)",
            False, InputSpec(64, 3, "unit", field_cut="ellipse"),
            replace(fields_recipe, site_sessions=("S3",), site_stop_sessions=("S2",)),
            "secondlook_fields' recipe with the two training sessions swapped: fine-tuned on the cells of IML session S3 "
            "(the pale one), stopped on S2. With secondlook_fields it makes a two-fold cross-session validation: every "
            "training field is scored by the model that neither trained nor stopped on its session, so the review "
            "queue's threshold rests on two sessions and two stains, not one.",
            not_a_candidate="a whole-field cell model's second cross-session fold, not a single-crop default",
        ),
        ModelSpec(
            "secondlook_fields_all", "malaria", "SecondLook CNN for whole fields, both training sessions",
            False, InputSpec(64, 3, "unit", field_cut="ellipse"),
            replace(fields_recipe, site_sessions=("S2", "S3"), site_stop_sessions=(), early_stopping="none"),
            "secondlook_fields' recipe on the cells of both IML training sessions (S2, a dark stain, and S3, a pale "
            "one), for the recipe's whole 6-epoch schedule, the last weights kept (no session is left to stop on; its "
            "first fold's held-out AUC was flat over its last three epochs). No training field is left to validate it, so its "
            "field and review thresholds are chosen on the out-of-fold scores of the recipe's two cross-session folds "
            "(secondlook_fields: trained on S2, stopped on S3; secondlook_fields_s3: the reverse), which cover every "
            "training field: cross-validate, then refit on all, as with any model whose data is too small to hold "
            "a session out.",
            not_a_candidate="a whole-field cell model: screening takes it by core.fields.records.field_model, not a "
                            "single-crop default",
            session_folds=("secondlook_fields", "secondlook_fields_s3"),
        ),
        ModelSpec(
            "secondlook_fields_stain", "malaria",
            "SecondLook CNN for whole fields, stain-normalised (two sites, cells on black, hard negatives)",
            False, InputSpec(64, 3, "unit", field_cut="ellipse", field_stain="normalize"),
            fields_recipe,
            "secondlook_fields' recipe with every field first mapped to one reference stain (core.data.stain: each "
            "channel's optical density scaled until the field's median cell density is the training session's, the "
            "background re-lit to its level), in training and in use. Why: the capture sessions of one lab differ "
            "threefold in stain density (median green OD of cell pixels 1.49 in S2, 0.51 in S3), and a cell model "
            "trained on one session reads another's paler cells by a colour it has not seen; a new lab's stain will "
            "differ more.",
            not_a_candidate="a whole-field cell model: chosen against secondlook_fields on the validation fields "
                            "(core.fields.records.field_model), not a single-crop default",
        ),
    )
    models += (fold_models(next(m for m in models if m.id == "secondlook_long")),)  # won the CV (2026-12-03)
    return TaskSpec(
        "malaria", "Malaria (thin-smear red blood cell)", ("Uninfected", "Parasitized"), "smear", "malaria parasites",
        ("patient_id",), "youden_min_sensitivity_0.95", 0.15, models,
    )


TASKS: dict[str, TaskSpec] = {t.name: t for t in (_pneumonia(), _effusion(), _malaria())}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


def get_model_spec(task: str, model_id: str) -> ModelSpec:
    return get_task(task).model(model_id)
