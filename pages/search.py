"""Search page: drop up to five images (or pick gallery images) and see the most similar ones."""

from __future__ import annotations

import random

import streamlit as st

from imgrec.app import support as sup
from imgrec.app import ui
from imgrec.errors import ImgrecError
from imgrec.images import SUFFIXES
from imgrec.search.rank import MAX_QUERIES, METHOD_METRIC

COLS = 5  # results per grid line
LABEL_K = 20  # results of a label search
UP, DOWN = ":material/thumb_up:", ":material/thumb_down:"

sup.ensure_routed()
st.title("Search")
idx = sup.require_index()


def _on_upload() -> None:
    check = ui.validate_uploads(st.session_state.get("uploader") or [])
    st.session_state["queries"] = ui.QuerySet(uploads=check.accepted)
    st.session_state["upload_messages"] = check.messages
    st.session_state["result_page"] = 0


st.file_uploader(f"Query images — drag and drop up to {MAX_QUERIES}", key="uploader",
                 type=sorted(s.lstrip(".") for s in SUFFIXES), accept_multiple_files=True,
                 on_change=_on_upload,
                 help="JPEG, PNG, WEBP, BMP, GIF or TIFF. Each result also offers "
                      "“More like this” to search with a gallery image.")
for msg in st.session_state.get("upload_messages", ()):
    st.warning(msg, icon=":material/warning:")

label_text = st.text_input(
    "Search by label", key="label_query", placeholder="dog, lakeside, espresso, cat…",
    disabled=not idx.has_labels, persist_state="session",
    help="Ranks the gallery by the probability the CNN gave to ImageNet classes matching the "
         "words (commas separate alternatives)." if idx.has_labels else
         "This index holds no ImageNet labels: rebuild it on the Dataset page.")
if label_text.strip() and idx.has_labels:
    try:
        lres = sup.label_search(idx, label_text, LABEL_K)
    except ImgrecError as exc:
        st.warning(f"Label search: {exc}", icon=":material/label_off:")
    else:
        with st.container(border=True, key="results-label"):
            st.markdown(f"**Label search: {label_text.strip()}** · {len(lres.combined)} "
                        f"image{'s' if len(lres.combined) != 1 else ''}")
            for note in lres.notes:
                st.caption(note)
            for line in ui.chunks(lres.combined, COLS):
                for col, hit in zip(st.columns(COLS, gap="medium"), line, strict=False):
                    with col:
                        sup.image_card(sup.thumbnail(idx, hit.path),
                                       ui.card_label("label", f"#{hit.rank}",
                                                     f"probability {hit.score:.2f}", hit.path))
                        st.button("More like this", key=f"more-label-{hit.rank}",
                                  icon=":material/search:", type="tertiary",
                                  on_click=sup.set_stored_queries, args=([hit.path],))

c1, c2, c3, c4 = st.columns([3, 2, 3, 2])
method = c1.selectbox("Method", list(ui.METHOD_LABELS), format_func=ui.METHOD_LABELS.get,
                      key="method", persist_state="session")
if method == "embedding":
    metric = c2.selectbox("Metric", list(ui.METRIC_LABELS), format_func=ui.METRIC_LABELS.get,
                          key="metric", persist_state="session")
else:
    metric = METHOD_METRIC[method]
    c2.selectbox("Metric", [metric], disabled=True, key=f"metric_{method}",
                 format_func=lambda m: "chi-square" if m == "chi2" else m,
                 help="Fixed by the method; the metric choice applies to embeddings.")
k = c3.slider("Results per query (k)", 1, 50, 5, key="k", persist_state="session")
label_filter = c4.text_input(
    "Label filter", key="label_filter", placeholder="e.g. cat", disabled=not idx.has_labels,
    persist_state="session",
    help="Keep only results whose top-5 ImageNet labels match these words.")
