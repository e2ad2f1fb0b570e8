"""Streamlit glue shared by the pages: sidebar state, cached models and predictions, small render helpers.

All computation lives in `core` (pure functions); this package only wires it to widgets and caches.
"""
