"""Read the malaria_fields manifest and per-cell boxes (one place, so eval, crops and tests agree)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import task_data_dir

DATASET = "malaria_fields"
INFECTED_TYPES = ("ring", "trophozoite", "schizont", "gametocyte")


@dataclass(frozen=True)
class FieldAnnotation:
    """One field's annotated boxes. `boxes` are (x, y, w, h) top-left, in image pixels."""

    path: str
    image_path: Path
    split: str
    session: str
    boxes: np.ndarray  # (N, 4) int
    types: tuple[str, ...]
    infected: np.ndarray  # (N,) bool; False for difficult boxes
    difficult: np.ndarray  # (N,) bool


def dataset_dir() -> Path:
    return task_data_dir(DATASET)


def load_manifest() -> pd.DataFrame:
    """The field manifest (path, split, session, width, height, n_boxes, ...)."""
    path = dataset_dir() / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"malaria_fields manifest not found at {path}; set SECONDLOOK_DATA")
    return pd.read_csv(path)


def load_cells() -> pd.DataFrame:
    """All annotated boxes, one row per box (path, x, y, w, h, type, infected)."""
    path = dataset_dir() / "cells.csv"
    if not path.is_file():
        raise FileNotFoundError(f"malaria_fields cells.csv not found at {path}; set SECONDLOOK_DATA")
    return pd.read_csv(path)


def parse_sessions(split_or_sessions: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'train' / 'test' / 'S2,S3' / ['S2'] -> session ids. Test is S1; train is S2 and S3."""
    if isinstance(split_or_sessions, str):
        items = [s.strip() for s in split_or_sessions.split(",") if s.strip()]
    else:
        items = list(split_or_sessions)
    out: list[str] = []
    for item in items:
        if item == "train":
            out += ["S2", "S3"]
        elif item == "test":
            out += ["S1"]
        elif item in ("S1", "S2", "S3"):
            out.append(item)
        else:
            raise ValueError(f"unknown split or session {item!r}; use train, test, S1, S2 or S3")
    return tuple(dict.fromkeys(out))


def load_fields(split_or_sessions: str | list[str] | tuple[str, ...]) -> list[FieldAnnotation]:
    """Fields of the given split(s)/session(s) in file-name order, each with its boxes."""
    sessions = parse_sessions(split_or_sessions)
    manifest = load_manifest()
    manifest = manifest[manifest["session"].isin(sessions)].sort_values("path")
    cells = load_cells()
    grouped = {p: g for p, g in cells.groupby("path")}
    root = dataset_dir()
    fields = []
    for row in manifest.itertuples(index=False):
        g = grouped.get(row.path)
        if g is None:
            g = cells.iloc[:0]
        types = tuple(str(t) for t in g["type"])
        difficult = np.array([t == "difficult" for t in types], dtype=bool)
        infected = np.array([t in INFECTED_TYPES for t in types], dtype=bool)
        fields.append(
            FieldAnnotation(
                path=row.path,
                image_path=root / row.path,
                split=row.split,
                session=row.session,
                boxes=g[["x", "y", "w", "h"]].to_numpy(dtype=np.int64).reshape(-1, 4),
                types=types,
                infected=infected,
                difficult=difficult,
            )
        )
    return fields
