"""Explore page: the whole gallery as an interactive PCA scatter; select points to see them."""

from __future__ import annotations

from typing import Any

import streamlit as st

from imgrec.app import data, router, state, widgets
from imgrec.app.detail import open_detail, show_if_open
from imgrec.app.figures import Thumb, group_colours, scatter_figure
from imgrec.app.formatting import card_label, chunks
from imgrec.app.hover import plot_hover
from imgrec.app.insights import cluster_name
from imgrec.app.projection import (
    MAX_REP_THUMBS,
    Highlight,
    Projection,
    explained_text,
    group_labels,
    representatives,
    selected_rows,
    top_folder,
)
from imgrec.app.resources import load_index
from imgrec.app.state import Key
from imgrec.app.thumbs import PLOT_THUMB, plot_thumb_uri
from imgrec.app.widgets import cluster_slider
from imgrec.errors import ImgrecError
from imgrec.index.index import Index
from imgrec.search.rank import MAX_QUERIES

COLS = 6
MAX_SHOWN = 60  # thumbnails rendered for a selection
COLOURS = {"cluster": "K-means cluster", "gallery": "Clusters with representatives",
           "folder": "Top-level folder", "none": "Nothing"}


def controls(idx: Index) -> tuple[str, str, int, bool]:
    """Features, colouring, clusters and 3-D: ``(source, colour, k, three)``.

    Two rows of two, so that no label or option is cut on a laptop-sized window (one row
    of four left "Clusters with representatives" and "Colour histograms" clipped)."""
    c1, c2 = st.columns([1.1, 1], vertical_alignment="bottom")
    c3, c4 = st.columns([3, 1], vertical_alignment="bottom")
    source = c1.segmented_control("Features", list(data.SOURCES), format_func=data.SOURCES.get,
                                  key=Key.EXPLORE_SOURCE, required=True, default="embedding",
                                  persist_state="session") or "embedding"
    colour = c2.selectbox("Colour by", list(COLOURS), key=Key.EXPLORE_COLOUR,
                          format_func=COLOURS.get, persist_state="session",
                          help="The Insights page's K-means clusters of the CNN embeddings; "
                               "“with representatives” also marks the image nearest each "
                               "centre.")
    with c3:
        k, _ = cluster_slider(idx, Key.EXPLORE_K, disabled=colour not in ("cluster", "gallery"))
    three = c4.toggle("3-D", key=Key.EXPLORE_3D, persist_state="session")
    return source, colour, k, three


def colouring(idx: Index, source: str, colour: str, k: int, proj: Projection, three: bool
              ) -> tuple[list[str] | None, list[Highlight], list[Thumb]]:
    """Group label of each drawn point, extra marks and thumbnails for ``colour`` (each
    representative's, framed in its cluster's colour, in 2-D)."""
    all_paths = data.all_paths(idx)
    if colour == "folder":
        return group_labels([top_folder(all_paths[r]) for r in proj.rows]), [], []
    if colour not in ("cluster", "gallery"):
        return None, [], []
    found = data.clusters(idx, k)  # the Insights page's clusters: one function, one cache
    groups = [cluster_name(c) for c in found.labels[proj.rows]]
    if colour == "cluster":
        return groups, [], []
    rep = representatives(found, proj, data.matrix(idx, source), all_paths)
    thumbs = []
    if not three and len(rep.rows) <= MAX_REP_THUMBS:
        colours = group_colours(groups)
        for c, ((x, y, _), p) in enumerate(zip(rep.coords, rep.labels, strict=True)):
            name = cluster_name(c)
            if (img := data.small_thumbnail(idx, p, PLOT_THUMB)) is not None:
                thumbs.append(Thumb(float(x), float(y),
                                    plot_thumb_uri(img, colours.get(name), name), name))
    return groups, [rep], thumbs


def _on_select() -> None:
    """A box or lasso fills the grid below the plot; one point (a click) also opens it in
    the detail dialog."""
    rows = selected_rows(state.get(Key.EXPLORE_SCATTER))
    current, _ = load_index()
    try:
        paths = current.paths(rows) if current and rows else []
    except (KeyError, ImgrecError):  # the index changed under the plot: start over
        paths = []
    state.put(Key.EXPLORE_SELECTED, paths)
    if len(paths) == 1:
        open_detail(paths[0])


