"""SecondLook: a second look at medical images. Run with `streamlit run app.py` (or `make run`).

The entrypoint draws the shared sidebar (task, operating point; the model too in research mode) and routes to the
pages in app_pages/. Clinical mode (the default) shows one validated model per kind of image: Predict routes every
upload to it. Research mode (the sidebar switch, or `SECONDLOOK_RESEARCH=1`) adds the model picker and a "Research"
section: the workbench Predict page, threshold tuning, model comparison and the misclassified test images. With
sign-in, the pages a user's role may not use are left out of the navigation (ui.access; core.users holds the rules).
(The folder is not called `pages/`: Streamlit would treat that as the legacy multipage layout and run a page
without this entrypoint, i.e. without the shared sidebar.)
"""
import os
import sys
import time

import streamlit as st

from ui import access, deploy
from ui.common import research_mode, sidebar
from ui.handoff import pacs_configured

_t0 = time.perf_counter()

st.set_page_config(page_title="SecondLook", page_icon=":material/radiology:", layout="wide", initial_sidebar_state="expanded")
deploy.guard()  # local single-user mode banner, or one line on configuring sign-in and nothing else
# Tighter page margins so charts and tables keep their key numbers visible at 1280×800.
st.html(
    "<style>"
    "[data-testid='stMainBlockContainer']{padding-top:2.5rem;padding-left:2rem;padding-right:2rem;}"
    "</style>"
)

research = research_mode()
user = access.current_user()  # what their role may use decides which pages exist for them (local mode: all)
CLINICAL = [
    (None, st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True)),
    (("score_xray", "score_smear"), st.Page("app_pages/screen.py", title="Predict", icon=":material/image_search:",
                                            url_path="predict")),
    (("site_profiles",), st.Page("app_pages/site.py", title="Site validation", icon=":material/location_on:",
                                 url_path="site")),
    (("audit",), st.Page("app_pages/audit.py", title="Audit log", icon=":material/history:", url_path="audit")),
    (("monitor",), st.Page("app_pages/monitor.py", title="Monitoring", icon=":material/monitoring:",
                           url_path="monitoring")),
]
if pacs_configured():  # without a PACS the app works as before, with no PACS page
    CLINICAL.append((("score_xray",), st.Page("app_pages/pacs.py", title="PACS", icon=":material/lan:",
                                              url_path="pacs")))
RESEARCH = [
    st.Page("app_pages/predict.py", title="Predict with any model", icon=":material/biotech:", url_path="workbench"),
    st.Page("app_pages/threshold.py", title="Threshold tuning", icon=":material/tune:", url_path="threshold"),
    st.Page("app_pages/compare.py", title="Model comparison", icon=":material/compare:", url_path="compare"),
    st.Page("app_pages/review.py", title="Misclassified review", icon=":material/fact_check:", url_path="review"),
]
# A page the role may not use is not in the navigation at all: its URL falls back to Home.
ALLOWED = [p for actions, p in CLINICAL if actions is None or any(user.can(a) for a in actions)]
PAGES = {"SecondLook": ALLOWED, "Research": RESEARCH} if research else {"SecondLook": ALLOWED}

page = st.navigation(PAGES, position="sidebar")
access.sidebar_identity()
sidebar()
try:
    page.run()
finally:
    if os.environ.get("SECONDLOOK_TIMING"):  # performance checks: one line per script run on stderr
        print(f"[timing] {page.url_path or 'home'} {(time.perf_counter() - _t0) * 1000:.0f} ms", file=sys.stderr, flush=True)
