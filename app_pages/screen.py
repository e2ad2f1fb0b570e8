"""Predict (clinical): one upload box; every file is answered by the model validated for its kind (ui.routed)."""
from ui import common, routed

common.context()
routed.render()
