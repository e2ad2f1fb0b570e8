"""Demo samples: a few held-out TEST images per task, picked by a fixed rule, bundled in `sample_images/`.

The rule (model-independent, reviewable): per task and class, a seeded draw (`EXAMPLE_SEED`) of
`BUNDLE_PER_CLASS` images from the test split, among images whose licence allows redistribution; plus one DICOM
made in code from the first bundled effusion X-ray, so the DICOM path can be demoed. `python -m core.samples
--bundle` re-makes the set from the data root, and a test checks the bundled files are what the rule picks.

These are demo inputs only: no test or training code reads them as data. When the dataset is present, "Try an
example" draws from its test split instead.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import REPO_ROOT, dataset_available
from core.registry import TASKS, get_task

SAMPLES_DIR = REPO_ROOT / "sample_images"
EXAMPLE_SEED = 7
BUNDLE_PER_CLASS = 2
BUNDLE_MAX_BYTES = 2 * 2**20
DICOM_TASK = "effusion"

# Who may be redistributed, and what each source asks for. Effusion: only NIH-named files (the renamed `rxtorax_*`
# copies have an unknown upstream licence). No malaria_fields image: that dataset states no licence.
LICENCES = {
    "pneumonia": {
        "licence": "CC BY 4.0",
        "source": "Kermany D, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for "
                  "Classification. Mendeley Data, v2, 2018. doi:10.17632/rscbjbr9sj.2 (images downsampled to 224x224 "
                  "by a third party; see the dataset's SOURCE.md)",
        "citation": "Kermany DS, Goldbaum M, Cai W, et al. Identifying Medical Diagnoses and Treatable Diseases by "
                    "Image-Based Deep Learning. Cell 2018;172(5):1122-1131.e9. doi:10.1016/j.cell.2018.02.010",
        "acknowledgement": "Attribution required by CC BY 4.0 (this file). Changes: converted to 8-bit grayscale JPEG.",
    },
    "effusion": {
        "licence": "No restriction on use (NIH Clinical Center)",
        "source": "NIH Clinical Center ChestX-ray14, https://nihcc.app.box.com/v/ChestXray-NIHCC (resized to 256x256 PNG)",
        "citation": "Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale Chest X-ray Database "
                    "and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases. "
                    "IEEE CVPR 2017, pp. 3462-3471.",
        "acknowledgement": "The data are provided by the NIH Clinical Center (link and citation above, as NIH asks).",
    },
    "malaria": {
        "licence": "Public domain (U.S. Government work, NIH/NLM)",
        "source": "NIH/NLM LHNCBC malaria cell images (cell_images), resized to 64x64 JPEG",
        "citation": "Rajaraman S, Antani SK, Poostchi M, et al. Pre-trained convolutional neural networks as feature "
                    "extractors toward improved malaria parasite detection in thin blood smear images. PeerJ 2018; "
                    "6:e4568. doi:10.7717/peerj.4568",
        "acknowledgement": "Courtesy of the Lister Hill National Center for Biomedical Communications, U.S. National "
                           "Library of Medicine.",
    },
}


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


def redistributable(task: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows whose licence lets us ship the image (effusion: NIH-named files only)."""
    if task == "effusion":
        return manifest[manifest["nih_image_index"].fillna("").astype(str).str.len() > 0]
    return manifest


def bundle_picks(task: str) -> pd.DataFrame:
    """The rule's choice for one task, from the dataset (which must be present)."""
    from core.data import load_task_manifest

    t = get_task(task)
    return pick_test_examples(redistributable(task, load_task_manifest(task)), t.labels, BUNDLE_PER_CLASS)


