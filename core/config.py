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


def home_dir() -> Path:
    """Folder of every database the app writes: `SECONDLOOK_HOME`, else a per-user data folder outside the repository
    (`$XDG_DATA_HOME/secondlook`, else `~/.local/share/secondlook`)."""
    env = os.environ.get("SECONDLOOK_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".local" / "share"
    return base / "secondlook"  # a relative XDG_DATA_HOME is invalid (XDG spec) and ignored


def data_file(name: str, env: str, beside: str | None = None) -> Path:
    """Path of the database `name`: the file named by the variable `env` wins; else, when `SECONDLOOK_HOME` is unset
    and the variable `beside` names a file, next to that file (where earlier versions kept it); else in home_dir()."""
    own = os.environ.get(env, "").strip()
    if own:
        return Path(own).expanduser()
    near = os.environ.get(beside, "").strip() if beside else ""
    if near and not os.environ.get("SECONDLOOK_HOME", "").strip():
        return Path(near).expanduser().parent / name
    return home_dir() / name


def private_db(path: Path) -> Path:
    """Ready `path` for SQLite so that only this user can read it: a folder made here is 0o700, the database (created
    empty here when missing) and any -wal/-shm/-journal beside it 0o600. Call again after SQLite made its -wal/-shm
    (it gives them the database's mode anyway). A file owned by another user is left as it is."""
    folder = path.parent
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode passes through the umask
        except FileExistsError:
            if not folder.is_dir():
                raise
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass  # another process made it first
    for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        try:
            if p.exists() and p.stat().st_mode & 0o777 != 0o600:
                os.chmod(p, 0o600)
        except PermissionError:
            pass
    return path
