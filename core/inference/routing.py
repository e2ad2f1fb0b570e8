"""Which task an input belongs to, by modality: a stained smear -> malaria; a radiograph -> the chest tasks.

Uses the same cheap statistic as the modality check (`core.inference.guard.modality_stats`), so an image is
routed to a task exactly when that task's check would let it through. A radiograph is ambiguous between the
two chest tasks: they answer different questions on different populations (pediatric pneumonia, adult
effusion), so a router never picks one of them silently.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from core.registry import TASKS, get_task

# The population each task's models were trained on (README, datasets' SOURCE.md).
POPULATION: dict[str, str] = {"pneumonia": "pediatric", "effusion": "adult", "malaria": "thin-smear red blood cells"}


@dataclass(frozen=True)
class Route:
    """The modality an image looks like and the tasks whose models take that modality (registry order)."""

    modality: str
    tasks: tuple[str, ...]

    @property
    def ambiguous(self) -> bool:
        return len(self.tasks) > 1

    def fits(self, task: str) -> bool:
        return task in self.tasks


def tasks_for(modality: str, available: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Tasks of a modality, optionally only those in `available` (e.g. tasks with a bundled model)."""
    return tuple(n for n, t in TASKS.items() if t.modality == modality and (available is None or n in available))


def route(pixels, available: tuple[str, ...] | None = None) -> Route:
    """The tasks an image belongs to by what it looks like."""
    from core.inference.guard import modality_stats

    modality = modality_stats(pixels).looks_like
    return Route(modality, tasks_for(modality, available))


def switch_suggestion(pixels, current_task: str, available: tuple[str, ...] | None = None) -> Route | None:
    """The route to offer when the image belongs to another task than `current_task`; None when it fits."""
    r = route(pixels, available)
    if get_task(current_task).modality == r.modality or not r.tasks:
        return None
    return r


def population(task: str) -> str:
    return POPULATION.get(task, get_task(task).title)


def auto_rows(files: list[str], score: Callable[..., dict]) -> Iterator[dict]:
    """`--task auto`: each file scored by the task(s) of its modality, one row per (file, task).

    `score(model, task, model_id, path, threshold, site, pixels)` builds a row (core.predict's `predict_file`,
    passed in so this module does not import the command). Each task uses its default model and shipped point.
    """
    from core.io.images import InputError, read_image
    from core.models.selection import default_model
    from core.models.store import bundled_models, load_model, read_card

    available = tuple(t for t in TASKS if bundled_models(t))
    loaded: dict[str, tuple] = {}
    for f in files:
        try:
            pixels = read_image(f)
        except InputError as exc:
            yield {"file": f, "ok": False, "error": str(exc), "routed": True}
            continue
        except Exception as exc:  # a batch must never die on one file
            yield {"file": f, "ok": False, "error": f"unexpected error while reading this file: {exc}", "routed": True}
            continue
        r = route(pixels, available)
        if not r.tasks:
            yield {"file": f, "ok": False, "routed": True, "modality": r.modality,
                   "error": f"this looks like a {r.modality} image, and no model for it is installed"}
            continue
        for task in r.tasks:
            if task not in loaded:
                mid = default_model(task)
                loaded[task] = (load_model(task, mid), mid, float(read_card(task, mid)["threshold"]))
            model, mid, thr = loaded[task]
            row = score(model, task, mid, f, thr, None, pixels)
            row.update({"routed": True, "modality": r.modality, "population": population(task)})
            if r.ambiguous:
                row["ambiguous"] = list(r.tasks)
            yield row