def plot(idx: Index, source: str, colour: str, k: int, three: bool) -> None:
    """The scatter in 2-D or 3-D (see :func:`_draw`)."""
    proj = data.projection(idx, source)
    groups, marks, thumbs = colouring(idx, source, colour, k, proj, False)
    what = "CNN embeddings" if source == "embedding" else "colour histograms"
    st.caption(f"PCA of the {what} of {len(idx):,} images: "
               f"{explained_text(proj.explained, 3 if three else 2)}. "
               "Stars are your queries, rings their results (from the Search page)."
               + (" Squares mark each cluster's representative." if colour == "gallery" else ""))
    if proj.sampled:
        st.info(f"The gallery holds {proj.total:,} images; the plot draws a fixed random sample "
                f"of {len(proj.rows):,} so the browser stays smooth. Queries and results are "
                "always drawn.", icon=":material/filter_alt:")
    all_paths = data.all_paths(idx)
    paths = [all_paths[r] for r in proj.rows]
    marks = marks + data.highlights(idx, source, proj)
    figs = {2: scatter_figure(proj, paths, groups, marks, dims=2, images=thumbs)}
    if three or state.get(Key.EXPLORE_3D_SEEN):
        state.put(Key.EXPLORE_3D_SEEN, True)
        figs[3] = scatter_figure(proj, paths, groups, marks, dims=3)
    _draw(figs, three)
    # hovering a point shows its thumbnail; a click on a 3-D point opens it (in 2-D the
    # chart's own selection does)
    plot_hover(idx, "explore", {"explore-plot-2": False, "explore-plot-3": True}, proj.rows,
               first=[r for h in marks for r in h.rows], on_click=open_detail,
               on_idle=None if 3 in figs else _build_3d_ahead)


def _build_3d_ahead() -> None:
    """Once the 2-D page is drawn and the browser idle, draw the 3-D scatter hidden: its
    WebGL scene takes the browser a second or more to build (seconds without a GPU), so
    switching to 3-D later only shows it."""
    state.put(Key.EXPLORE_3D_SEEN, True)


def _draw(figs: dict[int, Any], three: bool) -> None:
    """Both figures once 3-D has been built, the other one hidden: the browser keeps the 3-D
    scene it built (seconds of WebGL set-up) instead of building it anew at every toggle.
    The hidden 3-D one keeps its width (no ``display: none``), so it is built at its size."""
    config: dict[str, Any] = {"displaylogo": False, "scrollZoom": True}
    st.html("<style>.st-key-explore-plot-2 { display: none; }</style>" if three else
            "<style>.st-key-explore-plot-3 { height: 0; overflow: hidden; visibility: hidden; "
            "margin-top: -1rem; }</style>")
    with st.container(key="explore-plot-2"):
        st.plotly_chart(figs[2], key=Key.EXPLORE_SCATTER, on_select=_on_select,
                        selection_mode=("box", "lasso", "points"), config=config)
    if 3 in figs:
        with st.container(key="explore-plot-3"):
            st.plotly_chart(figs[3], key=Key.EXPLORE_3D_SCATTER, config=config)
    if three:
        st.caption("Rotate with the mouse; click a point to open its image. Selecting a group "
                   "of points works in 2-D: switch 3-D off.")

def _search_label(n: int) -> str:
    """The selection's search button: what it searches with.

    Examples:
        >>> [_search_label(n) for n in (1, 3, 9)]
        ['Search with this image', 'Search with these 3', 'Search with the first 5']
    """
    if n == 1:
        return "Search with this image"
    return f"Search with these {n}" if n <= MAX_QUERIES else f"Search with the first {MAX_QUERIES}"


def selection(idx: Index, three: bool) -> None:
    """The images of a lasso or box selection, each usable as a query."""
    selected = state.selected(Key.EXPLORE_SELECTED)
    if not selected:
        if not three:  # in 3-D the plot's own caption says how to select
            st.caption("Click a point to open its image (hovering shows it). Draw a lasso or "
                       "a box around points (pick either in the toolbar above the plot) to see "
                       "their images here.")
        return
    c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="center")
    c1.subheader(f"{len(selected):,} selected image{'s' if len(selected) != 1 else ''}")
    if c2.button(_search_label(len(selected)), type="primary",
                 icon=":material/image_search:", key="search_selected"):
        state.set_stored_queries(selected[:MAX_QUERIES])
        router.go("search")
    if c3.button("Clear", icon=":material/close:", key="clear_selected"):
        state.put(Key.EXPLORE_SELECTED, [])
        st.rerun()
    if len(selected) > MAX_SHOWN:
        st.caption(f"Showing the first {MAX_SHOWN} of {len(selected):,}; select fewer to see "
                   "others.")
    for li, line in enumerate(chunks(selected[:MAX_SHOWN], COLS)):
        for ci, (col, path) in enumerate(zip(st.columns(COLS), line, strict=False)):
            with col:
                widgets.image_card(data.thumbnail(idx, path), card_label("pick", "", path=path))
                widgets.use_button(path, f"use-{li * COLS + ci}")


def render() -> None:
    st.title("Explore")
    idx = widgets.require_index()
    source, colour, k, three = controls(idx)
    plot(idx, source, colour, k, three)
    selection(idx, three)
    show_if_open(idx)


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    render()