def dicom_from_image(pixels: np.ndarray, source_sha256: str, label: str) -> bytes:
    """An uncompressed Secondary Capture DICOM of a grey image, with UIDs derived from the source's hash (so the
    same source always makes the same identifiers) and no patient data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    def uid(part: int) -> str:
        return f"2.25.{int(source_sha256[:30], 16) + part}"

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(3), uid(1), uid(2)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID = "SAMPLE^DEMO", "SECONDLOOK-SAMPLE"
    ds.Modality, ds.ConversionType, ds.BodyPartExamined = "OT", "WSD", "CHEST"
    ds.StudyDescription = "SecondLook demo sample (NIH ChestX-ray14 test image)"
    ds.SeriesDescription = f"Dataset label: {label}"
    ds.StudyDate = ds.SeriesDate = "20260101"
    ds.StudyTime = "000000"
    ds.set_pixel_data(np.ascontiguousarray(pixels, dtype=np.uint8), "MONOCHROME2", 8, generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(out: Path = SAMPLES_DIR, tasks: list[str] | None = None) -> dict[str, int]:
    """Re-make the bundled set by the rule; writes the files, one manifest per task and ATTRIBUTION.md."""
    from core.io.images import read_image

    written: dict[str, int] = {}
    records: list[dict] = []
    for task in tasks or list(TASKS):
        if not dataset_available(task):
            print(f"{task}: dataset not found (set SECONDLOOK_DATA); skipped", file=sys.stderr)
            continue
        dest_root = out / task
        if dest_root.exists():
            shutil.rmtree(dest_root)
        rows = []
        for ex in bundle_picks(task).itertuples():
            rel = Path(ex.label) / Path(ex.path).name
            (dest_root / rel).parent.mkdir(parents=True, exist_ok=True)
            data = Path(ex.file).read_bytes()
            (dest_root / rel).write_bytes(data)
            rows.append({"path": rel.as_posix(), "label": ex.label, "source_path": ex.path, "sha256": _sha(data),
                         "format": "as in the dataset"})
            if task == DICOM_TASK and ex.label == get_task(task).positive and not any(r["format"].startswith("DICOM") for r in rows):
                dcm = dicom_from_image(read_image(data), _sha(data), ex.label)
                drel = Path("dicom") / (Path(ex.path).stem + ".dcm")
                (dest_root / drel).parent.mkdir(parents=True, exist_ok=True)
                (dest_root / drel).write_bytes(dcm)
                rows.append({"path": drel.as_posix(), "label": ex.label, "source_path": ex.path, "sha256": _sha(dcm),
                             "format": "DICOM Secondary Capture made in code from the PNG above"})
        pd.DataFrame(rows).to_csv(dest_root / "manifest.csv", index=False)
        records += [{"task": task, **r} for r in rows]
        written[task] = len(rows)
        print(f"{task}: {len(rows)} files -> {dest_root}")
    (out / "ATTRIBUTION.md").write_text(attribution_text(records))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if total > BUNDLE_MAX_BYTES:
        raise RuntimeError(f"bundled samples are {total / 2**20:.2f} MB, over the {BUNDLE_MAX_BYTES / 2**20:g} MB budget")
    return written


SCREENSHOTS = {"predict.png": "effusion/EFFUSION/00006968_002.png"}  # docs/img file -> the bundled sample it shows


def attribution_text(records: list[dict]) -> str:
    lines = [
        "# sample_images/: attribution",
        "",
        "Demo inputs for \"Try an example\" and the model-comparison page when no dataset is on the machine. They are",
        "held-out **test-split** images (no model was trained or tuned on them); no test or training code reads them.",
        "",
        "**The rule that chose them** (re-made by `python -m core.samples --bundle`; `tests/test_samples.py` checks the",
        f"files are what it picks): for each task and class, a seeded draw (`random_state={EXAMPLE_SEED}`) of",
        f"{BUNDLE_PER_CLASS} images from the test split, among images whose licence allows redistribution (effusion: NIH-named",
        "files only, not the renamed `rxtorax_*` copies; no `malaria_fields` images, whose licence is not stated). One",
        "DICOM is made in code from the first bundled effusion image so the DICOM path can be demoed.",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in records):
        lic = LICENCES[task]
        lines += [f"## {task}", "", f"- Licence: {lic['licence']}", f"- Source: {lic['source']}",
                  f"- Citation: {lic['citation']}", f"- Acknowledgement: {lic['acknowledgement']}", "",
                  "| file | label | dataset path | sha256 | format |", "|---|---|---|---|---|"]
        lines += [f"| `{task}/{r['path']}` | {r['label']} | `{r['source_path']}` | `{r['sha256'][:16]}…` | {r['format']} |"
                  for r in records if r["task"] == task]
        lines.append("")
    lines += ["## Screenshots in docs/img/", "",
              "They show only the samples above (made by `python -m benchmarks.screenshots`, the app run without datasets):",
              "", "| screenshot | shows |", "|---|---|"]
    lines += [f"| `docs/img/{name}` | `{shown}` |" for name, shown in SCREENSHOTS.items()]
    lines.append("")
    return "\n".join(lines)


def dataset_examples(task: str, per_class: int = 6) -> list[dict]:
    """Test-split examples straight from the dataset: dicts with path (manifest path), file (absolute), label."""
    from core.data import load_task_manifest

    t = get_task(task)
    df = pick_test_examples(load_task_manifest(task), t.labels, per_class)
    return [{"path": r.path, "file": r.file, "label": r.label, "source": "dataset test split"} for r in df.itertuples()]


def bundled_examples(task: str, root: Path = SAMPLES_DIR) -> list[dict]:
    """The bundled demo set of a task (sample_images/<task>/manifest.csv)."""
    man = root / task / "manifest.csv"
    if not man.is_file():
        return []
    df = pd.read_csv(man, dtype=str)
    out = []
    for r in df.itertuples():
        f = (man.parent / r.path).resolve()
        if f.is_file():
            out.append({"path": f"sample_images/{task}/{r.path}", "file": str(f), "label": r.label,
                        "source": "bundled sample from the held-out test split"})
    return out


def examples(task: str, per_class: int = 6) -> list[dict]:
    """Examples for "Try an example": the dataset's test split if present, else the bundled samples."""
    if dataset_available(task):
        return dataset_examples(task, per_class)
    return bundled_examples(task)
