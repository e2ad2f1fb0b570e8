"""Fitting the input guards on a task's data and measuring them on the datasets: the making side of
`core.inference.guard`, which holds what runs on an upload (modality statistic, feature-space OOD check).

Public API: `measure_modality_guard`, `fit_and_save_ood`, `measure_ood` (`python -m core.guard`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.inference.guard import OOD_FILE, FeatureOOD, load_ood, modality_check, modality_stats

log = logging.getLogger(__name__)


def _variants(img: np.ndarray, modality: str) -> dict[str, np.ndarray]:
    """Realistic re-encodings used to check the guard's margin (made in memory)."""
    import io

    from PIL import Image

    def jpeg(a: np.ndarray, q: int) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    rgb = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img
    if modality == "xray":
        marked = rgb.copy()
        h, w = marked.shape[:2]
        marked[h // 20 : h // 20 + h // 10, w // 20 : w // 2] = (230, 30, 30)  # a red annotation box, 4.5% of the area
        return {"saved as RGB JPEG q75": jpeg(rgb, 75), "red annotation (4.5% of area)": marked}
    big = np.asarray(Image.fromarray(rgb).resize((256, 256), Image.BILINEAR))
    return {"JPEG q40": jpeg(rgb, 40), "upscaled to 256 px + JPEG q60": jpeg(big, 60)}


def measure_modality_guard(split: str = "test", limit: int | None = None, variants: bool = True) -> dict:
    """Warning rates on the real datasets: every task's `split` images sent to each modality's models.

    With `variants`, also re-encoded copies (RGB JPEG, annotation overlay, recompression, upscaling), in memory.
    """
    from core.config import dataset_available
    from core.data import load_task_manifest
    from core.io.images import read_image
    from core.registry import TASKS

    out: dict = {"split": split, "by_task": {}}
    fired = {("xray", "xray"): [0, 0], ("xray", "smear"): [0, 0], ("smear", "xray"): [0, 0], ("smear", "smear"): [0, 0]}
    stress: dict[tuple[str, str, str], list[int]] = {}
    for name, task in TASKS.items():
        if not dataset_available(name):
            continue
        df = load_task_manifest(name)
        files = df.loc[df["split"] == split, "file"].tolist()[:limit]
        p75 = []
        for f in files:
            img = read_image(f)
            s = modality_stats(img)
            p75.append(s.chroma_p75)
            for target in ("xray", "smear"):
                c = fired[(task.modality, target)]
                c[0] += modality_check(img, target) is not None
                c[1] += 1
            for label, v in (_variants(img, task.modality) if variants else {}).items():
                for target in ("xray", "smear"):
                    c = stress.setdefault((task.modality, label, target), [0, 0])
                    c[0] += modality_check(v, target) is not None
                    c[1] += 1
        p75 = np.asarray(p75)
        out["by_task"][name] = {"modality": task.modality, "n": len(files),
                                "chroma_p75_min": float(p75.min()) if len(p75) else None,
                                "chroma_p75_max": float(p75.max()) if len(p75) else None}
    out["rates"] = {
        f"{src} images -> {dst} model": {"fired": k, "n": n, "rate": (k / n if n else None)}
        for (src, dst), (k, n) in fired.items()
    }
    out["variants"] = {
        f"{src} images, {label} -> {dst} model": {"fired": k, "n": n, "rate": (k / n if n else None)}
        for (src, label, dst), (k, n) in stress.items()
    }
    return out


def fit_and_save_ood(task: str, model_id: str, root: str | Path | None = None, batch_size: int = 64) -> Path:
    """Fit FeatureOOD on the task's validation images through the (verified) model; write <model dir>/ood.npz.

    Run once per trained model, e.g. `python -m core.guard fit-ood --task effusion --model secondlook_cnn`.
    """
    from core.data import (
        load_arrays,
        load_task_manifest,
        manifest_sha256,
        split_train_val,
    )
    from core.registry import get_model_spec, get_task
    from core.models.store import load_model, model_dir, read_card

    spec = get_model_spec(task, model_id)
    model = load_model(task, model_id, root=root)
    _, val = split_train_val(load_task_manifest(task), get_task(task))
    if len(val) < 3:
        raise ValueError(f"{task}: only {len(val)} validation images; cannot fit OOD statistics")
    x = load_arrays(val["file"].tolist(), spec.input)
    ood = FeatureOOD.from_model(model, x, batch_size=batch_size)
    info = {"task": task, "model_id": model_id, "model_sha256": read_card(task, model_id, root).get("sha256"),
            "manifest_sha256": manifest_sha256(task), "n_val": len(val), "dim": ood.dim,
            "layer": "input of 'logit'", "quantile": ood.quantile}
    path = ood.save(model_dir(task, model_id, root) / OOD_FILE, **info)
    log.info("%s/%s: OOD statistics from %d validation images, threshold %.3f -> %s", task, model_id, len(val), ood.threshold, path)
    return path


def measure_ood(split: str = "test") -> list[dict]:
    """How often each bundled model's OOD flag fires on its own task's images and on the other tasks' images.

    Other tasks' images go through the model's own preprocessing (grey <-> RGB, resize), as an upload would.
    """
    from core.data import load_arrays, load_task_manifest
    from core.registry import TASKS, get_model_spec
    from core.models.store import bundled_models, load_model

    rows = []
    for task in TASKS:
        for model_id in bundled_models(task):
            model = load_model(task, model_id)
            ood = load_ood(task, model_id, model=model)
            if ood is None:
                continue
            spec = get_model_spec(task, model_id)
            row = {"task": task, "model": model_id}
            for other in TASKS:
                df = load_task_manifest(other)
                files = df[df["split"] == split]["file"].tolist()
                row[other] = float(np.mean(ood.is_unusual(load_arrays(files, spec.input))))
            rows.append(row)
    return rows
