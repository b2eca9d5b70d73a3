"""Per-user dashboard state: the one place that names every ``st.session_state`` key.

Pages and widgets read and write session state only through the accessors below (or the
widget keys of :class:`Key`). The keys of :data:`VIEW_KEYS` define what a user is looking at
(index, method, metric, k, label text, gallery queries); they are the ones worth restoring
from the URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from imgrec.app.queries import Feedback, QuerySet
from imgrec.settings import Settings


class Key:
    """Every session-state key of the dashboard (state and widget keys)."""

    # state written by the app
    INDEX_DIR = "index_dir"
    QUERIES = "queries"
    UPLOAD_MESSAGES = "upload_messages"
    LAST_SEARCH = "last_search"
    FEEDBACK = "feedback"
    REFINE_REQUEST = "refine_request"
    REFINE_OPEN = "refine_open"  # the refined-ranking dialog is open
    RESULT_PAGE = "result_page"
    WATCHING_BUILD = "watching_build"
    INDEX_NOTE = "index_note"
    EXPLORE_SELECTED = "explore_selected"
    EXPLORE_3D_SEEN = "explore_3d_seen"  # the 3-D scatter was built: keep it (hidden) in 2-D
    GRAPH_SELECTED = "graph_selected"
    INSIGHTS_CLUSTER = "insights_cluster"
    CLUSTER_PAGE = "cluster_page"
    CLUSTER_OPEN = "cluster_open"  # the members dialog is open (until dismissed)
    UPLOADER_GEN = "uploader_gen"
    # widgets: sidebar and Dataset
    INDEX_DIR_TEXT = "index_dir_text"
    GALLERY_TEXT = "gallery_text"
    # widgets: Search
    UPLOADER = "uploader"
    LABEL_QUERY = "label_query"
    METHOD = "method"
    METRIC = "metric"
    K = "k"
    LABEL_FILTER = "label_filter"
    PCA_COMPONENTS = "pca_components"
    COMPARE = "compare"
    NEGATIVE_WEIGHT = "negative_weight"
    # widgets: Explore
    EXPLORE_SOURCE = "explore_source"
    EXPLORE_COLOUR = "explore_colour"
    EXPLORE_K = "explore_k"
    EXPLORE_3D = "explore_3d"
    EXPLORE_SCATTER = "explore_scatter"
    EXPLORE_3D_SCATTER = "explore_scatter_3d"
    # the hover component of each plot's container (imgrec.app.hover): its widget key, and
    # the rows it asked thumbnails for
    HOVER = "{container}-hover"
    HOVER_WANTED = "{container}-hover-wanted"
    # widgets: Insights
    INSIGHTS_SECTION = "insights_section"
    CLUSTER_K = "cluster_k"  # one k for Insights' clusters and Explore's colours
    INSIGHTS_K = "insights_k"
    DUP_THRESHOLD = "dup_threshold"
    GRAPH_K = "graph_k"
    GRAPH_THRESHOLD = "graph_threshold"
    GRAPH_SAMPLE = "graph_sample"
    GRAPH_CHART = "graph_chart"
    GRAPH_PAGE = "graph_page"
    # widgets and state: Dataset's Evaluate section
    EVAL_LABELS = "eval_labels"
    EVAL_DEPTH = "eval_depth"
    EVAL_K = "eval_k"
    EVAL_METHODS = "eval_methods"
    EVAL_RUN = "eval_run"
    EVAL_RESULT = "eval_result"  # (what was evaluated, the report or the error message)
    EVAL_CHART = "eval_chart"


#: The keys that define a view (what a bookmark of it would hold).
VIEW_KEYS = (Key.INDEX_DIR, Key.METHOD, Key.METRIC, Key.K, Key.LABEL_QUERY, Key.QUERIES)

_ss = st.session_state


def get(key: str, default: Any = None) -> Any:
    """The value at ``key`` (one of :class:`Key`), or ``default``."""
    return _ss.get(key, default)


def put(key: str, value: Any) -> None:
    _ss[key] = value


def pop(key: str) -> Any:
    return _ss.pop(key, None)


def settings() -> Settings:
    return Settings.from_env()


def index_dir() -> Path:
    """This session's index folder (default: ``IMGREC_INDEX_DIR`` or ``data/index``)."""
    return Path(_ss.setdefault(Key.INDEX_DIR, str(settings().index_dir)))


