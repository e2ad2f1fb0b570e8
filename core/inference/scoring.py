"""Scoring single images for the app: decode, the shared preprocessing, probability, Grad-CAM, worklists.

The probability comes from exactly the evaluation path (`read_image` -> `prepare` -> `predict_tensors`, rounded
to 8 decimals, then the card's calibration map `core.inference.calibrate.apply_calibration`), so the app shows the
same number `core.evaluate` wrote to test_predictions.csv. Nothing here writes to disk.
"""
from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.inference.calibrate import apply_calibration
from core.inference.decision import decide, input_checks
from core.inference.forward import predict_tensors
from core.inference.preprocess import prepare
from core.io import images as imageio
from core.io.images import InputError
from core.registry import ModelSpec, get_task

BASE_TYPES = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp")
DICOM_TYPES = ("dcm", "dicom")
DISPLAY_MAX_SIDE = 768


def upload_types() -> list[str]:
    return list(BASE_TYPES) + list(DICOM_TYPES)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Decoded:
    pixels: np.ndarray
    format: str
    notes: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    phi: object = None


def decode(data: bytes, name: str) -> Decoded:
    """Bytes -> pixels (+ format, notes, metadata, PHI when the decoder reports them). Raises InputError."""
    d = imageio.read_image_with_info(data, name)
    return Decoded(d.pixels, str(d.format), list(d.notes or []), dict(d.metadata or {}), d.phi)


def probability(model, spec: ModelSpec, pixels: np.ndarray, calibration: dict | None = None) -> float:
    """The evaluation path for one decoded image; `calibration` is the model card's (None: the raw score)."""
    x = prepare(pixels, spec.input)
    return apply_calibration(float(predict_tensors(model, x[None])[0]), calibration)


def heatmap(model, spec: ModelSpec, pixels: np.ndarray) -> np.ndarray:
    """Grad-CAM map (model input size, 0..1) of evidence FOR the finding."""
    from core.inference.explain import gradcam

    _, cam = gradcam(model, prepare(pixels, spec.input))
    return np.asarray(cam, dtype=np.float32)