label_filter = label_filter.strip() if idx.has_labels else ""
pca_components = None
if method == "pca":
    most = int(idx.manifest["pca_components"])
    pca_components = st.slider("PCA components", 1, max(2, most), most, key="pca_components",
                               disabled=most < 2, persist_state="session")

qs = sup.queries()
if not qs:
    st.info("Drop one to five images above to find similar ones in the gallery of "
            f"{len(idx):,} images — or start from one of the gallery's own images.",
            icon=":material/upload:")
    if st.button("Try a random gallery image", icon=":material/shuffle:", key="random_query"):
        sup.set_stored_queries([random.choice(sup.all_paths(idx))])
        st.rerun()
    st.stop()

if qs.stored:
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    c1.markdown("Searching with gallery image" + ("s " if len(qs.stored) > 1 else " ")
                + ", ".join(f"`{p}`" for p in qs.stored))
    if c2.button("Clear", icon=":material/close:", key="clear_stored"):
        sup.reset_queries()
        st.rerun()

try:
    result = sup.search(idx, qs, method, metric, k, pca_components)
except ImgrecError as exc:
    st.error(f"Search failed: {exc}", icon=":material/error:")
    st.stop()
st.session_state["last_search"] = {
    "version": idx.version, "queries": qs,
    "rows": sorted({h.row for hs in result.per_query for h in hs} | {h.row for h in result.combined})}

c1, c3, c2 = st.columns([3, 1, 1], vertical_alignment="bottom")
compare = c3.toggle("Compare methods", key="compare", persist_state="session",
                    help="The top-k of embedding, colour histogram and PCA colour side by side.")
metric_name = ui.METRIC_LABELS.get(result.metric, "chi-square" if result.metric == "chi2"
                                   else result.metric)
c1.markdown(f"**{k} result{'s' if k != 1 else ''} per query** · {ui.METHOD_LABELS[method]} · "
            f"{metric_name.lower() if method == 'embedding' else metric_name}")
c2.download_button("Download CSV", ui.results_csv(result).encode(), "imgrec-results.csv",
                   "text/csv", on_click="ignore", icon=":material/download:", key="csv",
                   width="stretch")
for note in result.notes:
    st.caption(note)


def kept(hits: list) -> list:
    """The hits that pass the label filter (all of them without a filter)."""
    return ui.filter_hits_by_label(idx, hits, label_filter) if label_filter else list(hits)


if label_filter:
    before = sum(len(h) for h in result.per_query)
    after = sum(len(kept(h)) for h in result.per_query)
    st.caption(f"Label filter “{label_filter}”: {after} of {before} results kept (ranks "
               "unchanged).")

page = sup.pager("Ranks", k, ui.PAGE_SIZE, "result_page")


def result_card(hit, section: str, metric: str) -> None:
    sup.image_card(sup.thumbnail(idx, hit.path),
                   ui.card_label("hit", f"#{hit.rank}", ui.format_score(hit, metric), hit.path))
    marked = sup.feedback().state(hit.path)
    with st.container(horizontal=True, gap="small"):
        st.button("More like this", key=f"more-{section}-{hit.rank}", icon=":material/search:",
                  type="tertiary", on_click=sup.set_stored_queries, args=([hit.path],))
        st.button("", key=f"pos-{section}-{hit.rank}", icon=UP, on_click=sup.mark,
                  args=(hit.path, "positive"), type="primary" if marked == "positive" else "tertiary",
                  help="Mark as a positive example for Refine (click again to unmark)")
        st.button("", key=f"neg-{section}-{hit.rank}", icon=DOWN, on_click=sup.mark,
                  args=(hit.path, "negative"), type="primary" if marked == "negative" else "tertiary",
                  help="Mark as a negative example for Refine (click again to unmark)")


