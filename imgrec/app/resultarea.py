"""The Search page's result area: one k, one kind of card, for image and label queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from imgrec.app import data, state, widgets
from imgrec.app.detail import open_detail
from imgrec.app.formatting import (
    COMPARE_METHODS,
    METHOD_LABELS,
    card_label,
    chunks,
    format_score,
    overlap,
    page_of,
    strength_html,
)
from imgrec.app.queries import QuerySet, filter_hits_by_label
from imgrec.app.resources import wait_for_model
from imgrec.app.state import Key
from imgrec.errors import ImgrecError
from imgrec.features.embedding import BACKBONES
from imgrec.index.index import Index
from imgrec.search.calibration import Calibration
from imgrec.search.rank import MAX_QUERIES, METHOD_METRIC, Hit, SearchResult

COLS = 5  # results per grid line
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
    label: str = ""  # the label-search text (a query of its own)
    filter_note: str | None = None  # why the label filter is not applied
    page: int = 0
    where: Any = None  # the filter panel's Where (the search ranks only those images)

    def kept(self, hits: list[Hit]) -> list[Hit]:
        """The hits that pass the label filter (all of them without a filter)."""
        return (filter_hits_by_label(self.idx, hits, self.label_filter) if self.label_filter
                else list(hits))


@dataclass(frozen=True)
class Results:
    """What the result area shows: the image search and the label search, either may be None."""

    image: SearchResult | None
    label: SearchResult | None

    def all(self) -> list[SearchResult]:
        return [r for r in (self.image, self.label) if r is not None]


def lists_shown(v: View, res: Results) -> list[list[Hit]]:
    """Every ranked list the result area draws, label filter applied (for the pager)."""
    out = []
    if res.image is not None:
        out += [v.kept(h) for h in res.image.per_query]
        if len(res.image.queries) > 1:
            out.append(v.kept(res.image.combined))
    if res.label is not None:
        out.append(v.kept(res.label.combined))
    return out


def result_card(idx: Index, hit: Hit, section: str, metric: str, kind: str = "hit",
                cal: Calibration | None = None) -> None:
    """A result's thumbnail, rank and score, with "More like this" and 👍 / 👎 (every kind of
    query gets the same card)."""
    widgets.image_card(data.thumbnail(idx, hit.path),
                       card_label(kind, f"#{hit.rank}", format_score(hit, metric), hit.path))
    if cal is not None:
        st.markdown(strength_html(*cal.strength(hit.score)), unsafe_allow_html=True)
    marked = state.feedback().state(hit.path)
    with st.container(horizontal=True, gap="small"):
        st.button("More like this", key=f"more-{section}-{hit.rank}", icon=":material/search:",
                  type="tertiary", on_click=state.set_stored_queries, args=([hit.path],))
        st.button("", key=f"detail-{section}-{hit.rank}", icon=":material/open_in_full:",
                  type="tertiary", on_click=open_detail, args=(hit.path,),
                  help="Details: the image, its facts and its nearest images")
        st.button("", key=f"pos-{section}-{hit.rank}", icon=UP, on_click=state.mark,
                  args=(hit.path, "positive"), type="primary" if marked == "positive" else "tertiary",
                  help="Mark as a positive example for Refine (click again to unmark)")
        st.button("", key=f"neg-{section}-{hit.rank}", icon=DOWN, on_click=state.mark,
                  args=(hit.path, "negative"), type="primary" if marked == "negative" else "tertiary",
                  help="Mark as a negative example for Refine (click again to unmark)")


def result_row(idx: Index, title: str, query: tuple[bytes | None, str] | None, hits: list[Hit],
               section: str, metric: str, note: str = "mean over the queries",
               filtered: bool = False, cal: Calibration | None = None,
               best: Hit | None = None) -> None:
    """One bordered row: the query (or a label), then its hits; ``cal`` rates each score,
    and a weak ``best`` hit (the query's first, whatever the page) says so."""
    with st.container(border=True, key=f"results-{section}"):
        st.markdown(f"**{title}**")
        if cal is not None and best is not None:
            label, pct = cal.strength(best.score)
            if label == "weak":
                st.warning(f"Nothing in the gallery is close to this image: its best match "
                           f"({format_score(best, metric)}) is less similar than "
                           f"{100 - pct:.0f}% of the gallery's images are to their own nearest "
                           "neighbour.", icon=":material/search_off:")
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
                    result_card(idx, hit, section, metric, cal=cal)
        if not hits:
            st.caption("No result on this page passes the label filter." if filtered
                       else "No result.")


def _model_ready(v: View) -> None:
    """Uploads are embedded by the CNN: wait (with its status) while its weights load."""
    if v.qs.uploads and v.idx.model in BACKBONES:
        wait_for_model(v.idx.model)


def compare_view(v: View) -> None:
    """The top-k of every method side by side, with how many images they share."""
    _model_ready(v)
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
                        result_card(v.idx, hit, f"cmp-{m}", runs[m].metric, "compare",
                                    cal=data.calibration(v.idx, m, runs[m].metric))


def results_view(v: View, res: Results) -> None:
    """One row per image query (query image first), the combined ranking of several, and the
    label search: one result area, one k, the same cards."""
    filtered = bool(v.label_filter)
    if res.image is not None:
        result = res.image
        cal = data.calibration(v.idx, result.method, result.metric)
        for qi, (label, hits) in enumerate(zip(result.queries, result.per_query, strict=True)):
            qimg = (data.thumbnail(v.idx, v.qs.stored[qi]) if v.qs.stored
                    else data.upload_thumbnail(v.qs.uploads[qi].data))
            result_row(v.idx, f"Query {qi + 1}: {label}", (qimg, label),
                       page_of(v.kept(hits), v.page), f"q{qi}", result.metric, filtered=filtered,
                       cal=cal, best=hits[0] if hits else None)
        if len(result.queries) > 1:
            result_row(v.idx, "Combined ranking", None, page_of(v.kept(result.combined), v.page),
                       "combined", result.metric, filtered=filtered, cal=cal)
    if res.label is not None:
        result_row(v.idx, f"Label: {v.label}", None, page_of(v.kept(res.label.combined), v.page),
                   "label", res.label.metric, f"“{v.label}”", filtered=filtered)


def refine_key(v: View) -> tuple:
    return (*v.qs.cache_key(), f"label:{v.label}")


def refine_view(v: View) -> None:
    """The 👍 / 👎 marks, the negative weight, and the refined ranking once asked for."""
    fb = state.feedback()
    positives = bool(v.qs or fb.positives)
    with st.container(border=True, key="refine-panel"):
        st.markdown("**Refine**")
        if fb:
            st.markdown(
                f"{UP} {len(fb.positives)}: " + (", ".join(f"`{p}`" for p in fb.positives) or "—")
                + f"  \n{DOWN} {len(fb.negatives)}: "
                + (", ".join(f"`{p}`" for p in fb.negatives) or "—"))
        else:
            st.caption(f"Mark results {UP} (more like this) or {DOWN} (less like this), up to "
                       f"{MAX_QUERIES} each, then refine: the image queries and the {UP} images "
                       f"are the positive examples, the {DOWN} ones the negative, ranked by CNN "
                       "embeddings (cosine).")
        c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        weight = c1.slider("Negative weight", 0.0, 2.0, 0.5, 0.05, key=Key.NEGATIVE_WEIGHT,
                           persist_state="session",
                           help="score = mean cosine to positives − weight × mean cosine to "
                                "negatives")
        if c2.button("Refine", type="primary", key="refine", icon=":material/tune:",
                     disabled=not (fb and positives), width="stretch",
                     help=None if positives else f"Mark at least one result {UP} first."):
            state.put(Key.REFINE_REQUEST, refine_key(v))
            state.put(Key.REFINE_OPEN, True)
        c3.button("Clear marks", key="clear_feedback", on_click=state.clear_feedback,
                  disabled=not fb, width="stretch")
    if not (fb and positives and state.get(Key.REFINE_REQUEST) == refine_key(v)):
        return
    if state.get(Key.REFINE_OPEN):
        refined_dialog(v, weight)
    else:
        st.button("Show the refined ranking", key="show_refined", icon=":material/tune:",
                  on_click=state.put, args=(Key.REFINE_OPEN, True))


@st.dialog("Refined ranking", width="large", on_dismiss=lambda: state.pop(Key.REFINE_OPEN))
def refined_dialog(v: View, weight: float) -> None:
    """The refined ranking over the page, where the user clicked Refine (marks made here
    update it; "More like this" closes it and searches)."""
    if state.get(Key.REFINE_REQUEST) != (*state.queries().cache_key(), f"label:{v.label}"):
        state.pop(Key.REFINE_OPEN)  # a new query was chosen in the dialog: show its search
        st.rerun()
    fb = state.feedback()
    if not fb:
        state.pop(Key.REFINE_OPEN)
        st.rerun()
    _model_ready(v)
    try:
        refined = data.refine(v.idx, v.qs, fb, weight, v.k)
    except ImgrecError as exc:
        st.error(f"Refine failed: {exc}", icon=":material/error:")
        return
    for note in refined.notes:
        st.caption(note)
    result_row(v.idx, f"Refined ranking: {len(fb.positives)} {UP}, {len(fb.negatives)} {DOWN}, "
               f"weight {weight:g}", None, page_of(v.kept(refined.combined), v.page), "refined",
               refined.combined_metric or refined.metric, "positives minus negatives",
               filtered=bool(v.label_filter))
