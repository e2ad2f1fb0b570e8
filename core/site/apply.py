"""Using a saved site profile at scoring time: find it, refuse it for a changed model file, put it in the row context."""
from __future__ import annotations

import dataclasses
from functools import partial

from core.inference.rows import RowContext
from core.site import profiles
from core.site.validate import apply_calibration


def load_site(name: str, task: str, model_id: str | None = None, db=None) -> profiles.SiteProfile:
    """The profile, checked against the model file on disk now (ProfileError when it changed)."""
    p = profiles.get(name, task, model_id, db)
    profiles.check_model(p, profiles.current_sha256(p.task, p.model_id))
    return p


def with_site(ctx: RowContext, p: profiles.SiteProfile, threshold: float | None = None) -> RowContext:
    """`ctx` scoring for the site: its operating point (unless `threshold` overrides it), its name on every row and
    its recalibration as the row's `calibrated_probability`."""
    if (p.task, p.model_id) != (ctx.task, ctx.model):
        raise profiles.ProfileError(f"site profile {p.name!r} is for {p.task}/{p.model_id}, not {ctx.task}/{ctx.model}")
    return dataclasses.replace(ctx, threshold=float(p.threshold if threshold is None else threshold), site=p.name,
                               site_map=partial(apply_calibration, calibration=p.calibration))
