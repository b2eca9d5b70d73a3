"""Everything the pages derive from an opened index, each cached per index version."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from imgrec.app import projection as proj_mod
from imgrec.app import state
from imgrec.app.cache import per_index, register
from imgrec.app.facts import IndexFacts, index_facts
from imgrec.app.insights import duplicate_slider
from imgrec.app.projection import Highlight, Projection
from imgrec.app.queries import Feedback, QueryImage, QuerySet, refine_queries
from imgrec.app.thumbs import thumbnail_bytes
from imgrec.app.thumbs import upload_thumbnail as upload_thumbnail_bytes
from imgrec.errors import ImgrecError
from imgrec.index.index import Index, Stored
from imgrec.search.calibration import Calibration
from imgrec.search.rank import SearchResult

SOURCES = {"embedding": "CNN embeddings", "color": "Colour histograms"}


def sharded(idx: Any) -> bool:
    """Whether ``idx`` is a sharded index (a ShardedIndex: Explore and Insights draw their
    points from a sample fetched across the shards; duplicates are not offered)."""
    return not isinstance(idx, Index)


def matrix(idx: Index, source: str) -> np.ndarray:
    """The feature matrix a projection source is drawn from."""
    return idx.embeddings if source == "embedding" else idx.histograms


@per_index(max_entries=2000, spinner="Making a thumbnail…")  # the first view decodes
def thumbnail(idx: Index, path: str, size: int = 256) -> bytes | None:
    return thumbnail_bytes(idx, path, size)


def small_thumbnail(idx: Index, path: str, size: int = 64) -> bytes | None:
    return thumbnail(idx, path, int(size))


# A size + mtime scan of the gallery (no decoding): seconds for 400,000 files, so it is kept
# a few seconds per index version (files change without a new version) rather than redone
# on every rerun; registered so clear_index_caches frees it too.
@st.cache_data(ttl=10, max_entries=8,
               show_spinner="Checking the gallery for new, changed and removed files…")
def changes_since_build(index_dir: str, version: str, _idx: Index) -> tuple[int, int, int]:
    from imgrec.build.changes import changes as scan
    from imgrec.build.changes import sharded_changes

    c = sharded_changes(_idx.index_dir) if sharded(_idx) else scan(_idx)
    return c.new, c.changed, c.removed


register(changes_since_build)


def changes(idx: Index) -> tuple[int, int, int]:
    """Files (new, changed, removed) in the gallery since the index was built."""
    return changes_since_build(str(idx.index_dir), idx.version, idx)


@per_index(max_entries=16)
def facts(idx: Index) -> IndexFacts:
    return index_facts(idx)


@per_index(max_entries=4, resource=True)
def all_paths(idx: Index) -> list[str]:
    """Every indexed path in row order (one shared list per index version: do not modify)."""
    return idx.all_paths()


@per_index(max_entries=64, spinner="Searching…",
           key=lambda qs, method, metric, k, pca, where=None: (qs.cache_key(), method, metric,
                                                               int(k), pca, where))
def search(idx: Index, qs: QuerySet, method: str, metric: str, k: int,
           pca_components: int | None, where: Any = None) -> SearchResult:
    """A cached search (raises ImgrecError subclasses with a user-facing message); ``where``
    restricts it (a :class:`~imgrec.search.filters.Where`: the exact top-k among those)."""
    return idx.search(qs.queries(), method=method, metric=metric, k=int(k),
                      pca_components=pca_components, where=where)


@per_index(max_entries=16, spinner="Measuring how close the gallery's own images are to "
                                  "each other (once per index)…")
def _calibration(idx: Index, method: str, metric: str) -> Calibration | None:
    from imgrec.search.calibration import calibrate

    try:
        return calibrate(idx, method, metric)
    except ImgrecError:
        return None


def calibration(idx: Index, method: str, metric: str) -> Calibration | None:
    """What this index's scores mean (:func:`imgrec.search.calibration.calibrate`, stored
    beside the index); None for rankings it does not describe (refined, label)."""
    if method not in ("embedding", "color", "pca") or metric in ("probability", "refine"):
        return None
    return _calibration(idx, method, metric)  # a sharded index's: the same searches


@per_index(max_entries=8, spinner="Projecting the gallery…")
def _projection(idx: Index, source: str, limit: int) -> Projection:
    return proj_mod.project(matrix(idx, source), limit)


def projection(idx: Index, source: str, limit: int | None = None) -> Projection:
    return _projection(idx, source, int(limit or proj_mod.MAX_POINTS))


@per_index(max_entries=8, spinner="Choosing the number of clusters from the data…")
def auto_k(idx: Index) -> Any:
    """:func:`imgrec.insights.clusters.auto_k` of the embeddings: the default k of the
    Insights clusters and of Explore's colours."""
    from imgrec.insights.clusters import auto_k as run

    return run(idx)


