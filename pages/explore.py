"""Explore page: the whole gallery as an interactive PCA scatter; select points to see them."""

from __future__ import annotations

import streamlit as st

from imgrec.app import support as sup
from imgrec.app import ui
from imgrec.errors import ImgrecError
from imgrec.search.rank import MAX_QUERIES

COLS = 6
MAX_SHOWN = 60  # thumbnails rendered for a selection

sup.ensure_routed()
st.title("Explore")
idx = sup.require_index()
n = len(idx)

c1, c2, c3, c4 = st.columns([3, 2, 3, 1], vertical_alignment="bottom")
source = c1.segmented_control("Features", list(sup.SOURCES), format_func=sup.SOURCES.get,
                              key="explore_source", required=True, default="embedding",
                              persist_state="session") or "embedding"
colour = c2.selectbox("Colour by", ["cluster", "gallery", "folder", "none"], key="explore_colour",
                      format_func={"cluster": "K-means cluster",
                                   "gallery": "Clusters with representatives",
                                   "folder": "Top-level folder", "none": "Nothing"}.get,
                      persist_state="session",
                      help="“Clusters with representatives”: the Insights page's clusters of the "
                           "CNN embeddings, each marked by the image nearest its centre.")
max_k = max(3, min(30, n))
n_clusters = c3.slider("Clusters", 2, max_k, min(8, max_k), key="explore_k",
                       disabled=colour not in ("cluster", "gallery"), persist_state="session")
three = c4.toggle("3-D", key="explore_3d", persist_state="session")
dims = 3 if three else 2

proj = sup.projection(idx, source)
all_paths = sup.all_paths(idx)
paths = [all_paths[r] for r in proj.rows]
groups = None
marks: list[ui.Highlight] = []
thumbs: list[tuple[float, float, str]] = []
if colour == "cluster":
    groups = [f"cluster {c + 1}" for c in sup.clusters(idx, source, proj, n_clusters)]
elif colour == "gallery":
    found = sup.gallery_clusters(idx, n_clusters)
    groups = [f"cluster {int(c) + 1}" for c in found.labels[proj.rows]]
    rep = ui.representatives(found, proj, sup.matrix(idx, source), all_paths)
    marks = [rep]
    if not three and len(rep.rows) <= ui.MAX_REP_THUMBS:
        thumbs = [(float(x), float(y), ui.data_uri(img)) for (x, y, _), p in
                  zip(rep.coords, rep.labels, strict=True)
                  if (img := sup.small_thumbnail(idx, p)) is not None]
elif colour == "folder":
    groups = ui.group_labels([ui.top_folder(p) for p in paths])

what = "CNN embeddings" if source == "embedding" else "colour histograms"
st.caption(f"PCA of the {what} of {n:,} images: {ui.explained_text(proj.explained, dims)}. "
           "Stars are your queries, rings their results (from the Search page)."
           + (" Squares mark each cluster's representative." if colour == "gallery" else ""))
if proj.sampled:
    st.info(f"The gallery holds {proj.total:,} images; the plot draws a fixed random sample of "
            f"{len(proj.rows):,} so the browser stays smooth. Queries and results are always "
            "drawn.", icon=":material/filter_alt:")


def _on_select() -> None:
    rows = ui.selected_rows(st.session_state.get("explore_scatter"))
    current, _ = sup.load_index()
    try:
        st.session_state["explore_selected"] = current.paths(rows) if current and rows else []
    except (KeyError, ImgrecError):  # the index changed under the plot: start over
        st.session_state["explore_selected"] = []


fig = ui.scatter_figure(proj, paths, groups, marks + sup.highlights(idx, source, proj), dims=dims,
                       images=thumbs)
config = {"displaylogo": False, "scrollZoom": True}
if three:
    st.plotly_chart(fig, key="explore_scatter_3d", config=config)
    st.caption("Rotate with the mouse. Switch 3-D off to select points.")
else:
    st.plotly_chart(fig, key="explore_scatter", on_select=_on_select,
                    selection_mode=("box", "lasso", "points"), config=config)

selected = list(st.session_state.get("explore_selected") or [])
if not selected:
    st.caption("Draw a lasso or a box around points (toolbar above the plot) to see their "
               "images here.")
    st.stop()

c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="center")
c1.subheader(f"{len(selected):,} selected image{'s' if len(selected) != 1 else ''}")
if c2.button(f"Search with the first {min(MAX_QUERIES, len(selected))}", type="primary",
             icon=":material/image_search:", key="search_selected"):
    sup.set_stored_queries(selected[:MAX_QUERIES])
    st.switch_page(sup.SEARCH_PAGE)
if c3.button("Clear", icon=":material/close:", key="clear_selected"):
    st.session_state["explore_selected"] = []
    st.rerun()
if len(selected) > MAX_SHOWN:
    st.caption(f"Showing the first {MAX_SHOWN} of {len(selected):,}; select fewer to see others.")
for li, line in enumerate(ui.chunks(selected[:MAX_SHOWN], COLS)):
    for ci, (col, path) in enumerate(zip(st.columns(COLS), line, strict=False)):
        with col:
            sup.image_card(sup.thumbnail(idx, path), ui.card_label("pick", "", path=path))
            if st.button("Use as query", key=f"use-{li * COLS + ci}", icon=":material/search:",
                         type="tertiary"):
                sup.set_stored_queries([path])
                st.switch_page(sup.SEARCH_PAGE)
