"""PACS: list studies in the configured archive, fetch one into memory and score it (shown only with a PACS).

Every fetched image is routed as an upload is (ui.routed): a chest film is answered by each chest task only for its
own population."""
import streamlit as st

from ui import access, common, handoff, routed

access.require("score_xray")

common.context()
st.title("PACS")
files = handoff.pacs_browser()
if files:
    routed.render_study(files)
