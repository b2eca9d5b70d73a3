"""The search methods: for each, the stored matrix it scans, its metric and query transform.

A request names a method (``embedding``, ``color``, ``pca``); :data:`TABLE` says which
query feature it starts from, how that feature becomes the query vector, which matrix
of the index it is compared with, and under which metrics. :func:`check_request`
validates a request against the table before any image is decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from imgrec.errors import QueryError
from imgrec.index.half import HalfCopy

if TYPE_CHECKING:
    from imgrec.index.index import Index

MAX_QUERIES = 5
#: whether a larger value of each kernel metric is better (similarity) or worse (distance)
LARGER_IS_BETTER = MappingProxyType(
    {"cosine": True, "euclidean": False, "manhattan": False, "chi2": False})


@dataclass(frozen=True)
class Scan:
    """What a search compares its queries with: a stored matrix and what goes with it.

    A row filter (a subset of the rows) belongs here too when there is one: the ranking
    takes what to scan from this object alone.
    """

    data: np.ndarray  # (n, d) rows, a memory map or a view of one
    norms: np.ndarray | None  # (n,) row norms (cosine and euclidean)
    half: HalfCopy | None  # the float16 copy the first pass scans instead, or None


@dataclass(frozen=True)
class Method:
    """One entry of the method table.

    Attributes:
        name: what a request calls it.
        metrics: the metrics a request may choose, the default first; a method with one
            metric ignores the request's ``metric``. ``all`` is the union of the three
            embedding metrics (see :func:`imgrec.search.engine.rank_all`).
        feature: the query feature it starts from: ``"embedding"`` or ``"histogram"``.
        matrix: ``(index, components) -> Scan``.
        transform: ``(index, features, stored rows, components) -> queries``: the query
            vectors, (q, d) float32, from the stacked features (a stored row may reuse
            its stored vector).
        components: whether it takes ``pca_components``.
    """

    name: str
    metrics: tuple[str, ...]
    feature: str
    matrix: Callable[[Index, int | None], Scan]
    transform: Callable[[Index, np.ndarray, list[int | None], int | None], np.ndarray]
    components: bool = False

    def metric(self, requested: str) -> str:
        """The metric a request runs (the requested one, where the method offers a choice)."""
        return requested if len(self.metrics) > 1 else self.metrics[0]


def _embedding_matrix(index: Index, components: int | None) -> Scan:
    half = index.embeddings_f16 if index.first_pass == "float16" else None
    return Scan(index.embeddings, index.embedding_norms, half)


def _color_matrix(index: Index, components: int | None) -> Scan:
    return Scan(index.histograms, None, None)  # histograms have no float16 copy


def _pca_matrix(index: Index, components: int | None) -> Scan:
    assert components is not None
    return Scan(index.pca_histograms[:, :components], prefix_norms(index, components), None)


def _as_is(index: Index, q: np.ndarray, rows: list[int | None],
           components: int | None) -> np.ndarray:
    return np.asarray(q, np.float32)


def _pca_queries(index: Index, q: np.ndarray, rows: list[int | None],
                 components: int | None) -> np.ndarray:
    out = index.pca().transform(q, components)
    for i, row in enumerate(rows):  # a stored query reuses its stored projection
        if row is not None:
            out[i] = index.pca_histograms[row, :components]
    return np.asarray(out, np.float32)


#: method name -> :class:`Method`
TABLE: MappingProxyType[str, Method] = MappingProxyType({
    "embedding": Method("embedding", ("cosine", "euclidean", "manhattan", "all"), "embedding",
                        _embedding_matrix, _as_is),
    "color": Method("color", ("chi2",), "histogram", _color_matrix, _as_is),
    "pca": Method("pca", ("cosine",), "histogram", _pca_matrix, _pca_queries, components=True),
})
METHODS = tuple(TABLE)
EMBEDDING_METRICS = TABLE["embedding"].metrics
#: the metric of each method that has only one
METHOD_METRIC = MappingProxyType({m.name: m.metrics[0] for m in TABLE.values()
                                  if len(m.metrics) == 1})


def is_whole(value: Any) -> bool:
    """Whether ``value`` is an integer (a bool is not).

    Example:
        >>> [is_whole(v) for v in (3, np.int64(3), True, 1.5, "3")]
        [True, True, False, False, False]
    """
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def shown(value: Any, limit: int = 60) -> str:
    """A caller's value as one bounded line, for error messages (an array's repr spans
    lines, and a repr may fail).

    Example:
        >>> shown(np.zeros((2, 1)))
        'array([[0.], [0.]])'
    """
    try:
        text = " ".join(repr(value).split())
    except Exception:  # a caller's object whose repr fails is named by its type
        text = f"<{type(value).__qualname__}>"
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def check_request(method: str, metric: str, k: Any, n_queries: int,
                  pca_components: Any = None) -> Method:
    """Validate a request (nothing is coerced); return its method's table entry.

    Raises:
        QueryError: unknown method or metric, ``k`` not a positive integer, no or too many
            queries, ``pca_components`` neither None nor a positive integer.

    Example:
        >>> check_request("color", "cosine", 5, 1).metric("cosine")
        'chi2'
        >>> check_request("pca", "cosine", True, 1)
        Traceback (most recent call last):
        ...
        imgrec.errors.QueryError: k must be a positive integer, got True
    """
    entry = TABLE.get(method) if isinstance(method, str) else None
    if entry is None:
        raise QueryError(f"unknown method {shown(method)}; choose one of {', '.join(METHODS)}")
    if len(entry.metrics) > 1 and not (isinstance(metric, str) and metric in entry.metrics):
        raise QueryError(f"unknown metric {shown(metric)}; choose one of "
                         f"{', '.join(entry.metrics)}")
    if not is_whole(k) or k < 1:
        raise QueryError(f"k must be a positive integer, got {shown(k)}")
    if pca_components is not None and not is_whole(pca_components):
        raise QueryError("pca_components must be a whole number of components (or None for "
                         f"all the index holds), got {shown(pca_components)}")
    if pca_components is not None and pca_components < 1:
        raise QueryError(f"pca_components must be at least 1, got {shown(pca_components)}")
    if n_queries < 1:
        raise QueryError("give at least one query image")
    if n_queries > MAX_QUERIES:
        raise QueryError(f"at most {MAX_QUERIES} query images per search (got {n_queries})")
    return entry


def components(index: Index, requested: int | None, notes: list[str]) -> int:
    """The PCA components a search uses: the requested number, at most what is stored."""
    stored = int(index.manifest.pca_components)
    if requested is None:
        return stored
    if requested > stored:
        notes.append(f"pca_components clipped to {stored}, the most this index holds")
        return stored
    return int(requested)


def prefix_norms(index: Index, c: int) -> np.ndarray:
    """Norms of the first ``c`` PCA components of every row (float32, cached on the index).

    The cache lives in the index object (a few entries, cleared beyond eight), so it is
    dropped with it and never shared between indexes.
    """
    with index._lock:
        cache: dict[int, np.ndarray] = index._pca_norms
        if c not in cache:
            if len(cache) > 8:
                cache.clear()
            p = index.pca_histograms
            cache[c] = np.concatenate(
                [np.linalg.norm(np.asarray(p[s:s + 65536, :c], np.float64), axis=1)
                 for s in range(0, len(p), 65536)] or [np.zeros(0)]).astype(np.float32)
        return cache[c]
