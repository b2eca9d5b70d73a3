"""Streamlit glue shared by the dashboard pages: cached resources, session state, widgets.

Process-wide (``st.cache_resource``): the CNN, opened indexes (keyed by version, so a
rebuild opens the new one), and the one :class:`imgrec.app.ui.BuildRunner`. Bounded
``st.cache_data``: thumbnails, searches, projections. Per user (``st.session_state``):
the index folder, the current queries and the last search. The logic lives in
:mod:`imgrec.app.ui`; this module only wires it to widgets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from imgrec.app import ui
from imgrec.errors import BuildLockedError, ImgrecError
from imgrec.features.embedding import BACKBONES, DEFAULT_MODEL, CNNEmbedder
from imgrec.index.index import Index
from imgrec.index.writer import current_version
from imgrec.search.rank import SearchResult
from imgrec.settings import Settings

SEARCH_PAGE = "pages/search.py"
EXPLORE_PAGE = "pages/explore.py"
DATASET_PAGE = "pages/dataset.py"
INSIGHTS_PAGE = "pages/insights.py"
SOURCES = {"embedding": "CNN embeddings", "color": "Colour histograms"}
FINISHED_SHOWN_S = 1800  # how long the outcome of the last build stays on the pages


# ---- process-wide resources ----------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def get_embedder(model: str = DEFAULT_MODEL) -> CNNEmbedder:
    """The one CNN of this process (weights load on first use, not here)."""
    return CNNEmbedder(model)


@st.cache_resource(show_spinner=False)
def get_runner() -> ui.BuildRunner:
    """The build runner shared by every session (one build per index at a time)."""
    return ui.BuildRunner()


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_index(index_dir: str, version: str) -> Index:
    idx = Index.open(index_dir)
    if idx.model in BACKBONES:
        idx = Index.open(index_dir, embedder=get_embedder(idx.model))
    return idx


def clear_index_caches(_state: Any = None) -> None:
    """Forget opened indexes and everything derived from them (after a build)."""
    _open_index.clear()
    _facts.clear()
    _projection.clear()
    _clusters.clear()
    _search.clear()
    for cache in (_label_counts, _gallery_clusters, _near_pairs, _duplicates, _graph,
                  _label_search, _refine, _small_thumb):
        cache.clear()


# ---- routing --------------------------------------------------------------------------------

_ROUTED = "_imgrec_routed"


def mark_routed() -> None:
    """Called by ``app.py`` just before it runs the selected page."""
    st.session_state[_ROUTED] = True


def ensure_routed() -> None:
    """First call of every page: make sure the page runs under the ``app.py`` router.

    Streamlit treats a ``pages/`` folder next to the main script as a legacy (v1)
    multipage app until a script calls ``st.navigation``. When the first request a fresh
    server gets is a page URL (``/explore``), or in ``AppTest`` (which resets that switch
    on every run), the page script then runs directly — without the router's sidebar and
    page config. Here the page notices, switches the legacy mode off and reruns, so
    ``app.py`` runs and routes to this same page (both modes hash the same URL path).
    """
    if st.session_state.pop(_ROUTED, False):
        st.session_state.pop("_imgrec_reroutes", None)
        return
    tries = st.session_state.get("_imgrec_reroutes", 0)
    if tries >= 2:  # never loop: render the page without the router
        return
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
    st.session_state["_imgrec_reroutes"] = tries + 1
    st.rerun()


# ---- per-session state ---------------------------------------------------------------------


def settings() -> Settings:
    return Settings.from_env()


def index_dir() -> Path:
    """This session's index folder (default: ``IMGREC_INDEX_DIR`` or ``data/index``)."""
    return Path(st.session_state.setdefault("index_dir", str(settings().index_dir)))


def set_index_dir(path: str | Path) -> None:
    new = str(Path(path).expanduser().resolve())
    if new != st.session_state.get("index_dir"):
        st.session_state["index_dir"] = new
        reset_queries()


