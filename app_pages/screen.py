"""Predict (clinical): one upload box; every file is answered by the model validated for its kind (ui.routed)."""
from ui import access, common, routed

access.require("score_xray", "score_smear")

common.context()
routed.render()
