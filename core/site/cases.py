"""A site's labelled cases, from a manifest CSV (CLI), uploaded images + a labels CSV, or a zip (app).

Columns: `path` (or `file`), `label`, optional `patient_id`. Labels are the task's class names (any case) or
0/1. Everything is checked before anything is scored, and every problem is reported with the row or file it
is in: unknown labels, missing files, duplicate rows, duplicate images, unreadable images, one class only.
Uploads are read in memory only; nothing is written to disk.
"""
from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from core.io.images import InputError, read_image
from core.registry import TaskSpec, get_task

MAX_PROBLEMS_SHOWN = 12
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom")


class SiteInputError(ValueError):
    """The site's cases cannot be used as given; `problems` lists each one (row or file named)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        super().__init__("; ".join(shown) + (f"; and {more} more problem(s)" if more > 0 else ""))


@dataclass
class SiteCases:
    """Decoded, labelled cases in row order. `groups` holds patient ids when the CSV had them."""

    names: list[str]
    y: np.ndarray
    pixels: list[np.ndarray]
    groups: list[str] | None = None
    unit: str = "patient"  # what a group is (patient; field for cells cut from smear fields)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Row:
    line: int  # line number in the CSV (the header is line 1)
    path: str
    label: str
    patient_id: str | None


def label_value(label: str, task: TaskSpec) -> int | None:
    """0/1 for a task's class name (any case) or '0'/'1'; None when unknown."""
    v = str(label).strip()
    if v in ("0", "1"):
        return int(v)
    low = v.lower()
    if low == task.positive.lower():
        return 1
    if low == task.negative.lower():
        return 0
    return None


def parse_labels_csv(text: str, source: str = "labels CSV") -> list[Row]:
    """Rows of a `path,label[,patient_id]` CSV (header required; `file` is accepted for `path`)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    reader.fieldnames = fields
    path_col = "path" if "path" in fields else "file" if "file" in fields else None
    if path_col is None or "label" not in fields:
        raise SiteInputError([f"{source}: needs a header with 'path' (or 'file') and 'label' columns, found {fields or 'none'}"])
    rows = []
    for i, rec in enumerate(reader, start=2):
        pid = (rec.get("patient_id") or "").strip() if "patient_id" in fields else None
        rows.append(Row(i, (rec.get(path_col) or "").strip(), (rec.get("label") or "").strip(), pid or None))
    if not rows:
        raise SiteInputError([f"{source}: has a header but no cases"])
    return rows


def _check_rows(rows: list[Row], task: TaskSpec, source: str) -> tuple[list[str], np.ndarray]:
    problems: list[str] = []
    first: dict[str, int] = {}
    y = np.zeros(len(rows), np.int8)
    expected = f"{task.negative}, {task.positive}, 0 or 1"
    for k, r in enumerate(rows):
        if not r.path:
            problems.append(f"{source} row {r.line}: empty path")
        elif r.path in first:
            problems.append(f"{source} row {r.line}: '{r.path}' is a duplicate of row {first[r.path]}")
        else:
            first[r.path] = r.line
        v = label_value(r.label, task)
        if v is None:
            problems.append(f"{source} row {r.line} ('{r.path}'): unknown label '{r.label}'; expected {expected}")
        else:
            y[k] = v
    with_pid = [r.patient_id is not None for r in rows]
    if any(with_pid) and not all(with_pid):
        missing = [str(r.line) for r in rows if r.patient_id is None][:5]
        problems.append(f"{source}: patient_id is empty on row(s) {', '.join(missing)}; give it on every row or on none")
    return problems, y


def _one_class(y: np.ndarray, task: TaskSpec) -> str | None:
    if y.size and (y.min() == y.max()):
        only = task.positive if y[0] == 1 else task.negative
        return f"all {y.size} cases are labelled {only}; local validation needs cases of both classes ({task.negative} and {task.positive})"
    return None


def _decode_all(items: list[tuple[str, object]], source: str) -> tuple[list[np.ndarray | None], list[str]]:
    """Decode (name, path-or-bytes) pairs in parallel; problems name the file."""
    def one(item):
        name, src = item
        try:
            return read_image(src, name), None
        except InputError as exc:
            return None, f"{source}: '{name}' could not be read: {exc}"
        except FileNotFoundError:
            return None, f"{source}: file '{name}' not found"

    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(one, items))
    return [p for p, _ in out], [e for _, e in out if e]


def _duplicate_images(names: list[str], digests: list[str], source: str) -> list[str]:
    seen: dict[str, str] = {}
    out = []
    for n, d in zip(names, digests):
        if d in seen:
            out.append(f"{source}: '{n}' is the same image as '{seen[d]}' (identical bytes)")
        else:
            seen[d] = n
    return out


def _finish(rows: list[Row], task: TaskSpec, sources: list[tuple[str, object]], source: str, problems: list[str], y) -> SiteCases:
    missing = [f"{source} row {r.line}: file '{r.path}' not found" for r, (_, s) in zip(rows, sources) if s is None]
    problems = problems + missing
    if problems:
        raise SiteInputError(problems)
    one = _one_class(y, task)
    if one:
        raise SiteInputError([f"{source}: {one}"])
    data = [s if isinstance(s, (bytes, bytearray)) else Path(s).read_bytes() for _, s in sources]  # each file read once
    problems += _duplicate_images([r.path for r in rows], [hashlib.sha256(d).hexdigest() for d in data], source)
    pixels, bad = _decode_all([(r.path, d) for r, d in zip(rows, data)], source)
    problems += bad
    if problems:
        raise SiteInputError(problems)
    groups = [r.patient_id for r in rows] if rows and rows[0].patient_id is not None else None
    return SiteCases([r.path for r in rows], y.astype(np.int8), pixels, groups)


def from_manifest(path: str | Path, task: str | TaskSpec) -> SiteCases:
    """CLI: a manifest CSV on disk; relative paths are relative to the manifest's folder."""
    t = get_task(task) if isinstance(task, str) else task
    path = Path(path)
    if not path.is_file():
        raise SiteInputError([f"manifest '{path}' not found"])
    source = path.name
    rows = parse_labels_csv(path.read_text(encoding="utf-8-sig"), source)
    problems, y = _check_rows(rows, t, source)
    sources = []
    for r in rows:
        p = Path(r.path) if Path(r.path).is_absolute() else path.parent / r.path
        sources.append((r.path, p if r.path and p.is_file() else None))
    return _finish(rows, t, sources, source, problems, y)