def set_index_dir(path: str | Path) -> None:
    new = str(Path(path).expanduser().resolve())
    if new != _ss.get(Key.INDEX_DIR):
        _ss[Key.INDEX_DIR] = new
        reset_queries()


def queries() -> QuerySet:
    return _ss.setdefault(Key.QUERIES, QuerySet())


def set_uploads(qs: QuerySet, messages: tuple[str, ...]) -> None:
    """The queries after an upload, and a message for each file refused."""
    _ss[Key.QUERIES] = qs
    _ss[Key.UPLOAD_MESSAGES] = messages
    _ss[Key.RESULT_PAGE] = 0


def upload_messages() -> tuple[str, ...]:
    return tuple(_ss.get(Key.UPLOAD_MESSAGES, ()))


def uploader_key() -> str:
    """The widget key of the query uploader; a new one empties the widget (Streamlit lets no
    code set an uploader's files), so what it shows is always what is searched."""
    return f"{Key.UPLOADER}-{_ss.get(Key.UPLOADER_GEN, 0)}"


def _empty_uploader() -> None:
    _ss.pop(uploader_key(), None)
    _ss[Key.UPLOADER_GEN] = _ss.get(Key.UPLOADER_GEN, 0) + 1


def set_stored_queries(paths: list[str]) -> None:
    """Search with gallery images ("more like this", "use as query"); the uploader empties."""
    if _ss.get(Key.QUERIES, QuerySet()).uploads:
        _empty_uploader()
    set_uploads(QuerySet.from_paths(paths), ())


def reset_queries() -> None:
    if _ss.get(Key.QUERIES, QuerySet()).uploads or _ss.get(uploader_key()):
        _empty_uploader()
    _ss[Key.QUERIES] = QuerySet()
    _ss[Key.UPLOAD_MESSAGES] = ()
    _ss[Key.FEEDBACK] = Feedback()
    for key in (Key.LAST_SEARCH, Key.EXPLORE_SELECTED, Key.REFINE_REQUEST, Key.REFINE_OPEN):
        _ss.pop(key, None)


def feedback() -> Feedback:
    """This session's 👍 / 👎 marks."""
    return _ss.setdefault(Key.FEEDBACK, Feedback())


def mark(path: str, kind: str) -> None:
    """Toggle a 👍 / 👎 mark (a button callback)."""
    _ss[Key.FEEDBACK] = feedback().mark(path, kind)


def clear_feedback() -> None:
    _ss[Key.FEEDBACK] = Feedback()
    _ss.pop(Key.REFINE_REQUEST, None)
    _ss.pop(Key.REFINE_OPEN, None)


def set_last_search(version: str, qs: QuerySet, rows: list[int]) -> None:
    """Remember the last search so Explore can draw its queries and results."""
    _ss[Key.LAST_SEARCH] = {"version": version, "queries": qs, "rows": rows}


def last_search(version: str) -> dict[str, Any] | None:
    """The last search of this session on index ``version``, or None."""
    last = _ss.get(Key.LAST_SEARCH)
    return last if last and last.get("version") == version else None


def cluster_k(chosen: int, lo: int, hi: int) -> None:
    """Start the shared cluster-count slider at ``chosen`` (the data's k) unless this
    session set it; keep it inside ``lo..hi`` (another index may hold fewer images)."""
    k = _ss.get(Key.CLUSTER_K)
    if not isinstance(k, int) or not lo <= k <= hi:
        _ss[Key.CLUSTER_K] = min(max(int(chosen), lo), hi)


def hover_key(container: str) -> str:
    """The widget key of the hover component of the plot in ``container``."""
    return Key.HOVER.format(container=container)


def hover_wanted_key(container: str) -> str:
    """Where the hover component of ``container`` keeps the rows it asked thumbnails for."""
    return Key.HOVER_WANTED.format(container=container)


def selected(key: str) -> list[str]:
    """The gallery paths a plot selection left at ``key`` (Explore or the graph)."""
    return list(_ss.get(key) or [])