def reset_queries() -> None:
    st.session_state["queries"] = ui.QuerySet()
    st.session_state["upload_messages"] = ()
    st.session_state.pop("last_search", None)
    st.session_state.pop("explore_selected", None)
    st.session_state["feedback"] = ui.Feedback()
    st.session_state.pop("refine_request", None)


def queries() -> ui.QuerySet:
    return st.session_state.setdefault("queries", ui.QuerySet())


def set_stored_queries(paths: list[str]) -> None:
    """Search with gallery images ("more like this", "use as query")."""
    st.session_state["queries"] = ui.QuerySet.from_paths(paths)
    st.session_state["upload_messages"] = ()
    st.session_state["result_page"] = 0


def load_index(directory: str | Path | None = None) -> tuple[Index | None, str | None]:
    """The index of this session's folder, or ``(None, reason)``; never raises."""
    d = Path(directory) if directory is not None else index_dir()
    try:
        version = current_version(d)
        if version is None:
            return None, f"There is no index in {d} yet."
        return _open_index(str(d), version.name), None
    except ImgrecError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"The index in {d} cannot be read: {exc}"


def require_index() -> Index:
    """The open index, or render the no-index state and stop the page."""
    idx, why = load_index()
    if idx is None:
        no_index(why or "There is no index yet.")
        st.stop()
    return idx


# ---- cached derived data -------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumb(gallery: str, version: str, path: str, _idx: Index) -> bytes | None:
    return ui.thumbnail_bytes(_idx, path)


def thumbnail(idx: Index, path: str) -> bytes | None:
    return _thumb(str(idx.root), idx.version, path, idx)


@st.cache_data(show_spinner=False, max_entries=64)
def upload_thumbnail(data: bytes) -> bytes | None:
    return ui.upload_thumbnail(data)


@st.cache_data(show_spinner=False, max_entries=16)
def _facts(index_dir: str, version: str, _idx: Index) -> ui.IndexFacts:
    return ui.index_facts(_idx)


def facts(idx: Index) -> ui.IndexFacts:
    return _facts(str(idx.index_dir), idx.version, idx)


@st.cache_data(show_spinner="Searching…", max_entries=64)
def _search(index_dir: str, version: str, key: tuple[str, ...], method: str, metric: str,
            k: int, pca_components: int | None, _idx: Index, _qs: ui.QuerySet) -> SearchResult:
    return _idx.search(_qs.queries(), method=method, metric=metric, k=k,
                       pca_components=pca_components)


def search(idx: Index, qs: ui.QuerySet, method: str, metric: str, k: int,
           pca_components: int | None) -> SearchResult:
    """A cached search (raises ImgrecError subclasses with a user-facing message)."""
    return _search(str(idx.index_dir), idx.version, qs.cache_key(), method, metric, int(k),
                   pca_components, idx, qs)


def _matrix(idx: Index, source: str) -> np.ndarray:
    return idx.embeddings if source == "embedding" else idx.histograms


matrix = _matrix  # the feature matrix a projection source is drawn from


@st.cache_data(show_spinner="Projecting the gallery…", max_entries=8)
def _projection(index_dir: str, version: str, source: str, limit: int, _idx: Index
                ) -> ui.Projection:
    return ui.project(_matrix(_idx, source), limit)


def projection(idx: Index, source: str, limit: int | None = None) -> ui.Projection:
    return _projection(str(idx.index_dir), idx.version, source, limit or ui.MAX_POINTS, idx)


@st.cache_data(show_spinner="Clustering…", max_entries=16)
def _clusters(index_dir: str, version: str, source: str, limit: int, k: int, _idx: Index,
              _rows: np.ndarray) -> np.ndarray:
    feats = _idx.embeddings if source == "embedding" else _idx.pca_histograms
    return ui.kmeans_labels(np.asarray(feats[_rows]), k)


def clusters(idx: Index, source: str, proj: ui.Projection, k: int) -> np.ndarray:
    return _clusters(str(idx.index_dir), idx.version, source, len(proj.rows), k, idx, proj.rows)


@st.cache_resource(show_spinner=False, max_entries=4)
def _paths(index_dir: str, version: str, _idx: Index) -> list[str]:
    return _idx.all_paths()  # shared, not copied per rerun: treat as read-only


