"""Datasets: manifests, leak-free splits by patient, prepared arrays, stain normalisation (`stain`), demo samples.

Public API: `read_manifest`, `load_task_manifest`, `manifest_path`, `manifest_sha256` (manifests),
`group_keys`, `split_train_val`, `SPLIT_SEED`, `grouped_kfold`, `patient_column`, `CV_SEED` (splits),
`load_arrays` (arrays). `core.data.samples` picks the demo images.
"""
from core.data.arrays import load_arrays
from core.data.manifests import load_task_manifest, manifest_path, manifest_sha256, read_manifest
from core.data.splits import CV_SEED, SPLIT_SEED, group_keys, grouped_kfold, patient_column, split_train_val

__all__ = ["CV_SEED", "SPLIT_SEED", "group_keys", "grouped_kfold", "load_arrays", "load_task_manifest", "manifest_path",
           "manifest_sha256", "patient_column", "read_manifest", "split_train_val"]
