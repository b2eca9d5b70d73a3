"""Search page: drop up to five images (or pick gallery images) and see the most similar ones."""

from __future__ import annotations

import random

import streamlit as st

from imgrec import app_support as sup
from imgrec import ui
from imgrec.errors import ImgrecError
from imgrec.images import SUFFIXES
from imgrec.search import MAX_QUERIES, METHOD_METRIC

COLS = 5  # results per grid line

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

c1, c2, c3 = st.columns([3, 2, 3])
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

c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
metric_name = ui.METRIC_LABELS.get(result.metric, "chi-square" if result.metric == "chi2"
                                   else result.metric)
c1.markdown(f"**{k} result{'s' if k != 1 else ''} per query** · {ui.METHOD_LABELS[method]} · "
            f"{metric_name.lower() if method == 'embedding' else metric_name}")
c2.download_button("Download CSV", ui.results_csv(result).encode(), "imgrec-results.csv",
                   "text/csv", on_click="ignore", icon=":material/download:", key="csv",
                   width="stretch")
for note in result.notes:
    st.caption(note)

pages = ui.page_count(k)
page = 0
if pages > 1:
    if st.session_state.get("result_page") not in range(pages):
        st.session_state["result_page"] = 0
    page = st.segmented_control(
        "Ranks", list(range(pages)), key="result_page", required=True,
        format_func=lambda p: f"{p * ui.PAGE_SIZE + 1}–{min(k, (p + 1) * ui.PAGE_SIZE)}") or 0


def result_card(hit, section: str) -> None:
    sup.image_card(sup.thumbnail(idx, hit.path),
                   ui.card_label("hit", f"#{hit.rank}", ui.format_score(hit, result.metric), hit.path))
    st.button("More like this", key=f"more-{section}-{hit.rank}", icon=":material/search:",
              type="tertiary", on_click=sup.set_stored_queries, args=([hit.path],))


def result_row(title: str, query: tuple[bytes | None, str] | None, hits: list, section: str) -> None:
    with st.container(border=True, key=f"results-{section}"):
        st.markdown(f"**{title}**")
        for li, line in enumerate(ui.chunks(hits, COLS) or [[]]):
            cols = st.columns(COLS + 1, gap="medium")
            if li == 0:
                with cols[0]:
                    if query is not None:
                        sup.image_card(query[0], ui.card_label("query", "query", path=query[1]))
                    else:
                        st.markdown(ui.card_label("combined", "combined", "mean over the queries"),
                                    unsafe_allow_html=True)
            for col, hit in zip(cols[1:], line, strict=False):
                with col:
                    result_card(hit, section)


for qi, (label, hits) in enumerate(zip(result.queries, result.per_query, strict=True)):
    qimg = (sup.thumbnail(idx, qs.stored[qi]) if qs.stored
            else sup.upload_thumbnail(qs.uploads[qi].data))
    result_row(f"Query {qi + 1}: {label}", (qimg, label), ui.page_of(hits, page), f"q{qi}")
if len(result.queries) > 1:
    result_row("Combined ranking", None, ui.page_of(result.combined, page), "combined")