@per_index(max_entries=16, spinner="Clustering the gallery…")
def _clusters(idx: Index, k: int, seed: int, sample: int) -> Any:
    from imgrec.insights.clusters import clusters as run

    if sharded(idx):
        return idx.sample_clusters(k, seed, sample)
    return run(idx, k=k, seed=seed)


def clusters(idx: Index, k: int, seed: int = 0) -> Any:
    """The gallery's clusters (:func:`imgrec.insights.clusters.clusters` of the embeddings):
    the ones the Insights page lists and the Explore page colours by (of a sharded index:
    of the sample of as many images as Explore plots, every image assigned)."""
    return _clusters(idx, int(k), int(seed), proj_mod.MAX_POINTS if sharded(idx) else 0)


@per_index(max_entries=32, key=lambda source, q: (source, q.name, q.key),
           spinner="Placing the uploaded images in the projection…")
def _upload_features(idx: Index, source: str, q: QueryImage) -> np.ndarray:
    f = idx.query_features([q.as_file()], need_embedding=source == "embedding")[0]
    return np.asarray(f.embedding if source == "embedding" else f.histogram, np.float32)


def highlights(idx: Index, source: str, proj: Projection) -> list[Highlight]:
    """This session's last queries and results, projected like the gallery."""
    last = state.last_search(idx.version)
    if not last:
        return []
    m = matrix(idx, source)
    out = []
    rows = sorted(int(r) for r in last["rows"])
    if rows:
        out.append(Highlight("search results", proj.transform(np.asarray(m[rows])),
                             idx.paths(rows), rows, "result"))
    qs: QuerySet = last["queries"]
    if qs.stored:
        try:
            qrows = [idx.row_of(p) for p in qs.stored]
        except ImgrecError:  # a stored query no longer in the index
            qrows = []
        if qrows:
            out.append(Highlight("queries", proj.transform(np.asarray(m[qrows])),
                                 list(qs.stored), qrows, "query"))
    elif qs.uploads:
        feats = []
        for u in qs.uploads:
            try:
                feats.append(_upload_features(idx, source, u))
            except ImgrecError:
                continue
        if feats:
            out.append(Highlight("queries", proj.transform(np.stack(feats)),
                                 [u.name for u in qs.uploads][:len(feats)], [-1] * len(feats),
                                 "query"))
    return out


@per_index(max_entries=4, resource=True, spinner="Reading every image's labels…")
def top_label_names(idx: Index) -> list[str]:
    """Every image's top-1 label name in row order (empty without labels; do not modify)."""
    from imgrec.insights.labels import top_labels

    return top_labels(idx)[0] if idx.has_labels else []


@per_index(max_entries=8, spinner="Counting the gallery's labels…")
def label_counts(idx: Index, top: int = 50) -> list:
    """The ``top`` most frequent top-1 labels (raises QueryError without labels)."""
    from imgrec.insights.labels import label_counts as run

    return idx.label_counts(int(top)) if sharded(idx) else run(idx, int(top))


