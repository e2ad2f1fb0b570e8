"""Which task an input belongs to: each upload is recognised as a cell crop, a smear field or a chest radiograph.

The kind comes from the same cheap statistic as the modality check (`core.inference.guard.modality_stats`: grey
is a radiograph, stained colour a smear) and the picture's size (a smear picture at least FIELD_MIN_SIDE px a side
is a whole field, smaller a cell crop), so an image is routed to a task exactly when that task's check would let it
through. A radiograph goes to both chest tasks, and each answers only for its own population
(`core.inference.population`): an adult's film gets the effusion answer and the pneumonia answer withheld with the
reason, a young child's the reverse, a film whose age group is unsure neither. A field goes to field screening with
the field model and its field operating point (`core.fields`, passed in by the command); a cell crop to the cell
default.
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
    """The population a task's *models* were trained on (not the image's: see core.inference.population)."""
    return POPULATION.get(task, get_task(task).title)


KINDS = ("radiograph", "cell", "field")


def kind_of(pixels) -> str:
    """"radiograph", "cell" (one red-cell crop) or "field" (a whole smear field)."""
    from core.inference.decision import FIELD_MIN_SIDE
    from core.inference.guard import modality_stats

    if modality_stats(pixels).looks_like == "xray":
        return "radiograph"
    h, w = pixels.shape[:2]
    return "field" if min(h, w) >= FIELD_MIN_SIDE else "cell"


def auto_rows(files: list[str], score: Callable[..., dict], screen: Callable[..., dict] | None = None) -> Iterator[dict]:
    """Route each file by kind and answer it with the validated default: one row per (file, task) for a radiograph
    (both chest tasks, each deciding only for its own population), one for a cell crop, one field result for a
    field (`screen(path, pixels)`, from the command; without it the cell task withholds a field).

    `score(model, task, model_id, path, threshold, site, pixels, tags=, population=)` builds a row (core.predict's
    `predict_file`, passed in so this module does not import the command). Each task uses its default model and
    shipped point.
    """
    from core.inference import population as pop
    from core.io.images import InputError, read_image_with_info
    from core.models.selection import default_model
    from core.models.store import bundled_models, load_model, read_card

    available = tuple(t for t in TASKS if bundled_models(t))
    loaded: dict[str, tuple] = {}
    for f in files:
        try:
            dec = read_image_with_info(f)
        except InputError as exc:
            yield {"file": f, "ok": False, "error": str(exc), "routed": True}
            continue
        except Exception as exc:  # a batch must never die on one file
            yield {"file": f, "ok": False, "error": f"unexpected error while reading this file: {exc}", "routed": True}
            continue
        pixels, kind = dec.pixels, kind_of(dec.pixels)
        if kind == "field" and screen is not None:
            yield {**screen(f, pixels), "routed": True, "kind": kind}
            continue
        r = route(pixels, available)
        if not r.tasks:
            yield {"file": f, "ok": False, "routed": True, "kind": kind, "modality": r.modality,
                   "error": f"this looks like a {r.modality} image, and no model for it is installed"}
            continue
        film = pop.checked(pixels, dec.phi) if kind == "radiograph" else None
        for task in r.tasks:
            try:
                if task not in loaded:
                    mid = default_model(task)
                    loaded[task] = (load_model(task, mid), mid, float(read_card(task, mid)["threshold"]))
                model, mid, thr = loaded[task]
                row = score(model, task, mid, f, thr, None, pixels, tags=dec.phi, population=film)
            except Exception as exc:  # one file never stops the others
                row = {"file": f, "ok": False, "task": task,
                       "error": f"unexpected error while scoring this file: {type(exc).__name__}: {exc}"}
            row.update({"routed": True, "kind": kind, "modality": r.modality, "trained_on": population(task)})
            yield row
