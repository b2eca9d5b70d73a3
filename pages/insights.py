"""Insights page: frequent labels, clusters with their representatives, duplicates, neighbour graph."""

from __future__ import annotations

import streamlit as st

from imgrec.app import support as sup
from imgrec.app import ui
from imgrec.errors import ImgrecError
from imgrec.insights.duplicates import DEFAULT_THRESHOLD
from imgrec.insights.graph import DEFAULT_K, DEFAULT_SAMPLE, MAX_SAMPLE
from imgrec.insights.graph import DEFAULT_THRESHOLD as GRAPH_THRESHOLD

COLS = 6
GROUPS_SHOWN = 20  # duplicate groups drawn (all are in the CSV)
MEMBERS_SHOWN = 6  # thumbnails per duplicate group
GRAPH_SHOWN = 30  # thumbnails for a graph selection
SECTIONS = {"labels": "Labels", "clusters": "Clusters", "duplicates": "Duplicates",
            "graph": "Neighbour graph"}

sup.ensure_routed()
st.title("Insights")
idx = sup.require_index()
n = len(idx)
paths = sup.all_paths(idx)

section = st.segmented_control("Section", list(SECTIONS), format_func=SECTIONS.get,
                               key="insights_section", required=True, default="labels",
                               label_visibility="collapsed", persist_state="session") or "labels"


def use_button(path: str, key: str) -> None:
    if st.button("Use as query", key=key, icon=":material/search:", type="tertiary"):
        sup.set_stored_queries([path])
        st.switch_page(sup.SEARCH_PAGE)


def grid(items: list[str], key: str, details: list[str] | None = None) -> None:
    for li, line in enumerate(ui.chunks(items, COLS)):
        for ci, (col, path) in enumerate(zip(st.columns(COLS), line, strict=False)):
            i = li * COLS + ci
            with col:
                sup.image_card(sup.thumbnail(idx, path),
                               ui.card_label("pick", "", details[i] if details else "", path))
                use_button(path, f"{key}-use-{i}")


# ---- labels --------------------------------------------------------------------------------
if section == "labels":
    st.subheader("Most frequent labels")
    if not idx.has_labels:
        st.info("This index holds no ImageNet labels (built by an older imgrec or an embedder "
                "without a classifier). Rebuild it on the Dataset page to get them.",
                icon=":material/label_off:")
    else:
        counts = sup.label_counts(idx, 50)
        st.caption(f"The {len(counts)} most frequent top-1 ImageNet classes the CNN gave the "
                   f"{n:,} images. Search by label on the Search page.")
        st.plotly_chart(ui.label_chart(counts), key="label_chart",
                        config={"displaylogo": False})

# ---- clusters ------------------------------------------------------------------------------
elif section == "clusters":
    st.subheader("Clusters")
    lo, hi, default = ui.cluster_k_bounds(n)
    k = (st.slider("Clusters (k)", lo, hi, default, key="insights_k", persist_state="session")
         if hi > lo else hi)
    res = sup.gallery_clusters(idx, k)
    st.caption(f"K-means on the CNN embeddings of {n:,} images, {res.k} clusters, largest "
               "first. Each shows the image nearest its centre; browse one to see its members.")
    chosen = st.session_state.get("insights_cluster")
    if not (isinstance(chosen, tuple) and chosen[:2] == (idx.version, res.k)):
        chosen = None
    for line in ui.chunks(list(range(res.k)), COLS):
        for col, c in zip(st.columns(COLS), line, strict=False):
            with col:
                rep = paths[int(res.representatives[c])]
                size = int(res.sizes[c])
                sup.image_card(sup.thumbnail(idx, rep),
                               ui.card_label("cluster", f"Cluster {c + 1}",
                                             f"{size:,} image{'s' if size != 1 else ''}", rep))
                if st.button("Browse", key=f"cluster-{c}", icon=":material/grid_view:",
                             type="primary" if chosen and chosen[2] == c else "secondary"):
                    st.session_state["insights_cluster"] = (idx.version, res.k, c)
                    st.session_state["cluster_page"] = 0
                    st.rerun()
    if chosen is not None:
        c = chosen[2]
        members = [paths[int(r)] for r in res.members(c)]
        st.subheader(f"Cluster {c + 1}: {len(members):,} image{'s' if len(members) != 1 else ''}")
        st.caption("Nearest to the cluster's centre first.")
        page = sup.pager("Members", len(members), ui.CLUSTER_PAGE, "cluster_page")
        grid(ui.page_of(members, page, ui.CLUSTER_PAGE), f"member-{c}")

