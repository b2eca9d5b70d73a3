"""Search page: drop up to five images (or pick gallery images) and see the most similar ones."""

from __future__ import annotations

import random
from dataclasses import dataclass

import streamlit as st

from imgrec.app import data, state, urlview, widgets
from imgrec.app.formatting import (
    COMPARE_METHODS,
    METHOD_LABELS,
    METRIC_LABELS,
    PAGE_SIZE,
    card_label,
    chunks,
    format_score,
    overlap,
    page_of,
    results_csv,
)
from imgrec.app.queries import QuerySet, filter_hits_by_label, validate_uploads
from imgrec.app.state import Key
from imgrec.errors import ImgrecError
from imgrec.images import SUFFIXES
from imgrec.index.index import Index
from imgrec.search.rank import MAX_QUERIES, METHOD_METRIC, Hit, SearchResult

COLS = 5  # results per grid line
LABEL_K = 20  # results of a label search
UP, DOWN = ":material/thumb_up:", ":material/thumb_down:"
SHORT = {"embedding": "embedding", "color": "colour", "pca": "PCA colour"}


@dataclass(frozen=True)
class View:
    """What the controls ask for: the search, the label filter and the page of ranks."""

    idx: Index
    qs: QuerySet
    method: str
    metric: str
    k: int
    label_filter: str
    pca_components: int | None
    page: int = 0

    def kept(self, hits: list[Hit]) -> list[Hit]:
        """The hits that pass the label filter (all of them without a filter)."""
        return (filter_hits_by_label(self.idx, hits, self.label_filter) if self.label_filter
                else list(hits))


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


def label_search_view(idx: Index) -> None:
    """The label text box and its results (ImageNet class probabilities)."""
    text = st.text_input(
        "Search by label", urlview.default(Key.LABEL_QUERY), key=Key.LABEL_QUERY,
        placeholder="dog, lakeside, espresso, cat…",
        disabled=not idx.has_labels, persist_state="session",
        help="Ranks the gallery by the probability the CNN gave to ImageNet classes matching "
             "the words (commas separate alternatives)." if idx.has_labels else
             "This index holds no ImageNet labels: rebuild it on the Dataset page.")
    if not (text.strip() and idx.has_labels):
        return
    try:
        lres = data.label_search(idx, text, LABEL_K)
    except ImgrecError as exc:
        st.warning(f"Label search: {exc}", icon=":material/label_off:")
        return
    with st.container(border=True, key="results-label"):
        st.markdown(f"**Label search: {text.strip()}** · {len(lres.combined)} "
                    f"image{'s' if len(lres.combined) != 1 else ''}")
        for note in lres.notes:
            st.caption(note)
        for line in chunks(lres.combined, COLS):
            for col, hit in zip(st.columns(COLS, gap="medium"), line, strict=False):
                with col:
                    widgets.image_card(data.thumbnail(idx, hit.path),
                                       card_label("label", f"#{hit.rank}",
                                                  f"probability {hit.score:.2f}", hit.path))
                    st.button("More like this", key=f"more-label-{hit.rank}",
                              icon=":material/search:", type="tertiary",
                              on_click=state.set_stored_queries, args=([hit.path],))


def controls(idx: Index) -> View:
    """Method, metric, k, label filter and PCA components."""
    c1, c2, c3, c4 = st.columns([3, 2, 3, 2])
    methods, metrics = list(METHOD_LABELS), list(METRIC_LABELS)
    method = c1.selectbox("Method", methods, methods.index(urlview.default(Key.METHOD)),
                          format_func=METHOD_LABELS.get, key=Key.METHOD, persist_state="session")
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
    return View(idx, state.queries(), method, metric, k,
                label_filter.strip() if idx.has_labels else "", pca_components)


