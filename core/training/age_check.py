"""Train the image-based age-group check (child vs adult chest film) that routes a radiograph without a DICOM age.

Why: the pneumonia models were trained on children aged 1-5 (Guangzhou) and the effusion models on adults (NIH); an
adult film sent to the pneumonia model is called PNEUMONIA most of the time. The check is trained on the *training*
splits of `pneumonia` (children) and `effusion` (adults); validation is carved out of each by patient
(`core.data.split_train_val`), the two thresholds are chosen there, and each population's test split is scored once
and written on the card.

Both sources are brought to one form before anything else (`canonical`): grey, 224 px by area averaging, one JPEG
round trip at quality 75, so file format, resolution and encoder leave no trace the network could learn. Training
then re-randomises what uploads vary by (aspect ratio, zoom, rotation, exposure, blur, JPEG quality, noise).

    python -m core.training.age_check [--epochs 14]
"""
from __future__ import annotations

import argparse
import json
import logging
import time

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


def _load(files: list[str]) -> np.ndarray:
    return np.stack([canonical(read_image(f)) for f in files])


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random variant of a canonical 224 px film, as uploads differ: framing, aspect, pose, exposure, sharpness,
    encoding, noise. Returns uint8 grey, any size (the input path resizes)."""
    h, w = img.shape
    aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    zoom = rng.uniform(0.85, 1.0)
    ch, cw = int(h * zoom * min(1.0, 1 / aspect)), int(w * zoom * min(1.0, aspect))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = img[y0:y0 + ch, x0:x0 + cw]  # a crop of another aspect: the square input resize then stretches it
    angle = rng.uniform(-8, 8)
    m = cv2.getRotationMatrix2D((out.shape[1] / 2, out.shape[0] / 2), angle, 1.0)
    out = cv2.warpAffine(out, m, (out.shape[1], out.shape[0]), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    f = out.astype(np.float32) / 255.0
    f = np.clip(f ** np.exp(rng.uniform(np.log(0.7), np.log(1.4))) * rng.uniform(0.85, 1.15) + rng.uniform(-0.08, 0.08), 0, 1)
    out = (f * 255).astype(np.uint8)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 96))])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if rng.random() < 0.3:
        out = np.clip(out + rng.normal(0, rng.uniform(1, 6), out.shape), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def _tensor(imgs) -> np.ndarray:
    from core.inference.preprocess import prepare

    return np.stack([prepare(im, INPUT) for im in imgs]).astype(np.float32)


def build_network():
    import keras

    from core.models.networks import secondlook_cnn
    from core.registry import ModelSpec, TrainConfig

    keras.utils.set_random_seed(SEED)
    spec = ModelSpec("age_group", "routing", "Age-group check", False, INPUT, TrainConfig(epochs=1), "child vs adult")
    return secondlook_cnn(spec, (16, 32, 48, 64, 96), dropout=0.3)


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


def train(epochs: int = 14, batch_size: int = 32) -> dict:
    import keras

    t0 = time.time()
    rng = np.random.default_rng(SEED)
    fr = _frames()
    parts = {s: {t: fr[t][s] for t in fr} for s in ("train", "val", "test")}
    x, y = {}, {}
    for s in ("train", "val"):
        files = [f for t in SOURCES for f in parts[s][t]["file"]]
        y[s] = np.concatenate([parts[s][t]["child"].to_numpy() for t in SOURCES]).astype(np.float32)
        x[s] = _load(files)
        log.info("%s: %d films (%d children)", s, len(files), int(y[s].sum()))
    xv = _tensor(list(x["val"]))
    n_child, n_adult = int(y["train"].sum()), int((1 - y["train"]).sum())
    weight = {0: len(y["train"]) / (2 * n_adult), 1: len(y["train"]) / (2 * n_child)}

    model = build_network()
    steps = int(np.ceil(len(y["train"]) / batch_size))
    lr = keras.optimizers.schedules.CosineDecay(2e-3, epochs * steps)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    best, best_w, history = -1.0, None, []
    for ep in range(epochs):
        order = rng.permutation(len(y["train"]))
        xa = _tensor([augment(x["train"][i], rng) for i in order])
        ya = y["train"][order]
        sw = np.where(ya == 1, weight[1], weight[0]).astype(np.float32)
        h = model.fit(xa, ya, sample_weight=sw, batch_size=batch_size, epochs=1, verbose=0)
        pv = np.asarray(model.predict(xv, batch_size=128, verbose=0)).ravel()
        auc = metrics.roc_auc(y["val"], pv)
        loss = float(np.mean(-(y["val"] * np.log(np.clip(pv, 1e-7, 1)) + (1 - y["val"]) * np.log(np.clip(1 - pv, 1e-7, 1)))))
        history.append({"epoch": ep + 1, "train_loss": float(h.history["loss"][0]), "val_auc": auc, "val_loss": loss})
        log.info("epoch %d: train loss %.4f, val AUC %.5f, val loss %.4f (%.0f s)", ep + 1, h.history["loss"][0], auc, loss, time.time() - t0)
        score = auc - loss * 1e-3  # AUC first; among equal AUCs, the lower validation loss
        if score > best:
            best, best_w = score, model.get_weights()
    model.set_weights(best_w)
    AGE_CHECK_DIR.mkdir(parents=True, exist_ok=True)
    path = AGE_CHECK_DIR / "model.keras"
    save_for_inference(model, path)
    model = load_age_check(verify=False)  # score through the same path an upload takes, from the saved file
    pv = np.array([child_probability(model, im) for im in x["val"]])  # canonical validation films
    thr = band(pv, y["val"])
    card = {
        "model_id": "age_group", "title": "Age-group check (child vs adult chest film)",
        "purpose": "routes a radiograph without a usable DICOM age: pneumonia is answered only for children, effusion only for adults",
        "input": INPUT.as_dict(), "parameters": int(model.count_params()), "sha256": sha256_file(path),
        "file_bytes": path.stat().st_size,
        "data": {t: {s: int(len(parts[s][t])) for s in ("train", "val", "test")} for t in SOURCES},
        "populations": {CHILD_TASK: "children aged 1-5 (Guangzhou)", ADULT_TASK: "adults (NIH Clinical Center)"},
        "preparation": "both sources: grey, 224 px (INTER_AREA), JPEG q75 round trip; then augmentation (aspect 0.8-1.25, "
                       "zoom 0.85-1, rotation 8 deg, flip, gamma/gain/offset, blur, JPEG q35-95, noise)",
        "training": {"epochs": epochs, "batch_size": batch_size, "optimizer": "adam, cosine from 2e-3",
                     "class_weight": weight, "seed": SEED, "history": history,
                     "chosen_epoch": int(max(history, key=lambda r: r["val_auc"] - r["val_loss"] * 1e-3)["epoch"]),
                     "wall_time_seconds": round(time.time() - t0, 1)},
        "thresholds": thr, "threshold_chosen_on": "validation (patient-grouped, from train)",
        "validation": {"auc": metrics.roc_auc(y["val"], pv), **_rates(pv, y["val"], thr)},
    }
    write_card_file(AGE_CHECK_DIR / "card.json", card)
    log.info("validation: %s", json.dumps(card["validation"]))
    return card


def score_test_once(why: str = "") -> dict:
    """The test look: each population's test split, as stored and re-encoded; written on the card (disclosed). A
    later look (`why` says why it was taken) keeps the earlier figures in `test_looks`; nothing is re-chosen."""
    model = load_age_check()
    card = json.loads((AGE_CHECK_DIR / "card.json").read_text())
    if card.get("test"):
        card["test_looks"][-1]["figures"] = {k: v for k, v in card["test"].items() if k != "invariance"}
    fr = _frames()
    files = [f for t in SOURCES for f in fr[t]["test"]["file"]]
    y = np.concatenate([fr[t]["test"]["child"].to_numpy() for t in SOURCES])
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.training.age_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--test", action="store_true", help="only the test look of the trained check (disclosed on its card)")
    ap.add_argument("--why", default="", help="with --test: why another look is taken (written on the card)")
    ap.add_argument("--predictions", action="store_true", help="only write val/test_predictions.csv beside the check")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.predictions:
        print(json.dumps(write_prediction_files(), indent=1))
        return 0
    if not a.test:
        train(a.epochs)
    print(json.dumps(score_test_once(a.why if a.test else ""), indent=1))
    write_prediction_files()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