def _match(name: str, files: dict[str, bytes]) -> bytes | None:
    """An upload by exact name, else by its base name when that is unique."""
    if name in files:
        return files[name]
    base = PurePosixPath(name.replace("\\", "/")).name
    hits = [k for k in files if PurePosixPath(k.replace("\\", "/")).name == base]
    return files[hits[0]] if len(hits) == 1 else None


def from_uploads(files: dict[str, bytes], labels_csv: bytes, task: str | TaskSpec, source: str = "labels CSV") -> SiteCases:
    """App: several uploaded images (name -> bytes) and a labels CSV naming them."""
    t = get_task(task) if isinstance(task, str) else task
    try:
        text = labels_csv.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SiteInputError([f"{source}: is not UTF-8 text"]) from None
    rows = parse_labels_csv(text, source)
    problems, y = _check_rows(rows, t, source)
    sources = [(r.path, _match(r.path, files) if r.path else None) for r in rows]
    named = {r.path for r in rows} | {PurePosixPath(r.path).name for r in rows}
    unlabelled = [n for n in files if n not in named and PurePosixPath(n).name not in named]
    problems += [f"image '{n}' is not in the {source}" for n in unlabelled]
    return _finish(rows, t, sources, source, problems, y)


def from_zip(data: bytes, task: str | TaskSpec) -> SiteCases:
    """App: one zip holding the images and exactly one CSV (labels), read in memory."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise SiteInputError(["the upload is not a readable zip file"]) from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/") and not PurePosixPath(n).name.startswith(".")
                 and "__MACOSX" not in n]
        csvs = [n for n in names if n.lower().endswith(".csv")]
        if len(csvs) != 1:
            raise SiteInputError([f"the zip must hold exactly one labels CSV, found {len(csvs)}" + (f": {', '.join(csvs)}" if csvs else "")])
        prefix = str(PurePosixPath(csvs[0]).parent)
        files = {}
        for n in names:
            if n.lower().endswith(IMAGE_SUFFIXES):
                rel = str(PurePosixPath(n).relative_to(prefix)) if prefix not in ("", ".") and n.startswith(prefix + "/") else n
                files[rel] = zf.read(n)
        return from_uploads(files, zf.read(csvs[0]), task, source=PurePosixPath(csvs[0]).name)


def from_arrays(crops: np.ndarray, y, names: list[str], groups: list[str] | None = None, unit: str = "patient") -> SiteCases:
    """Cases already in memory (e.g. cells cut from annotated smear fields, grouped by field)."""
    y = np.asarray(y).astype(np.int8)
    return SiteCases(list(names), y, [c for c in crops], list(map(str, groups)) if groups is not None else None, unit)
