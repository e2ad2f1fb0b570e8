"""Using a saved site profile at scoring time: find it, refuse it for a changed model file, add its fields."""
from __future__ import annotations

from core.site import profiles
from core.site.validate import apply_calibration


def load_site(name: str, task: str, model_id: str | None = None, db=None) -> profiles.SiteProfile:
    """The profile, checked against the model file on disk now (ProfileError when it changed)."""
    p = profiles.get(name, task, model_id, db)
    profiles.check_model(p, profiles.current_sha256(p.task, p.model_id))
    return p


def site_fields(p: profiles.SiteProfile, probability: float | None) -> dict:
    """JSON keys a site adds to a scored row: its name and the site-calibrated probability (None if withheld)."""
    cal = None if probability is None else float(apply_calibration(probability, p.calibration))
    return {"site": p.name, "calibrated_probability": cal,
            "site_threshold_changed": p.changes_threshold}
