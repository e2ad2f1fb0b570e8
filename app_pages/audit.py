"""Audit log: which model said what about which image, when and where."""
import streamlit as st

from ui import access, audit_view

access.require("audit")  # on the server too: a role without it gets nothing of this page

st.title("Audit log")
audit_view.audit_browser()