def all_paths(idx: Index) -> list[str]:
    """Every indexed path in row order (one shared list per index version: do not modify)."""
    return _paths(str(idx.index_dir), idx.version, idx)


@st.cache_data(show_spinner=False, max_entries=32)
def _upload_features(index_dir: str, version: str, source: str, name: str, key: str,
                     _idx: Index, _q: ui.QueryImage) -> np.ndarray:
    f = _idx.query_features([_q.as_file()], need_embedding=source == "embedding")[0]
    return np.asarray(f.embedding if source == "embedding" else f.histogram, np.float32)


def highlights(idx: Index, source: str, proj: ui.Projection) -> list[ui.Highlight]:
    """This session's last queries and results, projected like the gallery."""
    last = st.session_state.get("last_search")
    if not last or last.get("version") != idx.version:
        return []
    matrix = _matrix(idx, source)
    out = []
    rows = [int(r) for r in last["rows"]]
    if rows:
        out.append(ui.Highlight("search results", proj.transform(np.asarray(matrix[sorted(rows)])),
                                idx.paths(sorted(rows)), sorted(rows), "result"))
    qs: ui.QuerySet = last["queries"]
    if qs.stored:
        try:
            qrows = [idx.row_of(p) for p in qs.stored]
        except ImgrecError:  # a stored query no longer in the index
            qrows = []
        if qrows:
            out.append(ui.Highlight("queries", proj.transform(np.asarray(matrix[qrows])),
                                    list(qs.stored), qrows, "query"))
    elif qs.uploads:
        feats = []
        for u in qs.uploads:
            try:
                feats.append(_upload_features(str(idx.index_dir), idx.version, source, u.name,
                                              u.key, idx, u))
            except ImgrecError:
                continue
        if feats:
            out.append(ui.Highlight("queries", proj.transform(np.stack(feats)),
                                    [u.name for u in qs.uploads][:len(feats)], [-1] * len(feats),
                                    "query"))
    return out


# ---- issue 6: labels, clusters, duplicates, graph, refine (cached per index version) ------


@st.cache_data(show_spinner=False, max_entries=8)
def _label_counts(index_dir: str, version: str, top: int, _idx: Index) -> list:
    from imgrec.insights.labels import label_counts

    return label_counts(_idx, top)


def label_counts(idx: Index, top: int = 50) -> list:
    """The ``top`` most frequent top-1 labels (raises QueryError without labels)."""
    return _label_counts(str(idx.index_dir), idx.version, int(top), idx)


@st.cache_data(show_spinner="Clustering the gallery…", max_entries=16)
def _gallery_clusters(index_dir: str, version: str, k: int, seed: int, _idx: Index) -> Any:
    from imgrec.insights.clusters import clusters as run

    return run(_idx, k=k, seed=seed)


def gallery_clusters(idx: Index, k: int, seed: int = 0) -> Any:
    """:func:`imgrec.insights.clusters.clusters` of the embeddings (a ClusterResult)."""
    return _gallery_clusters(str(idx.index_dir), idx.version, int(k), int(seed), idx)


@st.cache_data(show_spinner="Comparing every image with every other…", max_entries=4)
def _near_pairs(index_dir: str, version: str, t_min: float, _idx: Index) -> tuple:
    from imgrec.insights.duplicates import near_pairs

    return near_pairs(_idx.embeddings, _idx.embedding_norms, t_min)


@st.cache_data(show_spinner="Grouping duplicates…", max_entries=32)
def _duplicates(index_dir: str, version: str, threshold: float, t_min: float,
                _idx: Index) -> Any:
    from imgrec.insights.duplicates import find_duplicates

    pairs = _near_pairs(index_dir, version, t_min, _idx)
    return find_duplicates(_idx, threshold, pairs=pairs)


def duplicates(idx: Index, threshold: float) -> Any:
    """A DuplicateReport at ``threshold``; the near pairs are found once per index at the
    slider's lowest threshold and filtered for each threshold."""
    t_min = min(ui.DUPLICATE_MIN_THRESHOLD, float(threshold))
    return _duplicates(str(idx.index_dir), idx.version, round(float(threshold), 4), t_min, idx)


