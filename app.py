"""SecondLook: a second look at medical images. Run with `streamlit run app.py` (or `make run`).

The entrypoint draws the shared sidebar (task, model, operating point) and routes to the pages in app_pages/.
(The folder is not called `pages/`: Streamlit would treat that as the legacy multipage layout and run a page
without this entrypoint, i.e. without the shared sidebar.)
"""
import os
import sys
import time

import streamlit as st

from ui.common import sidebar
from ui.handoff import pacs_configured

_t0 = time.perf_counter()

st.set_page_config(page_title="SecondLook", page_icon=":material/radiology:", layout="wide", initial_sidebar_state="expanded")
# Tighter page margins so charts and tables keep their key numbers visible at 1280×800.
st.html(
    "<style>"
    "[data-testid='stMainBlockContainer']{padding-top:2.5rem;padding-left:2rem;padding-right:2rem;}"
    "</style>"
)

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/image_search:", url_path="predict"),
    st.Page("app_pages/threshold.py", title="Threshold tuning", icon=":material/tune:", url_path="threshold"),
    st.Page("app_pages/compare.py", title="Model comparison", icon=":material/compare:", url_path="compare"),
    st.Page("app_pages/review.py", title="Misclassified review", icon=":material/fact_check:", url_path="review"),
    st.Page("app_pages/audit.py", title="Audit log", icon=":material/history:", url_path="audit"),
]
if pacs_configured():  # without a PACS the app works as before, with no PACS page
    PAGES.append(st.Page("app_pages/pacs.py", title="PACS", icon=":material/lan:", url_path="pacs"))

page = st.navigation(PAGES, position="sidebar")
sidebar()
try:
    page.run()
finally:
    if os.environ.get("SECONDLOOK_TIMING"):  # performance checks: one line per script run on stderr
        print(f"[timing] {page.url_path or 'home'} {(time.perf_counter() - _t0) * 1000:.0f} ms", file=sys.stderr, flush=True)