@per_index(max_entries=4, spinner="Comparing every image with every other…")
def _near_pairs(idx: Index, t_min: float) -> tuple:
    from imgrec.insights.duplicates import near_pairs

    if sharded(idx):
        idx.find_duplicates()  # raises: not offered across shards
    return near_pairs(idx.embeddings, idx.embedding_norms, t_min)


@per_index(max_entries=32, spinner="Grouping duplicates…")
def _duplicates(idx: Index, threshold: float, t_min: float, decisions: bool = True,
                stamp: tuple = ()) -> Any:
    from imgrec.insights.duplicates import find_duplicates

    return find_duplicates(idx, threshold, pairs=_near_pairs(idx, t_min), decisions=decisions)


def duplicates(idx: Index, threshold: float, decisions: bool = True) -> Any:
    """A DuplicateReport at ``threshold``; the near pairs are found once per index at the
    slider's lowest threshold and filtered for each threshold. ``decisions``: apply the
    remembered ones (the cache key holds them, so a decision shows at once)."""
    from imgrec.insights.duplicates.decide import Decisions

    t_min = min(duplicate_slider(idx)[0], float(threshold))
    stamp = Decisions(idx).stamp() if decisions else ()
    return _duplicates(idx, round(float(threshold), 4), t_min, bool(decisions), stamp)


@per_index(max_entries=8, spinner="Building the neighbour graph…")
def _graph(idx: Index, k: int, threshold: float, sample: int) -> Any:
    from dataclasses import replace

    from imgrec.insights.graph import neighbour_graph

    if sharded(idx):  # the sample's rows are those the unsharded index draws: the same graph
        view = idx.sample(sample)
        g = neighbour_graph(view, k=k, threshold=threshold, sample=sample)
        return replace(g, rows=view.rows[g.rows])
    return neighbour_graph(idx, k=k, threshold=threshold, sample=sample)


def graph(idx: Index, k: int, threshold: float, sample: int) -> Any:
    """:func:`imgrec.insights.graph.neighbour_graph` of a sample of the gallery (of a
    sharded index: of the sample drawn across its shards; rows global)."""
    return _graph(idx, int(k), round(float(threshold), 4), int(sample))


def label_names_of(idx: Index, rows: Any) -> list[str] | None:
    """The top-1 label name of each of ``rows`` (None without labels); a sharded index
    fetches just those rows' labels from their shards."""
    if not idx.has_labels:
        return None
    if sharded(idx):
        from imgrec.insights.labels import name_of

        top = idx.labels_top5[np.asarray(rows, np.int64)][:, 0]
        return [name_of(int(c)) for c in top]
    names = top_label_names(idx)
    return [names[int(r)] for r in rows]


@per_index(max_entries=64, spinner="Searching labels…")
def _label_search(idx: Index, text: str, k: int) -> SearchResult:
    from imgrec.insights.labels import search_by_label

    return idx.search_by_label(text, k) if sharded(idx) else search_by_label(idx, text, k)


def label_search(idx: Index, text: str, k: int) -> SearchResult:
    """:func:`imgrec.insights.labels.search_by_label` (raises QueryError with a user-facing
    message)."""
    return _label_search(idx, " ".join(text.split()), int(k))


@per_index(max_entries=32, spinner="Refining…",
           key=lambda qs, fb, weight, k: (qs.cache_key(), fb.positives, fb.negatives, weight, k))
def _refine(idx: Index, qs: QuerySet, fb: Feedback, weight: float, k: int) -> SearchResult:
    return idx.search(refine_queries(qs, fb), k=k, negatives=[Stored(p) for p in fb.negatives],
                      negative_weight=weight)


def refine(idx: Index, qs: QuerySet, fb: Feedback, weight: float, k: int) -> SearchResult:
    """The refined search: queries + 👍 images as positives, 👎 images as negatives."""
    return _refine(idx, qs, fb, round(float(weight), 4), int(k))


@st.cache_data(show_spinner="Making the query's thumbnail…", max_entries=64)
def upload_thumbnail(data: bytes) -> bytes | None:
    """A square thumbnail of an uploaded query (not tied to an index)."""
    return upload_thumbnail_bytes(data)
