"""Insights page: frequent labels, clusters with their representatives, duplicates, neighbour graph."""

from __future__ import annotations

import streamlit as st

from imgrec.app import data, state, widgets
from imgrec.app.detail import open_detail, show_if_open
from imgrec.app.duplicates import duplicates_view
from imgrec.app.figures import (
    community_captions,
    community_colour,
    community_thumbs,
    graph_figure,
    label_chart,
)
from imgrec.app.formatting import card_label, chunks, page_of
from imgrec.app.hover import plot_hover
from imgrec.app.insights import CLUSTER_PAGE, cluster_name, graph_threshold
from imgrec.app.projection import MAX_POINTS, selected_rows
from imgrec.app.resources import load_index
from imgrec.app.state import Key
from imgrec.app.thumbs import PLOT_THUMB, plot_thumb_uri
from imgrec.app.widgets import cluster_slider
from imgrec.errors import ImgrecError
from imgrec.index.index import Index
from imgrec.insights.graph import DEFAULT_K, DEFAULT_SAMPLE, MAX_SAMPLE

COLS = 6
GRAPH_SHOWN = 30  # thumbnails for a graph selection
GRAPH_PLOT = "graph-plot"  # the key of the graph's container
SECTIONS = {"labels": "Labels", "clusters": "Clusters", "duplicates": "Duplicates",
            "graph": "Neighbour graph"}


def grid(idx: Index, items: list[str], key: str, details: list[str] | None = None,
         close: str | None = None) -> None:
    for li, line in enumerate(chunks(items, COLS)):
        for ci, (col, path) in enumerate(zip(st.columns(COLS), line, strict=False)):
            i = li * COLS + ci
            with col:
                widgets.image_card(data.thumbnail(idx, path),
                                   card_label("pick", "", details[i] if details else "", path))
                widgets.use_button(path, f"{key}-use-{i}", close)


def labels_view(idx: Index) -> None:
    st.subheader("Most frequent labels")
    if not idx.has_labels:
        st.info("This index holds no ImageNet labels (built by an older imgrec or an embedder "
                "without a classifier). Rebuild it on the Dataset page to get them.",
                icon=":material/label_off:")
        return
    counts = data.label_counts(idx, 50)
    st.caption(f"The {len(counts)} most frequent top-1 ImageNet classes the CNN gave the "
               f"{len(idx):,} images. Search by label on the Search page.")
    st.plotly_chart(label_chart(counts), key="label_chart", config={"displaylogo": False})


def _cluster_cards(idx: Index, res, chosen: tuple | None) -> None:
    paths = data.all_paths(idx)
    for line in chunks(list(range(res.k)), COLS):
        for col, c in zip(st.columns(COLS), line, strict=False):
            with col:
                rep = paths[int(res.representatives[c])]
                size = int(res.sizes[c])
                widgets.image_card(data.thumbnail(idx, rep),
                                   card_label("cluster", cluster_name(c).capitalize(),
                                              f"{size:,} image{'s' if size != 1 else ''}", rep))
                if st.button("Browse", key=f"cluster-{c}", icon=":material/grid_view:",
                             type="primary" if chosen and chosen[2] == c else "secondary"):
                    state.put(Key.INSIGHTS_CLUSTER, (idx.version, res.k, c))
                    state.put(Key.CLUSTER_PAGE, 0)
                    state.put(Key.CLUSTER_OPEN, True)
                    st.rerun()


def clusters_view(idx: Index) -> None:
    st.subheader("Clusters")
    k, chose = cluster_slider(idx, Key.INSIGHTS_K)
    res = data.clusters(idx, k)
    of = f"{len(idx):,} images"
    if data.sharded(idx):
        from imgrec.shard.sample import describe

        of = f"{describe(idx, MAX_POINTS)} (every image counted in its nearest cluster)"
    st.caption(f"K-means on the CNN embeddings of {of}, {res.k} clusters "
               f"({chose}), numbered as `imgrec clusters` numbers them: cluster 0 is the "
               "largest. Each shows the image nearest its centre; browse one to see its members. "
               "The Explore page colours by the same clusters.")
    chosen = state.get(Key.INSIGHTS_CLUSTER)
    if not (isinstance(chosen, tuple) and chosen[:2] == (idx.version, res.k)):
        chosen = None
    _cluster_cards(idx, res, chosen)
    if chosen is not None and state.get(Key.CLUSTER_OPEN):
        members_dialog(idx, res, chosen[2])