@st.cache_data(show_spinner="Building the neighbour graph…", max_entries=8)
def _graph(index_dir: str, version: str, k: int, threshold: float, sample: int,
           _idx: Index) -> Any:
    from imgrec.insights.graph import neighbour_graph

    return neighbour_graph(_idx, k=k, threshold=threshold, sample=sample)


def graph(idx: Index, k: int, threshold: float, sample: int) -> Any:
    """:func:`imgrec.insights.graph.neighbour_graph` of a sample of the gallery."""
    return _graph(str(idx.index_dir), idx.version, int(k), round(float(threshold), 4),
                  int(sample), idx)


@st.cache_data(show_spinner="Searching labels…", max_entries=64)
def _label_search(index_dir: str, version: str, text: str, k: int, _idx: Index) -> SearchResult:
    from imgrec.insights.labels import search_by_label

    return search_by_label(_idx, text, k)


def label_search(idx: Index, text: str, k: int) -> SearchResult:
    """:func:`imgrec.insights.labels.search_by_label` (raises QueryError with a user-facing message)."""
    return _label_search(str(idx.index_dir), idx.version, " ".join(text.split()), int(k), idx)


@st.cache_data(show_spinner="Refining…", max_entries=32)
def _refine(index_dir: str, version: str, key: tuple[str, ...], negatives: tuple[str, ...],
            weight: float, k: int, _idx: Index, _queries: list) -> SearchResult:
    from imgrec.index.index import Stored

    return _idx.search(_queries, k=k, negatives=[Stored(p) for p in negatives],
                       negative_weight=weight)


def refine(idx: Index, qs: ui.QuerySet, feedback: ui.Feedback, weight: float,
           k: int) -> SearchResult:
    """The refined search: queries + 👍 images as positives, 👎 images as negatives."""
    key = qs.cache_key() + tuple(f"pos:{p}" for p in feedback.positives)
    return _refine(str(idx.index_dir), idx.version, key, feedback.negatives,
                   round(float(weight), 4), int(k), idx, ui.refine_queries(qs, feedback))


@st.cache_data(show_spinner=False, max_entries=512)
def _small_thumb(gallery: str, version: str, path: str, size: int, _idx: Index) -> bytes | None:
    return ui.thumbnail_bytes(_idx, path, size)


def small_thumbnail(idx: Index, path: str, size: int = 64) -> bytes | None:
    return _small_thumb(str(idx.root), idx.version, path, int(size), idx)


def feedback() -> ui.Feedback:
    """This session's 👍 / 👎 marks."""
    return st.session_state.setdefault("feedback", ui.Feedback())


def mark(path: str, kind: str) -> None:
    """Toggle a 👍 / 👎 mark (a button callback)."""
    st.session_state["feedback"] = feedback().mark(path, kind)


def clear_feedback() -> None:
    st.session_state["feedback"] = ui.Feedback()
    st.session_state.pop("refine_request", None)


# ---- builds --------------------------------------------------------------------------------


def start_build(gallery: str | Path | None, target: str | Path, kind: str,
                demo: bool = False) -> bool:
    """Start a background build; shows why when it cannot start. True when started."""
    runner = get_runner()
    try:
        runner.start(gallery, target, kind=kind, embedder=get_embedder(),
                     demo_dir=settings().demo_dir if demo else None,
                     on_success=clear_index_caches)
    except BuildLockedError as exc:
        st.warning(f"Not started: {exc}.", icon=":material/hourglass_top:")
        return False
    st.session_state["watching_build"] = runner.job(target).id  # type: ignore[union-attr]
    return True


