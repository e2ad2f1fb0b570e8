"""Example images for demos: a few TEST-split images per task and class.

    python -m core.samples [--per-class 3] [--out sample_images]

copies them from the dataset (SECONDLOOK_DATA) into `sample_images/<task>/<label>/` (git-ignored) together with a
`sample_images/<task>/manifest.csv` (path,label,source_path), so the app's "Try an example" works offline. The app
takes examples from the dataset when it is there, else from `sample_images/`. Only the test split is used, so an
example is never an image a model was trained or tuned on.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from core.config import REPO_ROOT, dataset_available
from core.models.registry import TASKS, get_task

SAMPLES_DIR = REPO_ROOT / "sample_images"
EXAMPLE_SEED = 7


def pick_test_examples(manifest: pd.DataFrame, labels: tuple[str, str], per_class: int, seed: int = EXAMPLE_SEED) -> pd.DataFrame:
    """Deterministic pick of `per_class` test images per label, interleaved (negative, positive, negative, ...)."""
    test = manifest[manifest["split"] == "test"]
    picks = []
    for label in labels:
        rows = test[test["label"] == label]
        picks.append(rows.sample(n=min(per_class, len(rows)), random_state=seed).reset_index(drop=True))
    out = []
    for i in range(max((len(p) for p in picks), default=0)):
        for p in picks:
            if i < len(p):
                out.append(p.iloc[i])
    return pd.DataFrame(out).reset_index(drop=True) if out else manifest.iloc[:0]


def dataset_examples(task: str, per_class: int = 6) -> list[dict]:
    """Test-split examples straight from the dataset: dicts with path (manifest path), file (absolute), label."""
    from core.data import load_task_manifest

    t = get_task(task)
    df = pick_test_examples(load_task_manifest(task), t.labels, per_class)
    return [{"path": r.path, "file": r.file, "label": r.label, "source": "dataset test split"} for r in df.itertuples()]


def bundled_examples(task: str, root: Path = SAMPLES_DIR) -> list[dict]:
    """Examples previously copied by `python -m core.samples`."""
    man = root / task / "manifest.csv"
    if not man.is_file():
        return []
    df = pd.read_csv(man, dtype=str)
    out = []
    for r in df.itertuples():
        f = (man.parent / r.path).resolve()
        if f.is_file():
            out.append({"path": r.source_path, "file": str(f), "label": r.label, "source": "sample_images/ (test split)"})
    return out


def examples(task: str, per_class: int = 6) -> list[dict]:
    """Examples for "Try an example": the dataset's test split if present, else sample_images/, else none."""
    if dataset_available(task):
        return dataset_examples(task, per_class)
    return bundled_examples(task)


def write_samples(out: Path = SAMPLES_DIR, per_class: int = 3, tasks: list[str] | None = None) -> dict[str, int]:
    """Copy examples into `out/<task>/<label>/`; returns images written per task. Skips tasks without data."""
    written: dict[str, int] = {}
    for task in tasks or list(TASKS):
        if not dataset_available(task):
            print(f"{task}: dataset not found (set SECONDLOOK_DATA); skipped", file=sys.stderr)
            continue
        rows = []
        dest_root = out / task
        for ex in dataset_examples(task, per_class):
            rel = Path(ex["label"]) / Path(ex["path"]).name
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ex["file"], dest)
            rows.append({"path": rel.as_posix(), "label": ex["label"], "source_path": ex["path"]})
        pd.DataFrame(rows, columns=["path", "label", "source_path"]).to_csv(dest_root / "manifest.csv", index=False)
        written[task] = len(rows)
        print(f"{task}: {len(rows)} test images -> {dest_root}")
    return written
