"""Search page: drop up to five images (or pick gallery images) and see the most similar ones."""

from __future__ import annotations

import random
from dataclasses import replace

import streamlit as st

from imgrec.app import data, state, urlview, widgets
from imgrec.app.detail import show_if_open
from imgrec.app.filters import filter_panel
from imgrec.app.formatting import (
    METHOD_LABELS,
    METRIC_LABELS,
    PAGE_SIZE,
    results_csv,
)
from imgrec.app.known import known_uploads
from imgrec.app.queries import QuerySet, label_hint, validate_uploads
from imgrec.app.resources import wait_for_model
from imgrec.app.resultarea import (
    Results,
    View,
    compare_view,
    lists_shown,
    refine_view,
    results_view,
)
from imgrec.app.state import Key
from imgrec.errors import ImgrecError
from imgrec.features.embedding import BACKBONES
from imgrec.images import SUFFIXES
from imgrec.index.index import Index
from imgrec.search.rank import MAX_QUERIES, METHOD_METRIC


def _on_upload() -> None:
    check = validate_uploads(state.get(state.uploader_key()) or [])
    state.set_uploads(QuerySet(uploads=check.accepted), check.messages)


def uploader() -> None:
    st.file_uploader(f"Query images — drag and drop up to {MAX_QUERIES}", key=state.uploader_key(),
                     type=sorted(s.lstrip(".") for s in SUFFIXES), accept_multiple_files=True,
                     on_change=_on_upload,
                     help="JPEG, PNG, WEBP, BMP, GIF or TIFF. Each result also offers "
                          "“More like this” to search with a gallery image.")
    for msg in state.upload_messages():
        st.warning(msg, icon=":material/warning:")


def label_input(idx: Index) -> str:
    """The label text box: a query of its own, ranked in the same result area."""
    text = st.text_input(
        "Search by label", urlview.default(Key.LABEL_QUERY), key=Key.LABEL_QUERY,
        placeholder="dog, lakeside, espresso, cat…",
        disabled=not idx.has_labels, persist_state="session",
        help="Ranks the gallery by the probability the CNN gave to ImageNet classes matching "
             "the words (commas separate alternatives), with the same k as the image queries."
        if idx.has_labels else
        "This index holds no ImageNet labels: rebuild it on the Dataset page.")
    return text.strip() if idx.has_labels else ""


def controls(idx: Index, label: str) -> View:
    """Method, metric, k, label filter and PCA components."""
    c1, c2, c3, c4 = st.columns([3, 2, 3, 2])
    methods, metrics = list(METHOD_LABELS), list(METRIC_LABELS)
    method = c1.selectbox("Method", methods, methods.index(urlview.default(Key.METHOD)),
                          format_func=METHOD_LABELS.get, key=Key.METHOD, persist_state="session",
                          help="How the image queries are compared (a label search ranks by "
                               "label probability).")
    if method == "embedding":
        metric = c2.selectbox("Metric", metrics, metrics.index(urlview.default(Key.METRIC)),
                              format_func=METRIC_LABELS.get, key=Key.METRIC,
                              persist_state="session")
    else:
        metric = METHOD_METRIC[method]
        c2.selectbox("Metric", [metric], disabled=True, key=f"metric_{method}",
                     format_func=lambda m: "chi-square" if m == "chi2" else m,
                     help="Fixed by the method; the metric choice applies to embeddings.")
    k = c3.slider("Results per query (k)", *urlview.K_RANGE, urlview.default(Key.K), key=Key.K,
                  persist_state="session")
    label_filter = c4.text_input(
        "Label filter", key=Key.LABEL_FILTER, placeholder="e.g. cat", disabled=not idx.has_labels,
        persist_state="session",
        help="Keep only results whose top-5 ImageNet labels match these words.")
    pca_components = None
    if method == "pca":
        most = data.facts(idx).pca_components
        pca_components = st.slider("PCA components", 1, max(2, most), most,
                                   key=Key.PCA_COMPONENTS, disabled=most < 2,
                                   persist_state="session")
    wanted = label_filter.strip() if idx.has_labels else ""
    note = label_hint(wanted) if wanted else None
    return View(idx, state.queries(), method, metric, k, "" if note else wanted, pca_components,
                label, note, where=filter_panel(idx))