def build_status(directory: str | Path, show_finished: bool = True) -> None:
    """Live progress of the build of ``directory`` (refreshes itself while it runs)."""
    runner = get_runner()
    job = runner.job(directory)
    other = None if job is not None and job.running else ui.running_build(directory)
    if job is None and other is None:
        return
    running = other is not None or (job is not None and job.running)

    @st.fragment(run_every=1.0 if running else None)
    def _status() -> None:
        j = runner.job(directory)
        if j is not None and j.running:
            st.session_state.setdefault("watching_build", j.id)
            st.progress(j.fraction, text=j.progress_text())
            return
        busy = ui.running_build(directory)
        if busy:
            st.info(f"{busy[0].upper()}{busy[1:]}.", icon=":material/hourglass_top:")
            st.session_state["watching_build"] = -1
            return
        if j is None:
            if st.session_state.pop("watching_build", None) is not None:
                st.rerun()
            return
        if st.session_state.get("watching_build") in (j.id, -1):
            st.session_state.pop("watching_build")
            st.rerun()  # the whole page picks up the new index
        if j.finished is not None and time.time() - j.finished > FINISHED_SHOWN_S:
            return
        if j.status == "done" and show_finished:
            st.success(j.message, icon=":material/check_circle:")
        elif j.status == "failed":
            st.error(f"The build failed: {j.message.rstrip('.')}. The previous index (if any) is "
                     "still in use.", icon=":material/error:")

    _status()


# ---- shared widgets ------------------------------------------------------------------------


def no_index(reason: str) -> None:
    """What a page shows when there is no usable index: build the demo or go to Dataset."""
    d = index_dir()
    st.info(f"{reason}\n\nBuild the demo gallery (170 photos, about two minutes) or index "
            "your own folder on the Dataset page.", icon=":material/info:")
    runner = get_runner()
    busy = runner.busy(d)
    c1, c2 = st.columns([1, 1])
    with c1:
        if st.button("Build the demo gallery", type="primary", key="no_index_demo",
                     icon=":material/auto_awesome:", disabled=busy is not None):
            start_build(None, d, "demo", demo=True)
    with c2:
        st.page_link(DATASET_PAGE, label="Go to the Dataset page", icon=":material/dataset:")
    build_status(d)


def sidebar() -> None:
    """The index status shown on every page, and the index-folder switcher."""
    with st.sidebar:
        st.markdown("### Index")
        idx, why = load_index()
        if idx is not None:
            f = facts(idx)
            st.markdown(f"**{f.count:,}** images · `{f.model}`")
            st.caption(f"Gallery: `{f.gallery}`  \nLast build: {ui.format_built_at(f.built_at)}")
        else:
            st.caption(why or "No index.")
        job = get_runner().job(index_dir())
        if job is not None and job.running:
            st.caption(f":material/hourglass_top: {job.progress_text()}")
        with st.expander("Switch index folder"):
            with st.form("switch_index", border=False):
                text = st.text_input("Index folder", value=str(index_dir()), key="index_dir_text")
                if st.form_submit_button("Open"):
                    p = Path(text.strip()).expanduser()
                    if not text.strip():
                        st.error("Type a folder.")
                    elif p.exists() and not p.is_dir():
                        st.error(f"{p} is a file, not a folder.")
                    else:
                        set_index_dir(p)
                        if current_version(p.resolve()) is None:
                            st.session_state["index_note"] = (
                                f"No index in {p.resolve()} yet: build one on the Dataset page.")
                        st.rerun()
            note = st.session_state.pop("index_note", None)
            if note:
                st.warning(note)
            st.caption(f"Open now: `{index_dir()}`")


def image_card(img: bytes | None, label_html: str) -> None:
    """A thumbnail (or a placeholder) with its label from :func:`imgrec.app.ui.card_label`."""
    if img is not None:
        st.image(img, width="stretch")
    else:
        st.markdown(":gray[(image unavailable)]")
    st.markdown(label_html, unsafe_allow_html=True)


def pager(label: str, n: int, per_page: int, key: str) -> int:
    """A segmented control choosing one page of ``n`` items; returns the page number."""
    pages = ui.page_count(n, per_page)
    if pages <= 1:
        return 0
    if st.session_state.get(key) not in range(pages):
        st.session_state[key] = 0
    return st.segmented_control(
        label, list(range(pages)), key=key, required=True,
        format_func=lambda p: f"{p * per_page + 1}–{min(n, (p + 1) * per_page)}") or 0
