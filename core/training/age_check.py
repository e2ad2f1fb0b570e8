"""Train the image-based age-group check (child vs adult chest film) that routes a radiograph without a DICOM age.

Why: the pneumonia models were trained on children aged 1-5 (Guangzhou) and the effusion models on adults (NIH); an
adult film sent to the pneumonia model is called PNEUMONIA most of the time. The check is trained on the *training*
splits of `pneumonia` (children) and `effusion` (adults); validation is carved out of each by patient
(`core.data.split_train_val`), the two thresholds are chosen there, and each population's test split is scored once
and written on the card.

Both sources are brought to one form before anything else (`canonical`): grey, 224 px by area averaging, one JPEG
round trip at quality 75, so file format, resolution and encoder leave no trace the network could learn. Training
then re-randomises what uploads vary by (`RECIPES`: framing, aspect ratio, rotation, exposure, blur, JPEG quality,
noise; the "strong" recipe adds a site's contrast processing and edge enhancement, collimation borders and burnt-in
markers).

Which check is installed is chosen on validation only (`choose`, `candidates`): the first check (one network, recipe
"first"), ensembles of `MEMBERS` networks (logits averaged in one graph) of the first recipe with other seeds or of
the strong recipe, or the first check with the strong ones, by the share of validation children called child as
stored and under `PERTURBATIONS` (another site's processing), provided no perturbation calls more than 1% of the
validation adults child. Why: the first check called 94.7% of the pediatric test films child against 98.7% on
validation, and ensembles (and broader augmentation) are the usual remedies for a shift one cannot see. On
2026-12-07 the rule chose the first recipe's three-seed ensemble (the selection is on its card).

    python -m core.training.age_check                       # every candidate, the choice, a test look if it changed
    python -m core.training.age_check --member 0 --recipe first   # one candidate member (artifacts/age_group/)
    python -m core.training.age_check --choose              # compare the trained candidates, install the chosen
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from core.data import load_task_manifest, split_train_val
from core.evaluation import metrics
from core.inference.population import (AGE_CHECK_DIR, CHILD_TASK, ADULT_TASK, INPUT, SOURCES, canonical,
                                        child_probability, load_age_check)
from core.io.images import read_image
from core.models.store import save_for_inference, sha256_file, write_card_file
from core.registry import get_task

log = logging.getLogger(__name__)
SEED = 20261207
MEMBERS = 3
EPOCHS = 8
MEMBER_DIR = AGE_CHECK_DIR.parents[1].parent / "artifacts" / "age_group"  # member weights: inputs to the ensemble
MAX_UNSURE_FRACTION = 0.01  # of each validation population: the widest unsure band that decides >= 99% of them
MAX_MARGIN_LOGIT = 4.6  # the band never reaches past p = 0.99 / 0.01


def _frames() -> dict[str, dict]:
    """Per source task: train (minus validation), validation and test frames with y = 1 for children."""
    out = {}
    for task, y in ((CHILD_TASK, 1), (ADULT_TASK, 0)):
        df = load_task_manifest(task)
        train, val = split_train_val(df[df["split"] == "train"].reset_index(drop=True), get_task(task))
        test = df[df["split"] == "test"].reset_index(drop=True)
        out[task] = {"train": train.assign(child=y), "val": val.assign(child=y), "test": test.assign(child=y)}
    return out


def _films(fr: dict, split: str) -> tuple[list[str], np.ndarray]:
    """(files, y) of one split over both sources, children (y = 1) first, in manifest order."""
    return ([f for t in SOURCES for f in fr[t][split]["file"]],
            np.concatenate([fr[t][split]["child"].to_numpy() for t in SOURCES]))


def _load(files: list[str]) -> np.ndarray:
    return np.stack([canonical(read_image(f)) for f in files])


def _reframe(img: np.ndarray, rng: np.random.Generator, zoom_min: float, max_angle: float) -> np.ndarray:
    """Framing, aspect and pose: a crop of another aspect (the square input resize then stretches it), a small
    rotation, a mirror image half the time."""
    h, w = img.shape
    aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    zoom = rng.uniform(zoom_min, 1.0)
    ch, cw = int(h * zoom * min(1.0, 1 / aspect)), int(w * zoom * min(1.0, aspect))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = img[y0:y0 + ch, x0:x0 + cw]
    angle = rng.uniform(-max_angle, max_angle)
    m = cv2.getRotationMatrix2D((out.shape[1] / 2, out.shape[0] / 2), angle, 1.0)
    out = cv2.warpAffine(out, m, (out.shape[1], out.shape[0]), borderMode=cv2.BORDER_REFLECT)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _expose(out: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float], gain: float, offset: float) -> np.ndarray:
    f = out.astype(np.float32) / 255.0
    f = np.clip(f ** np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1]))) * rng.uniform(1 - gain, 1 + gain)
                + rng.uniform(-offset, offset), 0, 1)
    return (f * 255).astype(np.uint8)


def _encode(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A JPEG round trip at a random quality half the time, sensor noise a third of the time."""
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 96))])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if rng.random() < 0.3:
        out = np.clip(out + rng.normal(0, rng.uniform(1, 6), out.shape), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random variant of a canonical 224 px film, as uploads differ: framing, aspect, pose, exposure, sharpness,
    encoding, noise. Returns uint8 grey, any size (the input path resizes)."""
    out = _expose(_reframe(img, rng, 0.85, 8), rng, (0.7, 1.4), 0.15, 0.08)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    return _encode(out, rng)


def _border(out: np.ndarray, rng: np.random.Generator) -> None:
    """A collimation border on one side, in place."""
    hh, ww = out.shape
    side, width = int(rng.integers(4)), rng.uniform(0.02, 0.1)
    n = max(1, int(width * (hh if side < 2 else ww)))
    value = int(rng.choice([0, 255])) if rng.random() < 0.8 else int(rng.integers(0, 256))
    region = (np.s_[:n], np.s_[-n:], np.s_[:, :n], np.s_[:, -n:])[side]
    out[region] = value


def augment_strong(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random variant of a canonical 224 px film, as uploads from other sites differ: framing, aspect, pose,
    exposure, contrast processing (equalisation, edge enhancement), collimation borders, burnt-in markers, sharpness,
    encoding, noise. Returns uint8 grey, any size (the input path resizes)."""
    out = _reframe(img, rng, 0.75, 10)
    if rng.random() < 0.25:  # another site's processing: equalised contrast
        out = cv2.createCLAHE(clipLimit=float(rng.uniform(1.0, 3.0)), tileGridSize=(8, 8)).apply(np.ascontiguousarray(out))
    out = _expose(out, rng, (0.6, 1.6), 0.2, 0.1)
    if rng.random() < 0.25:  # edge enhancement (unsharp mask), as many X-ray consoles apply
        blur = cv2.GaussianBlur(out, (0, 0), rng.uniform(2.0, 6.0))
        out = cv2.addWeighted(out, 1 + (a := rng.uniform(0.3, 1.0)), blur, -a, 0)
    elif rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    out = np.ascontiguousarray(out)
    if rng.random() < 0.25:  # a collimation border on one or two sides
        for _ in range(int(rng.integers(1, 3))):
            _border(out, rng)
    if rng.random() < 0.3:  # a burnt-in marker or label
        hh, ww = out.shape
        bh, bw = int(hh * rng.uniform(0.03, 0.08)), int(ww * rng.uniform(0.03, 0.15))
        y, x = int(rng.integers(0, hh - bh)), int(rng.integers(0, ww - bw))
        out[y:y + bh, x:x + bw] = int(rng.choice([0, 255]))
    return _encode(out, rng)


def _tensor(imgs) -> np.ndarray:
    from core.inference.preprocess import prepare

    return np.stack([prepare(im, INPUT) for im in imgs]).astype(np.float32)


RECIPES = {  # how a member is trained; "first" is the installed check's
    "first": {"augment": augment, "epochs": 14,
              "what": "aspect 0.8-1.25, zoom 0.85-1, rotation 8 deg, flip, gamma/gain/offset, blur, JPEG q35-95, noise"},
    "strong": {"augment": augment_strong, "epochs": EPOCHS,
               "what": "aspect 0.8-1.25, zoom 0.75-1, rotation 10 deg, flip, CLAHE, gamma/gain/offset, unsharp mask, "
                       "blur, collimation borders, burnt-in markers, JPEG q35-95, noise"},
}


def member_file(k: int, recipe: str) -> Path:
    if recipe == "first":
        return MEMBER_DIR / ("first.keras" if k == 0 else f"first{k}.keras")
    return MEMBER_DIR / f"member{k}.keras"


def build_network(seed: int = SEED):
    import keras

    from core.models.networks import secondlook_cnn
    from core.registry import ModelSpec, TrainConfig

    keras.utils.set_random_seed(seed)
    spec = ModelSpec("age_group", "routing", "Age-group check", False, INPUT, TrainConfig(epochs=1), "child vs adult")
    return secondlook_cnn(spec, (16, 32, 48, 64, 96), dropout=0.3)


def _data() -> tuple[dict, dict]:
    """(x, y): canonical train and validation films, y = 1 for children."""
    fr = _frames()
    x, y = {}, {}
    for s in ("train", "val"):
        files, labels = _films(fr, s)
        y[s] = labels.astype(np.float32)
        x[s] = _load(files)
        log.info("%s: %d films (%d children)", s, len(files), int(y[s].sum()))
    return x, y


def _class_weight(y: np.ndarray) -> dict[int, float]:
    n_child, n_adult = int(y.sum()), int((1 - y).sum())
    return {0: len(y) / (2 * n_adult), 1: len(y) / (2 * n_child)}


def train_member(k: int, recipe: str = "strong", epochs: int | None = None, batch_size: int = 32) -> dict:
    """Train member k (its own seed) by a recipe on train minus validation; its epoch is chosen on validation. Writes
    artifacts/age_group/<member>.keras and .json (history): candidates for `choose`, not the product."""
    import keras

    t0 = time.time()
    aug, epochs = RECIPES[recipe]["augment"], epochs or RECIPES[recipe]["epochs"]
    seed = SEED + 1000 * k
    rng = np.random.default_rng(seed)
    x, y = _data()
    xv = _tensor(list(x["val"]))
    weight = _class_weight(y["train"])
    model = build_network(seed)
    steps = int(np.ceil(len(y["train"]) / batch_size))
    lr = keras.optimizers.schedules.CosineDecay(2e-3, epochs * steps)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    best, best_w, history = -np.inf, None, []
    for ep in range(epochs):
        order = rng.permutation(len(y["train"]))
        xa = _tensor([aug(x["train"][i], rng) for i in order])
        ya = y["train"][order]
        sw = np.where(ya == 1, weight[1], weight[0]).astype(np.float32)
        h = model.fit(xa, ya, sample_weight=sw, batch_size=batch_size, epochs=1, verbose=0)
        pv = np.asarray(model.predict(xv, batch_size=128, verbose=0)).ravel()
        auc = metrics.roc_auc(y["val"], pv)
        loss = float(np.mean(-(y["val"] * np.log(np.clip(pv, 1e-7, 1)) + (1 - y["val"]) * np.log(np.clip(1 - pv, 1e-7, 1)))))
        history.append({"epoch": ep + 1, "train_loss": float(h.history["loss"][0]), "val_auc": auc, "val_loss": loss})
        log.info("member %d epoch %d: train loss %.4f, val AUC %.5f, val loss %.4f (%.0f s)", k, ep + 1,
                 h.history["loss"][0], auc, loss, time.time() - t0)
        score = auc - loss * 1e-3  # AUC first; among equal AUCs, the lower validation loss
        if score > best:
            best, best_w = score, model.get_weights()
    model.set_weights(best_w)
    MEMBER_DIR.mkdir(parents=True, exist_ok=True)
    path = member_file(k, recipe)
    save_for_inference(model, path)
    rec = {"member": k, "recipe": recipe, "augmentation": RECIPES[recipe]["what"], "seed": seed, "epochs": epochs, "batch_size": batch_size, "class_weight": weight,
           "history": history, "chosen_epoch": int(max(history, key=lambda r: r["val_auc"] - r["val_loss"] * 1e-3)["epoch"]),
           "wall_time_seconds": round(time.time() - t0, 1)}
    path.with_suffix(".json").write_text(json.dumps(rec, indent=1))
    return rec


FIRST = member_file(0, "first")  # the first check (one network, recipe "first"): --member 0 --recipe first


def member_paths(members: int = MEMBERS) -> list[Path]:
    paths = [member_file(k, "strong") for k in range(members)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"age-group members {missing} are not trained: python -m core.training.age_check --member K")
    return paths


def candidates() -> dict[str, list[Path]]:
    """The checks `choose` compares: the first check alone, the strong recipe's ensemble, and all of them together."""
    new = member_paths()
    if not FIRST.is_file():
        raise FileNotFoundError(f"no {FIRST}: python -m core.training.age_check --member 0 --recipe first")
    out = {"one network (the first check)": [FIRST], f"ensemble of {len(new)} (stronger augmentation)": new,
           f"ensemble of {len(new) + 1} (the first check and the {len(new)} new)": [FIRST, *new]}
    same = [FIRST] + [member_file(k, "first") for k in range(1, MEMBERS) if member_file(k, "first").is_file()]
    if len(same) == MEMBERS:  # the first recipe with other seeds: what ensembling alone buys
        out[f"ensemble of {MEMBERS} (the first recipe, three seeds)"] = same
    return out


def _combined(paths: list[Path]):
    import keras

    from core.models.networks import ensemble

    members = [keras.saving.load_model(p, safe_mode=True, compile=False) for p in paths]
    return members[0] if len(members) == 1 else ensemble(members, "age_group")


def assemble(paths: list[Path] | None = None, selection: dict | None = None) -> dict:
    """The shipped check from member files: their logits averaged in one graph (`core.models.networks.ensemble`), the
    unsure band chosen on validation through the same path an upload takes, and the card (`selection`: how `choose`
    picked it)."""
    paths = member_paths() if paths is None else paths
    recs = [json.loads(p.with_suffix(".json").read_text()) if p.with_suffix(".json").is_file()
            else {"member": p.stem, "trained": "the first check's training (see earlier_checks)"} for p in paths]
    AGE_CHECK_DIR.mkdir(parents=True, exist_ok=True)
    path = AGE_CHECK_DIR / "model.keras"
    save_for_inference(_combined(paths), path)
    fr = _frames()
    val_files, y_val = _films(fr, "val")
    model = load_age_check(verify=False)  # score through the same path an upload takes, from the saved file
    pv = np.array([child_probability(model, read_image(f)) for f in val_files])
    thr = band(pv, y_val)
    card = {
        "model_id": "age_group", "title": "Age-group check (child vs adult chest film)",
        "purpose": "routes a radiograph without a usable DICOM age: pneumonia is answered only for children, effusion only for adults",
        "input": INPUT.as_dict(), "parameters": int(model.count_params()), "sha256": sha256_file(path),
        "file_bytes": path.stat().st_size,
        "data": {t: {s: int(len(fr[t][s])) for s in ("train", "val", "test")} for t in SOURCES},
        "populations": {CHILD_TASK: "children aged 1-5 (Guangzhou)", ADULT_TASK: "adults (NIH Clinical Center)"},
        "preparation": "both sources: grey, 224 px (INTER_AREA), JPEG q75 round trip; then each member's augmentation: "
                       + "; ".join(sorted({RECIPES[r.get("recipe", "first")]["what"] for r in recs})),
        "ensemble": {"members": len(paths), "combination": "mean of the members' logits (one graph)",
                     "why": "averaging independently trained networks keeps scores honest under shifts not seen in training"},
        **({"selection": selection} if selection else {}),
        "training": {"optimizer": "adam, cosine from 2e-3", "members": recs,
                     "wall_time_seconds": round(sum(r.get("wall_time_seconds", 0.0) for r in recs), 1)},
        "thresholds": thr, "threshold_chosen_on": "validation (patient-grouped, from train)",
        "validation": {"auc": metrics.roc_auc(y_val, pv), **_rates(pv, y_val, thr)},
    }
    old = AGE_CHECK_DIR / "card.json"
    if old.is_file():  # the test looks taken of earlier checks stay disclosed
        prev = json.loads(old.read_text())
        looks = prev.get("test_looks", [])
        if looks and prev.get("test"):
            looks[-1]["figures"] = {k: v for k, v in prev["test"].items() if k != "invariance"}
        card["earlier_checks"] = prev.get("earlier_checks", []) + [
            {"sha256": prev.get("sha256"), "parameters": prev.get("parameters"), "thresholds": prev.get("thresholds"),
             "validation": prev.get("validation"), "test_looks": looks}]
    write_card_file(AGE_CHECK_DIR / "card.json", card)
    log.info("validation: %s", json.dumps(card["validation"]))
    return card


def band(val_p: np.ndarray, val_y: np.ndarray) -> dict:
    """The unsure band, chosen on validation: the widest symmetric band in logit space (up to MAX_MARGIN_LOGIT) that
    leaves at most MAX_UNSURE_FRACTION of each population undecided. Wider is safer: a film near the boundary is
    withheld rather than guessed."""
    logit = np.log(np.clip(val_p, 1e-7, 1 - 1e-7) / np.clip(1 - val_p, 1e-7, 1))
    best = 0.0
    for m in np.linspace(0.0, MAX_MARGIN_LOGIT, 47):
        unsure = np.abs(logit) < m
        if all(unsure[val_y == c].mean() <= MAX_UNSURE_FRACTION for c in (0, 1)):
            best = float(m)
    return {"child_at_or_above": float(1 / (1 + np.exp(-best))), "adult_at_or_below": float(1 / (1 + np.exp(best))),
            "margin_logit": best, "rule": f"widest symmetric logit band <= {MAX_MARGIN_LOGIT} leaving <= "
                                            f"{MAX_UNSURE_FRACTION:.0%} of each validation population unsure"}


def _rates(p: np.ndarray, y: np.ndarray, thr: dict) -> dict:
    child = p >= thr["child_at_or_above"]
    adult = p <= thr["adult_at_or_below"]
    return {"n_children": int((y == 1).sum()), "n_adults": int((y == 0).sum()),
            "children_called_child": float(child[y == 1].mean()), "children_called_adult": float(adult[y == 1].mean()),
            "children_unsure": float((~child & ~adult)[y == 1].mean()),
            "adults_called_adult": float(adult[y == 0].mean()), "adults_called_child": float(child[y == 0].mean()),
            "adults_unsure": float((~child & ~adult)[y == 0].mean())}


def _gamma(g: float):
    return lambda a: np.clip(255.0 * (a / 255.0) ** g, 0, 255).astype(np.uint8)


def _unsharp(a: np.ndarray) -> np.ndarray:
    return cv2.addWeighted(a, 1.7, cv2.GaussianBlur(a, (0, 0), 4.0), -0.7, 0)


def _borders(a: np.ndarray) -> np.ndarray:
    out, n = a.copy(), max(1, int(0.08 * a.shape[1]))
    out[:, :n] = 0
    out[:, -n:] = 0
    return out


def _upload(a: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    big = cv2.resize(a, (a.shape[1] * 4, a.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "JPEG", quality=85)
    return read_image(buf.getvalue())


# How another site's film may differ from these two sources: a fixed set, the same for every candidate check.
PERTURBATIONS = {
    "as stored": lambda a: a,
    "darker (gamma 1.4)": _gamma(1.4),
    "brighter (gamma 0.7)": _gamma(0.7),
    "equalised (CLAHE 2)": lambda a: cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(a),
    "edge-enhanced (unsharp)": _unsharp,
    "collimation borders (8%)": _borders,
    "upscaled 4x + JPEG q85": _upload,
}
MAX_ADULTS_CALLED_CHILD = 0.01  # under any perturbation, of the validation adults


def perturbed_scores(model, grey: list[np.ndarray]) -> dict[str, np.ndarray]:
    """P(child) of each grey film under each of PERTURBATIONS ("as stored" included), through the upload path."""
    return {name: np.array([child_probability(model, fn(g)) for g in grey]) for name, fn in PERTURBATIONS.items()}


def robustness(scores: dict[str, np.ndarray], y: np.ndarray, thr: dict) -> dict:
    """The check's calls on the validation films as stored and under each of PERTURBATIONS, at its thresholds."""
    out = {name: _rates(p, y, thr) for name, p in scores.items()}
    calls = [r["children_called_child"] for r in out.values()]
    return {"mean_children_called_child": float(np.mean(calls)), "worst_children_called_child": float(np.min(calls)),
            "worst_adults_called_child": float(max(r["adults_called_child"] for r in out.values())), "per_perturbation": out}


def pick(result: dict[str, dict]) -> str:
    """The rule of `choose` on the candidates' `robustness` figures (a safe check first, then the most children
    answered; with no safe candidate, the most children answered)."""
    ok = {k: v for k, v in result.items() if v["robustness"]["worst_adults_called_child"] <= MAX_ADULTS_CALLED_CHILD}
    return max(ok or result, key=lambda k: result[k]["robustness"]["mean_children_called_child"])


def choose(candidates: dict[str, str]) -> dict:
    """Choose the installed check among candidate model files on validation only, by one rule stated beforehand:
    the highest mean share of validation children called child over PERTURBATIONS, among the candidates that call at
    most MAX_ADULTS_CALLED_CHILD of the validation adults child under every one (each candidate at its own band,
    chosen on the films as stored). Why perturbed: the clean validation films come from the same period and machines
    as training, so they cannot tell a check that holds at another site from one that does not."""
    import keras

    files, y = _films(_frames(), "val")
    grey = [g if (g := read_image(f)).ndim == 2 else cv2.cvtColor(g, cv2.COLOR_RGB2GRAY) for f in files]  # read once
    result = {}
    for name, path in candidates.items():
        scores = perturbed_scores(keras.saving.load_model(path, safe_mode=True, compile=False), grey)
        p = scores["as stored"]
        thr = band(p, y)
        result[name] = {"file": Path(path).name, "thresholds": thr, "validation": {"auc": metrics.roc_auc(y, p), **_rates(p, y, thr)},
                        "robustness": robustness(scores, y, thr)}
        log.info("%s: %s", name, json.dumps({k: v for k, v in result[name]["robustness"].items() if k != "per_perturbation"}))
    return {"chosen": pick(result), "rule": choose.__doc__.split("\n\n")[0].replace("\n    ", " "), "candidates": result}


def invariance(model, files: list[str], thr: dict) -> dict:
    """The check's answer on test films as stored, upscaled 4x (cubic; real films are 1-3k px) and re-encoded
    (JPEG q85 of the upscaled film; 16-bit PNG): how far P(child) moves and how many calls change."""
    import io

    from PIL import Image

    def call(p):
        return "child" if p >= thr["child_at_or_above"] else "adult" if p <= thr["adult_at_or_below"] else "unsure"

    def jpeg(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=85)
        return read_image(buf.getvalue())

    def png16(a):
        buf = io.BytesIO()
        Image.fromarray((a.astype(np.uint16) * 257)).save(buf, "PNG")
        return read_image(buf.getvalue())

    base, moved = [], {"upscaled 4x": [], "upscaled 4x + JPEG q85": [], "16-bit PNG": []}
    for f in files:
        img = read_image(f)
        img = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        big = cv2.resize(img, (img.shape[1] * 4, img.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        base.append(child_probability(model, img))
        moved["upscaled 4x"].append(child_probability(model, big))
        moved["upscaled 4x + JPEG q85"].append(child_probability(model, jpeg(big)))
        moved["16-bit PNG"].append(child_probability(model, png16(img)))
    b = np.array(base)
    out = {"n": len(files)}
    for k, v in moved.items():
        v = np.array(v)
        out[k] = {"max_abs_change": float(np.abs(v - b).max()), "median_abs_change": float(np.median(np.abs(v - b))),
                  "calls_changed": int(sum(call(x) != call(y) for x, y in zip(b, v)))}
    return out


def score_test_once(why: str = "") -> dict:
    """The test look: each population's test split, as stored and re-encoded; written on the card (disclosed). A
    later look (`why` says why it was taken) keeps the earlier figures in `test_looks`; nothing is re-chosen."""
    model = load_age_check()
    card = json.loads((AGE_CHECK_DIR / "card.json").read_text())
    if card.get("test"):
        card["test_looks"][-1]["figures"] = {k: v for k, v in card["test"].items() if k != "invariance"}
    fr = _frames()
    files, y = _films(fr, "test")
    p = np.array([child_probability(model, read_image(f)) for f in files])
    thr = card["thresholds"]
    card["test"] = {"auc": metrics.roc_auc(y, p), **_rates(p, y, thr),
                    "note": "each population's own test split, scored once after the thresholds were fixed on validation"}
    pick = np.random.default_rng(SEED).choice(len(files), size=min(120, len(files)), replace=False)
    card["test"]["invariance"] = invariance(model, [files[i] for i in sorted(pick)], thr)
    looks = card.setdefault("test_looks", [])
    looks.append({"date": time.strftime("%Y-%m-%d"), "what": "pneumonia + effusion test splits; 120 of them upscaled 4x and re-encoded",
                  "changed_anything": False, **({"why": why} if why else {})})
    write_card_file(AGE_CHECK_DIR / "card.json", card)
    return card["test"]


def write_prediction_files() -> dict:
    """`val_predictions.csv` and `test_predictions.csv` beside the check, as every bundled model keeps them (path as
    `<task>/<manifest path>`, label child/adult, score = P(child) through the runtime path). The test scores are
    those of the disclosed look; nothing is chosen from them. Returns the rates they give, to compare with the card."""
    from core.models.store import write_predictions

    model, thresholds = load_age_check(), json.loads((AGE_CHECK_DIR / "card.json").read_text())["thresholds"]
    fr, out = _frames(), {}
    for split, name in (("val", "val"), ("test", "test")):
        rows = [(f"{t}/{p}", f, "child" if t == CHILD_TASK else "adult") for t in SOURCES
                for p, f in zip(fr[t][split]["path"], fr[t][split]["file"])]
        p = np.array([child_probability(model, read_image(f)) for _, f, _ in rows])
        write_predictions(AGE_CHECK_DIR / f"{name}_predictions.csv", [r[0] for r in rows], [r[2] for r in rows], p)
        out[name] = _rates(p, np.array([r[2] == "child" for r in rows], dtype=int), thresholds)
    return out


def install_chosen() -> dict:
    """`choose` among `candidates()` and install the winner (the first check stays as it is, its card gaining the
    comparison). Returns the selection."""
    cands = candidates()
    files = {}
    for i, (name, paths) in enumerate(cands.items()):
        files[name] = paths[0] if len(paths) == 1 else MEMBER_DIR / f"candidate{i}.keras"
        if len(paths) > 1:
            save_for_inference(_combined(paths), files[name])
    sel = choose({k: str(v) for k, v in files.items()})
    if cands[sel["chosen"]] == [FIRST]:
        card = json.loads((AGE_CHECK_DIR / "card.json").read_text())
        write_card_file(AGE_CHECK_DIR / "card.json", card | {"selection": sel})
    else:
        assemble(cands[sel["chosen"]], sel)
    return sel


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.training.age_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, help="epochs per member (default: the recipe's)")
    ap.add_argument("--member", type=int, help="train only this member")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="strong", help="with --member: how it is trained")
    ap.add_argument("--choose", action="store_true", help="compare the candidates on validation (as stored and "
                    "perturbed) and install the chosen one with its band and card; no test look")
    ap.add_argument("--test", action="store_true", help="only the test look of the installed check (disclosed on its card)")
    ap.add_argument("--why", default="", help="with --test: why another look is taken (written on the card)")
    ap.add_argument("--predictions", action="store_true", help="only write val/test_predictions.csv beside the check")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.predictions:
        print(json.dumps(write_prediction_files(), indent=1))
        return 0
    if a.member is not None:
        print(json.dumps(train_member(a.member, a.recipe, a.epochs), indent=1))
        return 0
    if a.choose or not a.test:
        before = json.loads((AGE_CHECK_DIR / "card.json").read_text()).get("sha256") if (AGE_CHECK_DIR / "card.json").is_file() else None
        if not a.choose:
            for recipe in ("first", "strong"):
                for k in range(MEMBERS):
                    train_member(k, recipe, a.epochs)
        sel = install_chosen()
        print(json.dumps({"chosen": sel["chosen"]} | {k: {x: y for x, y in v["robustness"].items() if x != "per_perturbation"}
                                                      for k, v in sel["candidates"].items()}, indent=1))
        if json.loads((AGE_CHECK_DIR / "card.json").read_text()).get("sha256") == before:
            return 0  # nothing new installed: no test look
    print(json.dumps(score_test_once(a.why), indent=1))
    write_prediction_files()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