@st.dialog("Cluster members", width="large", on_dismiss=lambda: state.pop(Key.CLUSTER_OPEN))
def members_dialog(idx: Index, res, c: int) -> None:
    """The members of cluster ``c`` where the user clicked "Browse" (a dialog over the page,
    paged; "Use as query" closes it and searches)."""
    paths = data.all_paths(idx)
    members = [paths[int(r)] for r in res.members(c)]
    st.subheader(f"{cluster_name(c).capitalize()}: {len(members):,} "
                 f"image{'s' if len(members) != 1 else ''}")
    st.caption("Nearest to the cluster's centre first.")
    page = widgets.pager("Members", len(members), CLUSTER_PAGE, Key.CLUSTER_PAGE)
    grid(idx, page_of(members, page, CLUSTER_PAGE), f"member-{c}", close=Key.CLUSTER_OPEN)


def _on_graph_select() -> None:
    rows = selected_rows(state.get(Key.GRAPH_CHART))
    current, _ = load_index()
    try:
        state.put(Key.GRAPH_SELECTED, current.paths(rows) if current and rows else [])
    except (KeyError, ImgrecError):
        state.put(Key.GRAPH_SELECTED, [])


def graph_view(idx: Index) -> None:
    st.subheader("Neighbour graph")
    n = len(idx)
    c1, c2, c3 = st.columns(3)
    gk = c1.slider("Neighbours per image (k)", 1, 10, DEFAULT_K, key=Key.GRAPH_K,
                   persist_state="session")
    gt = c2.slider("Link threshold (cosine)", 0.0, 0.95, graph_threshold(idx), 0.01,
                   key=Key.GRAPH_THRESHOLD, persist_state="session")
    most = min(n, MAX_SAMPLE)
    sample = (c3.slider("Images drawn", 2, most, min(DEFAULT_SAMPLE, most), key=Key.GRAPH_SAMPLE,
                        persist_state="session") if most > 2 else most)
    if n < 2:
        st.caption("The graph needs at least two images.")
        return
    try:
        g = data.graph(idx, gk, gt, sample)
    except (ImgrecError, ValueError) as exc:
        st.error(f"Graph failed: {exc}", icon=":material/error:")
        return
    drawn = " drawn across the shards" if data.sharded(idx) else ""
    st.caption(f"{len(g.rows):,} images{f' (a fixed random sample{drawn})' if len(g.rows) < n else ''}, "
               f"{len(g.edges):,} links, {g.n_communities:,} Louvain communities (modularity "
               f"{g.modularity:.2f}), built in {g.seconds:.1f} s. Hover a node to see its "
               "image, click it to open it; draw a lasso or box to see a group's images.")
    paths = data.all_paths(idx)
    labels = data.label_names_of(idx, g.rows)
    captions = community_captions(g, labels)
    with st.container(key=GRAPH_PLOT):
        st.plotly_chart(graph_figure(g, [paths[int(r)] for r in g.rows], labels,
                                     community_thumbs(g, _rep_uris(idx, g, captions), captions)),
                        key=Key.GRAPH_CHART,
                        on_select=_on_graph_select, selection_mode=("box", "lasso", "points"),
                        config={"displaylogo": False, "scrollZoom": True})
    # hovering a node shows its thumbnail, a click opens it in the detail dialog
    plot_hover(idx, "graph", {GRAPH_PLOT: True}, g.rows, on_click=open_detail)
    show_if_open(idx)
    selected = state.selected(Key.GRAPH_SELECTED)
    if selected:
        st.subheader(f"{len(selected):,} selected")
        page = widgets.pager("Selected images", len(selected), GRAPH_SHOWN, Key.GRAPH_PAGE)
        grid(idx, selected[page * GRAPH_SHOWN:(page + 1) * GRAPH_SHOWN], "graph")


def _rep_uris(idx: Index, g, captions: list[str]) -> list[str | None]:
    """A data URI of each named community's representative, framed in its colour on the
    graph and captioned."""
    paths = data.all_paths(idx)
    out: list[str | None] = []
    for c, (node, cap) in enumerate(zip(g.representatives, captions, strict=False)):
        img = data.small_thumbnail(idx, paths[int(g.rows[node])], PLOT_THUMB)
        out.append(plot_thumb_uri(img, community_colour(c), cap) if img is not None else None)
    return out


VIEWS = {"labels": labels_view, "clusters": clusters_view, "duplicates": duplicates_view,
         "graph": graph_view}


def render() -> None:
    st.title("Insights")
    idx = widgets.require_index()
    section = st.segmented_control("Section", list(SECTIONS), format_func=SECTIONS.get,
                                   key=Key.INSIGHTS_SECTION, required=True, default="labels",
                                   label_visibility="collapsed",
                                   persist_state="session") or "labels"
    VIEWS[section](idx)


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    render()