def no_queries(idx: Index) -> None:
    st.info("Drop one to five images above to find similar ones in the gallery of "
            f"{len(idx):,} images — or start from one of the gallery's own images.",
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


def result_header(v: View, result: SearchResult) -> bool:
    """The line above the results; returns whether "Compare methods" is on."""
    c1, c3, c2 = st.columns([3, 1, 1], vertical_alignment="bottom")
    compare = c3.toggle("Compare methods", key=Key.COMPARE, persist_state="session",
                        help="The top-k of embedding, colour histogram and PCA colour side by "
                             "side.")
    metric_name = METRIC_LABELS.get(result.metric, "chi-square" if result.metric == "chi2"
                                    else result.metric)
    c1.markdown(f"**{v.k} result{'s' if v.k != 1 else ''} per query** · "
                f"{METHOD_LABELS[v.method]} · "
                f"{metric_name.lower() if v.method == 'embedding' else metric_name}")
    c2.download_button("Download CSV", results_csv(result).encode(), "imgrec-results.csv",
                       "text/csv", on_click="ignore", icon=":material/download:", key="csv",
                       width="stretch")
    for note in result.notes:
        st.caption(note)
    if v.label_filter:
        before = sum(len(h) for h in result.per_query)
        after = sum(len(v.kept(h)) for h in result.per_query)
        st.caption(f"Label filter “{v.label_filter}”: {after} of {before} results kept (ranks "
                   "unchanged).")
    return compare


def result_card(idx: Index, hit: Hit, section: str, metric: str) -> None:
    widgets.image_card(data.thumbnail(idx, hit.path),
                       card_label("hit", f"#{hit.rank}", format_score(hit, metric), hit.path))
    marked = state.feedback().state(hit.path)
    with st.container(horizontal=True, gap="small"):
        st.button("More like this", key=f"more-{section}-{hit.rank}", icon=":material/search:",
                  type="tertiary", on_click=state.set_stored_queries, args=([hit.path],))
        st.button("", key=f"pos-{section}-{hit.rank}", icon=UP, on_click=state.mark,
                  args=(hit.path, "positive"), type="primary" if marked == "positive" else "tertiary",
                  help="Mark as a positive example for Refine (click again to unmark)")
        st.button("", key=f"neg-{section}-{hit.rank}", icon=DOWN, on_click=state.mark,
                  args=(hit.path, "negative"), type="primary" if marked == "negative" else "tertiary",
                  help="Mark as a negative example for Refine (click again to unmark)")


def result_row(idx: Index, title: str, query: tuple[bytes | None, str] | None, hits: list[Hit],
               section: str, metric: str, note: str = "mean over the queries") -> None:
    with st.container(border=True, key=f"results-{section}"):
        st.markdown(f"**{title}**")
        for li, line in enumerate(chunks(hits, COLS) or [[]]):
            cols = st.columns(COLS + 1, gap="medium")
            if li == 0:
                with cols[0]:
                    if query is not None:
                        widgets.image_card(query[0], card_label("query", "query", path=query[1]))
                    else:
                        st.markdown(card_label("combined", section, note),
                                    unsafe_allow_html=True)
            for col, hit in zip(cols[1:], line, strict=False):
                with col:
                    result_card(idx, hit, section, metric)


def compare_view(v: View) -> None:
    """The top-k of every method side by side, with how many images they share."""
    runs = {}
    for m in COMPARE_METHODS:
        try:
            runs[m] = data.search(v.idx, v.qs, m,
                                  "cosine" if m == "embedding" else METHOD_METRIC[m], v.k, None)
        except ImgrecError as exc:
            st.error(f"{METHOD_LABELS[m]} failed: {exc}", icon=":material/error:")
            return
    ov = overlap({m: [h.path for h in v.kept(r.combined)] for m, r in runs.items()})
    what = "combined ranking" if len(v.qs) > 1 else "results"
    st.markdown(f"**Compare methods** · top {v.k} {what} of each method · in all three: "
                f"**{ov.all}**")
    st.caption(" · ".join(f"{SHORT[a]} ∩ {SHORT[b]}: {n}" for (a, b), n in ov.pairs.items()))
    for col, m in zip(st.columns(3, gap="medium"), COMPARE_METHODS, strict=True):
        with col, st.container(border=True, key=f"compare-{m}"):
            others = [n for (a, b), n in ov.pairs.items() if m in (a, b)]
            st.markdown(f"**{METHOD_LABELS[m]}**")
            st.caption(f"shares {' and '.join(str(o) for o in others)} with the other two")
            for line in chunks(page_of(v.kept(runs[m].combined), v.page), 2):
                for c, hit in zip(st.columns(2), line, strict=False):
                    with c:
                        widgets.image_card(data.thumbnail(v.idx, hit.path),
                                           card_label("compare", f"#{hit.rank}",
                                                      format_score(hit, runs[m].metric), hit.path))


def results_view(v: View, result: SearchResult) -> None:
    """One row per query (query image first), then the combined ranking of several."""
    for qi, (label, hits) in enumerate(zip(result.queries, result.per_query, strict=True)):
        qimg = (data.thumbnail(v.idx, v.qs.stored[qi]) if v.qs.stored
                else data.upload_thumbnail(v.qs.uploads[qi].data))
        result_row(v.idx, f"Query {qi + 1}: {label}", (qimg, label),
                   page_of(v.kept(hits), v.page), f"q{qi}", result.metric)
    if len(result.queries) > 1:
        result_row(v.idx, "Combined ranking", None, page_of(v.kept(result.combined), v.page),
                   "combined", result.metric)


def refine_view(v: View) -> None:
    """The 👍 / 👎 marks, the negative weight, and the refined ranking once asked for."""
    fb = state.feedback()
    with st.container(border=True, key="refine-panel"):
        st.markdown("**Refine**")
        if fb:
            st.markdown(
                f"{UP} {len(fb.positives)}: " + (", ".join(f"`{p}`" for p in fb.positives) or "—")
                + f"  \n{DOWN} {len(fb.negatives)}: "
                + (", ".join(f"`{p}`" for p in fb.negatives) or "—"))
        else:
            st.caption(f"Mark results {UP} (more like this) or {DOWN} (less like this), up to "
                       f"{MAX_QUERIES} each, then refine: the queries and the {UP} images are the "
                       f"positive examples, the {DOWN} ones the negative, ranked by CNN embeddings "
                       "(cosine).")
        c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        weight = c1.slider("Negative weight", 0.0, 2.0, 0.5, 0.05, key=Key.NEGATIVE_WEIGHT,
                           persist_state="session",
                           help="score = mean cosine to positives − weight × mean cosine to "
                                "negatives")
        if c2.button("Refine", type="primary", key="refine", icon=":material/tune:",
                     disabled=not fb, width="stretch"):
            state.put(Key.REFINE_REQUEST, v.qs.cache_key())
        c3.button("Clear marks", key="clear_feedback", on_click=state.clear_feedback,
                  disabled=not fb, width="stretch")
    if not (fb and state.get(Key.REFINE_REQUEST) == v.qs.cache_key()):
        return
    try:
        refined = data.refine(v.idx, v.qs, fb, weight, v.k)
    except ImgrecError as exc:
        st.error(f"Refine failed: {exc}", icon=":material/error:")
        return
    for note in refined.notes:
        st.caption(note)
    result_row(v.idx, f"Refined ranking: {len(fb.positives)} {UP}, {len(fb.negatives)} {DOWN}, "
               f"weight {weight:g}", None, page_of(v.kept(refined.combined), v.page), "refined",
               refined.metric, "positives minus negatives")


def render() -> None:
    st.title("Search")
    idx = widgets.require_index()
    uploader()
    label_search_view(idx)
    v = controls(idx)
    if not v.qs:
        no_queries(idx)
        return
    query_header(v.qs)
    try:
        result = data.search(idx, v.qs, v.method, v.metric, v.k, v.pca_components)
    except ImgrecError as exc:
        st.error(f"Search failed: {exc}", icon=":material/error:")
        return
    state.set_last_search(idx.version, v.qs, sorted(
        {h.row for hs in result.per_query for h in hs} | {h.row for h in result.combined}))
    compare = result_header(v, result)
    page = widgets.pager("Ranks", v.k, PAGE_SIZE, Key.RESULT_PAGE)
    v = View(v.idx, v.qs, v.method, v.metric, v.k, v.label_filter, v.pca_components, page)
    if compare:
        compare_view(v)
    else:
        results_view(v, result)
        refine_view(v)


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    render()
