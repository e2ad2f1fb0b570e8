"""PACS: list studies in the configured archive, fetch one into memory and score it (shown only with a PACS)."""
import streamlit as st

from ui import common, handoff

ctx = common.context()
st.title("PACS")
common.require_model(ctx)
common.require_intact_model(ctx)
handoff.pacs_browser(ctx)
