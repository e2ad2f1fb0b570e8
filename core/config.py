"""Where things live. One place, so the CLI, tests and app agree."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"


def data_root() -> Path:
    """Dataset root: `SECONDLOOK_DATA`, else `data/` in the repo (git-ignored)."""
    return Path(os.environ.get("SECONDLOOK_DATA", REPO_ROOT / "data")).expanduser().resolve()


def task_data_dir(task: str) -> Path:
    return data_root() / task


def dataset_available(task: str) -> bool:
    return (task_data_dir(task) / "manifest.csv").is_file()