def no_queries(idx: Index) -> None:
    st.info("Drop one to five images above to find similar ones in the gallery of "
            f"{len(idx):,} images, type a label — or start from one of the gallery's own images.",
            icon=":material/upload:")
    if st.button("Try a random gallery image", icon=":material/shuffle:", key="random_query"):
        state.set_stored_queries([random.choice(data.all_paths(idx))])
        st.rerun()


def query_header(qs: QuerySet) -> None:
    """What is being searched, and a Clear that empties the uploader too."""
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    if qs.stored:
        c1.markdown("Searching with gallery image" + ("s " if len(qs.stored) > 1 else " ")
                    + ", ".join(f"`{p}`" for p in qs.stored))
    else:
        c1.markdown(f"Searching with {len(qs)} uploaded image{'s' if len(qs) > 1 else ''}")
    if c2.button("Clear", icon=":material/close:", key="clear_queries"):
        state.reset_queries()
        st.rerun()


def run_searches(v: View) -> Results | None:
    """The image search and the label search of ``v`` (None: nothing to show)."""
    image = label = None
    if v.qs:
        if v.qs.uploads and v.method == "embedding" and v.idx.model in BACKBONES:
            wait_for_model(v.idx.model)
        try:
            image = data.search(v.idx, v.qs, v.method, v.metric, v.k, v.pca_components,
                                v.where)
        except ImgrecError as exc:
            st.error(f"Search failed: {exc}", icon=":material/error:")
        else:
            state.set_last_search(v.idx.version, v.qs, sorted(
                {h.row for hs in image.per_query for h in hs} | {h.row for h in image.combined}))
    if v.label:
        try:
            label = data.label_search(v.idx, v.label, v.k)
        except ImgrecError as exc:
            st.warning(f"Label search: {exc}", icon=":material/label_off:")
    return Results(image, label) if image is not None or label is not None else None


def result_header(v: View, res: Results) -> bool:
    """The line above the results; returns whether "Compare methods" is on."""
    c1, c3, c2 = st.columns([3, 1, 1], vertical_alignment="bottom")
    compare = c3.toggle("Compare methods", key=Key.COMPARE, persist_state="session",
                        disabled=res.image is None,
                        help="The top-k of embedding, colour histogram and PCA colour side by "
                             "side (for image queries).") and res.image is not None
    head = f"**{v.k} result{'s' if v.k != 1 else ''} per query**"
    if res.image is not None and res.image.metric == "all":  # a union: may hold more than k
        most = max((len(h) for h in res.image.per_query), default=0)
        head = (f"**Top {v.k} of each metric**, their union ({most} images at most per "
                "query) ordered by cosine")
    if res.image is not None:
        metric_name = METRIC_LABELS.get(res.image.metric, "chi-square"
                                        if res.image.metric == "chi2" else res.image.metric)
        head += (f" · {METHOD_LABELS[v.method]} · "
                 f"{metric_name.lower() if v.method == 'embedding' else metric_name}")
    if res.label is not None:
        head += " · label probability"
    c1.markdown(head)
    c2.download_button("Download CSV", results_csv(*res.all()).encode(), "imgrec-results.csv",
                       "text/csv", on_click="ignore", icon=":material/download:", key="csv",
                       width="stretch")
    for r in res.all():
        for note in r.notes:
            st.caption(note)
    if v.filter_note:
        st.warning(f"Label filter: {v.filter_note}. Showing every result unfiltered.",
                   icon=":material/filter_alt_off:")
    elif v.label_filter:
        before = sum(len(h) for r in res.all() for h in r.per_query)
        after = sum(len(v.kept(h)) for r in res.all() for h in r.per_query)
        st.caption(f"Label filter “{v.label_filter}”: {after} of {before} results kept (ranks "
                   "unchanged).")
    return compare


def render() -> None:
    st.title("Search")
    idx = widgets.require_index()
    uploader()
    label = label_input(idx)
    v = controls(idx, label)
    if not (v.qs or v.label):
        no_queries(idx)
        return
    if v.qs:
        query_header(v.qs)
    res = run_searches(v)
    if v.qs.uploads and res is not None and res.image is not None:
        known_uploads(idx, v.qs)
    if res is None:
        return
    compare = result_header(v, res)
    longest = max((len(h) for h in lists_shown(v, res)), default=0)
    v = replace(v, page=widgets.pager("Ranks", longest, PAGE_SIZE, Key.RESULT_PAGE))
    if compare:
        compare_view(v)
    else:
        results_view(v, res)
        refine_view(v)
    show_if_open(idx)


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    render()
