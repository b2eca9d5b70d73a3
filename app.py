"""imgrec dashboard: `streamlit run app.py` — a router over the pages in ``pages/``."""

from __future__ import annotations

import logging

import streamlit as st

from imgrec.app import support as sup

st.set_page_config(page_title="imgrec — image recommender", page_icon=":material/photo_library:",
                   layout="wide")

pages = st.navigation([
    st.Page(sup.SEARCH_PAGE, title="Search", icon=":material/image_search:", default=True),
    st.Page(sup.EXPLORE_PAGE, title="Explore", icon=":material/scatter_plot:"),
    st.Page(sup.INSIGHTS_PAGE, title="Insights", icon=":material/insights:"),
    st.Page(sup.DATASET_PAGE, title="Dataset", icon=":material/photo_library:"),
])
st.html("""<style>
  [data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
  .imgrec-card { font-size: 0.85rem; line-height: 1.35; color: rgba(31, 35, 48, 0.72);
                 margin-top: -0.4rem; }
  .imgrec-card b { color: #1f2330; }
  .imgrec-path { font-size: 0.8rem; overflow-wrap: break-word; }
</style>""")
sup.sidebar()
sup.mark_routed()
try:
    pages.run()
except Exception as exc:  # last line of defence: a message, never a traceback
    logging.getLogger("imgrec.app").exception("page %s failed", pages.title)
    st.error(f"Unexpected error on this page: {type(exc).__name__}: {exc}", icon=":material/error:")