def display_image(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """Downsized (never enlarged) uint8 copy for the browser; keeps grey as grey."""
    import cv2

    h, w = pixels.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return pixels
    return cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def png_bytes(img: np.ndarray) -> bytes:
    import cv2

    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("could not encode image")
    return buf.tobytes()


def jpeg_bytes(img: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode image")
    return buf.tobytes()


def thumbnail_url(pixels: np.ndarray, side: int = 96) -> str:
    """Small PNG as a data URL, for image columns in tables."""
    img = display_image(pixels, side)
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


@dataclass
class Scored:
    """One image through one model. `error` is the user-facing InputError message when it could not be read."""

    name: str
    digest: str
    probability: float | None = None
    heatmap: np.ndarray | None = None
    display: np.ndarray | None = None
    thumbnail: str = ""
    format: str = ""
    notes: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    phi: object = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # input guards: wrong kind of picture, unusual for the model
    withheld: str | None = None  # why no decision: the wrong kind of picture, or a film of another population
    looks_like: str = ""  # the modality the picture looks like ("xray", "smear"), for routing
    population: dict | None = None  # a chest film's population (core.inference.population), None otherwise

    @property
    def caution(self) -> str:
        """Short worklist label for the warnings ('' when none)."""
        labels = []
        for w in self.warnings:
            labels.append("Unusual for this model" if w.startswith("This image is unusual") else "Wrong kind of image?")
        return "; ".join(labels)

    @property
    def ok(self) -> bool:
        return self.error is None


def input_warnings(model_spec: ModelSpec, pixels: np.ndarray, ood=None) -> list[str]:
    """Plain-language cautions from `core.guard`: wrong modality for the task, or features unlike validation."""
    from core.inference.guard import modality_check

    out = []
    msg = modality_check(pixels, get_task(model_spec.task).modality)
    if msg:
        out.append(msg)
    if ood is not None:
        x = prepare(pixels, model_spec.input)
        if ood.is_unusual(x):
            out.append(
                "This image is unusual for this model: what the network 'sees' in it is further from the validation "
                f"images than {ood.quantile:.0%} of those images are. The probability may not be reliable here."
            )
    return out


def score_bytes(model, spec: ModelSpec, data: bytes, name: str, with_heatmap: bool = True, ood=None,
                with_display: bool = True, calibration: dict | None = None) -> Scored:
    """Decode and score one file; an unreadable file comes back with `error` set instead of raising.

    `calibration` (the model card's) maps the raw score to the probability shown, as in the stored predictions.

    `with_display=False` leaves out the display-size copy of the image (callers that cache many results keep
    them small and render the picture on demand).
    """
    d = digest(data)
    try:
        dec = decode(data, name)
    except InputError as exc:
        return Scored(name, d, error=str(exc))
    p = probability(model, spec, dec.pixels, calibration)
    cam = heatmap(model, spec, dec.pixels) if with_heatmap else None
    from core.inference.guard import modality_stats

    unusual = [w for w in input_warnings(spec, dec.pixels, ood) if w.startswith("This image is unusual")]
    withheld, film = input_checks(dec.pixels, spec.task, dec.phi)
    return Scored(name, d, p, cam, display_image(dec.pixels) if with_display else None, thumbnail_url(dec.pixels), dec.format, dec.notes,
                  dec.metadata, dec.phi, warnings=unusual, withheld=withheld,
                  looks_like=modality_stats(dec.pixels).looks_like, population=film.as_dict() if film else None)


def worklist(items: list[dict], threshold: float, task: str) -> pd.DataFrame:
    """Rows (name, probability, optional truth/thumbnail) -> table sorted by probability, with decisions.

    Unreadable files (probability None) go last with their error message.
    """
    t = get_task(task)
    df = pd.DataFrame(items)
    if df.empty:
        return pd.DataFrame(columns=["rank", "thumbnail", "file", "probability", "decision", "note"])
    if "probability" not in df:
        df["probability"] = np.nan
    prob = pd.to_numeric(df["probability"], errors="coerce")
    df["probability"] = prob
    reasons = df["withheld"].tolist() if "withheld" in df else [None] * len(df)
    df["withheld"] = pd.Series([w if isinstance(w, str) and w else None for w in reasons], index=df.index, dtype=object)
    df["decision"] = [  # core.inference.decision: no decision on the wrong kind of image, even when scored anyway
        decide(p, threshold, t, w).short(t.positive) if (w or not np.isnan(p)) else "could not read"
        for p, w in zip(prob.to_numpy(dtype=float), df["withheld"])
    ]
    df["_assessed"] = df["withheld"].isna() & prob.notna()
    df = (df.sort_values(["_assessed", "probability"], ascending=[False, False], na_position="last", kind="mergesort")
          .drop(columns="_assessed").reset_index(drop=True))
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def worklist_csv(df: pd.DataFrame, threshold: float, task: str, model_id: str) -> bytes:
    keep = [c for c in ("rank", "file", "probability", "decision", "withheld", "truth", "note") if c in df.columns]
    out = df[keep].copy()
    out["threshold"] = threshold
    out["task"] = task
    out["model"] = model_id
    return out.to_csv(index=False, float_format="%.8f").encode("utf-8")


def warm_up(model) -> None:
    """Trace the probability and Grad-CAM graphs once, so the first upload is not the one that waits (~0.1-0.7 s)."""
    from core.inference.explain import gradcam

    x = np.zeros(tuple(int(d) for d in model.inputs[0].shape[1:]), np.float32)
    predict_tensors(model, x[None])
    gradcam(model, x)


def measure_latency(model, spec: ModelSpec, repeats: int = 15, warmup: int = 3) -> dict[str, float]:
    """Median wall time to score one prepared image (ms), measured on this machine right now."""
    try:  # the model's own input shape (the registry's spec describes the same thing for bundled models)
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    except (AttributeError, TypeError, IndexError):
        shape = (spec.input.size, spec.input.size, spec.input.channels)
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    for _ in range(warmup):
        predict_tensors(model, x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_tensors(model, x)
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.quantile(times, 0.9)), "repeats": repeats}