def result_row(title: str, query: tuple[bytes | None, str] | None, hits: list, section: str,
               note: str = "mean over the queries", metric: str | None = None) -> None:
    with st.container(border=True, key=f"results-{section}"):
        st.markdown(f"**{title}**")
        for li, line in enumerate(ui.chunks(hits, COLS) or [[]]):
            cols = st.columns(COLS + 1, gap="medium")
            if li == 0:
                with cols[0]:
                    if query is not None:
                        sup.image_card(query[0], ui.card_label("query", "query", path=query[1]))
                    else:
                        st.markdown(ui.card_label("combined", section, note),
                                    unsafe_allow_html=True)
            for col, hit in zip(cols[1:], line, strict=False):
                with col:
                    result_card(hit, section, metric or result.metric)


def compare_view() -> None:
    """The top-k of every method side by side, with how many images they share."""
    runs = {}
    for m in ui.COMPARE_METHODS:
        try:
            runs[m] = sup.search(idx, qs, m, "cosine" if m == "embedding" else METHOD_METRIC[m],
                                 k, None)
        except ImgrecError as exc:
            st.error(f"{ui.METHOD_LABELS[m]} failed: {exc}", icon=":material/error:")
            return
    lists = {m: [h.path for h in kept(r.combined)] for m, r in runs.items()}
    ov = ui.overlap(lists)
    short = {"embedding": "embedding", "color": "colour", "pca": "PCA colour"}
    what = "combined ranking" if len(qs) > 1 else "results"
    st.markdown(f"**Compare methods** · top {k} {what} of each method · in all three: "
                f"**{ov.all}**")
    st.caption(" · ".join(f"{short[a]} ∩ {short[b]}: {n}" for (a, b), n in ov.pairs.items()))
    for col, m in zip(st.columns(3, gap="medium"), ui.COMPARE_METHODS, strict=True):
        with col, st.container(border=True, key=f"compare-{m}"):
            others = [n for (a, b), n in ov.pairs.items() if m in (a, b)]
            st.markdown(f"**{ui.METHOD_LABELS[m]}**")
            st.caption(f"shares {' and '.join(str(o) for o in others)} with the other two")
            for line in ui.chunks(ui.page_of(kept(runs[m].combined), page), 2):
                for c, hit in zip(st.columns(2), line, strict=False):
                    with c:
                        sup.image_card(sup.thumbnail(idx, hit.path),
                                       ui.card_label("compare", f"#{hit.rank}",
                                                     ui.format_score(hit, runs[m].metric), hit.path))


if compare:
    compare_view()
else:
    for qi, (label, hits) in enumerate(zip(result.queries, result.per_query, strict=True)):
        qimg = (sup.thumbnail(idx, qs.stored[qi]) if qs.stored
                else sup.upload_thumbnail(qs.uploads[qi].data))
        result_row(f"Query {qi + 1}: {label}", (qimg, label), ui.page_of(kept(hits), page),
                   f"q{qi}")
    if len(result.queries) > 1:
        result_row("Combined ranking", None, ui.page_of(kept(result.combined), page), "combined")

    fb = sup.feedback()
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
        weight = c1.slider("Negative weight", 0.0, 2.0, 0.5, 0.05, key="negative_weight",
                           persist_state="session",
                           help="score = mean cosine to positives − weight × mean cosine to "
                                "negatives")
        if c2.button("Refine", type="primary", key="refine", icon=":material/tune:",
                     disabled=not fb, width="stretch"):
            st.session_state["refine_request"] = qs.cache_key()
        c3.button("Clear marks", key="clear_feedback", on_click=sup.clear_feedback,
                  disabled=not fb, width="stretch")
    if fb and st.session_state.get("refine_request") == qs.cache_key():
        try:
            refined = sup.refine(idx, qs, fb, weight, k)
        except ImgrecError as exc:
            st.error(f"Refine failed: {exc}", icon=":material/error:")
        else:
            for note in refined.notes:
                st.caption(note)
            result_row(f"Refined ranking: {len(fb.positives)} {UP}, {len(fb.negatives)} {DOWN}, "
                       f"weight {weight:g}", None, ui.page_of(kept(refined.combined), page),
                       "refined", "positives minus negatives", refined.metric)
