"""Turn the command line's INPUT arguments into one ordered list of file paths.

An INPUT is a file, a folder (searched recursively for image and DICOM suffixes), a glob (`**` allowed) or a
manifest CSV with a `path` column (relative paths are taken relative to the CSV's folder). A file named
explicitly is kept whatever its suffix, and one that does not exist still gets a row (with its error): a batch
reports on everything it was asked about. A folder or glob that yields nothing is a usage error, since it is
almost always a typo.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

import pandas as pd

from core.batch._core import IMAGE_SUFFIXES


class InputListError(ValueError):
    """An INPUT argument that cannot be expanded (with a message for the command line)."""


_GLOB_CHARS = set("*?[")


def is_glob(arg: str) -> bool:
    return bool(_GLOB_CHARS & set(arg)) and not Path(arg).exists()


def folder_images(folder: Path) -> list[str]:
    """Image/DICOM files under a folder, recursively, in a stable (sorted) order; hidden files skipped."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in sorted(files)
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    return out


def manifest_paths(csv_path: Path) -> list[str]:
    """The `path` column of a manifest CSV, relative entries resolved against the CSV's folder."""
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputListError(f"{csv_path}: cannot read the manifest CSV ({exc}).") from None
    if "path" not in df.columns:
        raise InputListError(f"{csv_path}: a manifest CSV needs a 'path' column; it has {list(df.columns)}.")
    base = csv_path.parent
    return [p if os.path.isabs(p) else os.path.join(base, p) for p in (s.strip() for s in df["path"]) if p]


def expand_one(arg: str) -> list[str]:
    path = Path(arg)
    if path.is_dir():
        found = folder_images(path)
        if not found:
            raise InputListError(f"{arg}: the folder holds no image or DICOM file ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        return found
    if path.suffix.lower() == ".csv" and path.is_file():
        return manifest_paths(path)
    if is_glob(arg):
        found = sorted(m for m in glob.glob(arg, recursive=True) if not os.path.isdir(m))
        if not found:
            raise InputListError(f"{arg}: the pattern matches no file.")
        return found
    return [arg]  # a file, or a missing one: its row will say so


def expand_inputs(args: list[str]) -> list[str]:
    """Every file the arguments name, first occurrence kept when the same path is named twice."""
    seen: set[str] = set()
    out: list[str] = []
    for arg in args:
        for p in expand_one(arg):
            key = os.path.normpath(p)
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out