# ---- duplicates ----------------------------------------------------------------------------
elif section == "duplicates":
    st.subheader("Duplicates")
    st.info("imgrec never deletes, moves or renames your files: this is a report. The CSV "
            "marks a suggested keeper per group (`keep`: most pixels, then largest file) and "
            "the others `review`, for you to act on.", icon=":material/shield:")
    threshold = st.slider("Near-duplicate threshold (cosine similarity)",
                          ui.DUPLICATE_MIN_THRESHOLD, 1.0, DEFAULT_THRESHOLD, 0.01,
                          key="dup_threshold", persist_state="session")
    rep = sup.duplicates(idx, threshold)
    c = st.columns(4)
    c[0].metric("Groups", f"{len(rep.groups):,}")
    c[1].metric("Exact-copy groups", f"{len(rep.exact):,}")
    c[2].metric("Near-duplicate groups", f"{len(rep.near):,}")
    c[3].metric("Images to review", f"{rep.redundant:,}")
    st.download_button("Download groups (CSV)", ui.duplicates_csv(rep).encode(),
                       "imgrec-duplicates.csv", "text/csv", on_click="ignore",
                       icon=":material/download:", key="dup_csv", disabled=not rep.groups)
    if not rep.groups:
        st.caption("No duplicates at this threshold.")
    for g in rep.groups[:GROUPS_SHOWN]:
        with st.container(border=True, key=f"dup-group-{g.id}"):
            st.markdown(f"**Group {g.id}** · {'exact copies' if g.kind == 'exact' else 'near-duplicates'}"
                        f" · {len(g.members)} images")
            shown = g.members[:MEMBERS_SHOWN]
            for col, (i, m) in zip(st.columns(MEMBERS_SHOWN), enumerate(shown), strict=False):
                with col:
                    sup.image_card(sup.thumbnail(idx, m.path),
                                   ui.card_label("keeper" if i == 0 else "duplicate",
                                                 "★ keeper" if i == 0 else "",
                                                 ui.member_detail(m, i == 0), m.path))
            if len(g.members) > MEMBERS_SHOWN:
                st.caption(f"and {len(g.members) - MEMBERS_SHOWN} more (all in the CSV)")
    if len(rep.groups) > GROUPS_SHOWN:
        st.caption(f"Showing the {GROUPS_SHOWN} largest of {len(rep.groups):,} groups; the CSV "
                   "holds them all.")

# ---- neighbour graph -----------------------------------------------------------------------
else:
    st.subheader("Neighbour graph")
    c1, c2, c3 = st.columns(3)
    gk = c1.slider("Neighbours per image (k)", 1, 10, DEFAULT_K, key="graph_k",
                   persist_state="session")
    gt = c2.slider("Link threshold (cosine)", 0.0, 0.95, GRAPH_THRESHOLD, 0.05,
                   key="graph_threshold", persist_state="session")
    most = min(n, MAX_SAMPLE)
    sample = (c3.slider("Images drawn", 2, most, min(DEFAULT_SAMPLE, most), key="graph_sample",
                        persist_state="session") if most > 2 else most)
    if n < 2:
        st.caption("The graph needs at least two images.")
        st.stop()
    try:
        g = sup.graph(idx, gk, gt, sample)
    except (ImgrecError, ValueError) as exc:
        st.error(f"Graph failed: {exc}", icon=":material/error:")
        st.stop()
    st.caption(f"{len(g.rows):,} images{' (a fixed random sample)' if len(g.rows) < n else ''}, "
               f"{len(g.edges):,} links, {g.n_communities:,} Louvain communities (modularity "
               f"{g.modularity:.2f}), built in {g.seconds:.1f} s. Draw a lasso or box to see "
               "images.")

    def _on_select() -> None:
        rows = ui.selected_rows(st.session_state.get("graph_chart"))
        current, _ = sup.load_index()
        try:
            st.session_state["graph_selected"] = current.paths(rows) if current and rows else []
        except (KeyError, ImgrecError):
            st.session_state["graph_selected"] = []

    st.plotly_chart(ui.graph_figure(g, [paths[int(r)] for r in g.rows]), key="graph_chart",
                    on_select=_on_select, selection_mode=("box", "lasso", "points"),
                    config={"displaylogo": False, "scrollZoom": True})
    selected = list(st.session_state.get("graph_selected") or [])
    if selected:
        st.subheader(f"{len(selected):,} selected")
        if len(selected) > GRAPH_SHOWN:
            st.caption(f"Showing the first {GRAPH_SHOWN}.")
        grid(selected[:GRAPH_SHOWN], "graph")
