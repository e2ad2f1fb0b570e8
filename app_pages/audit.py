"""Audit log: which model said what about which image, when and where."""
import streamlit as st

from ui import audit_view

st.title("Audit log")
audit_view.audit_browser()
