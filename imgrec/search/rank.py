"""Exact top-k ranking over feature matrices: per query and combined over all queries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from imgrec.errors import IndexFormatError, QueryError
from imgrec.index.half import HalfCopy
from imgrec.search import kernels as K
from imgrec.search import topk

METHODS = ("embedding", "color", "pca")
EMBEDDING_METRICS = ("cosine", "euclidean", "manhattan", "all")
MAX_QUERIES = 5
#: The metric each method uses (embedding: chosen by the user).
METHOD_METRIC = {"color": "chi2", "pca": "cosine"}
LARGER_IS_BETTER = {"cosine": True, "euclidean": False, "manhattan": False, "chi2": False}


@dataclass(frozen=True)
class Hit:
    """One ranked gallery image.

    ``score`` is higher-is-better (cosine similarity, or 1 / (1 + distance));
    ``distance`` is the metric's raw value (for cosine: 1 - cosine).
    """

    rank: int
    path: str
    score: float
    distance: float
    row: int
    metrics: dict[str, float] | None = None


@dataclass
class SearchResult:
    """Ranked lists for each query plus a combined ranking over all queries."""

    method: str
    metric: str
    k: int
    queries: list[str]
    per_query: list[list[Hit]]
    combined: list[Hit]
    notes: list[str] = field(default_factory=list)
    #: labels of the negative examples of a refined search ("less like this"); with
    #: negatives, ``combined`` is the refined ranking (see :func:`rank_refined`)
    negatives: list[str] = field(default_factory=list)
    negative_weight: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by ``imgrec search --json``."""
        def hits(hs: list[Hit]) -> list[dict[str, Any]]:
            return [{k: v for k, v in asdict(h).items() if k != "row" and v is not None}
                    for h in hs]
        out = {"method": self.method, "metric": self.metric, "k": self.k,
               "queries": [{"query": q, "hits": hits(h)}
                           for q, h in zip(self.queries, self.per_query, strict=True)],
               "combined": hits(self.combined), "notes": self.notes}
        if self.negatives:
            out["negatives"] = list(self.negatives)
            out["negative_weight"] = self.negative_weight
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """Flat rows (query, rank, path, score, distance, method, metric) for CSV export."""
        out = []
        groups = list(zip(self.queries, self.per_query, strict=True))
        if len(self.queries) > 1 or self.negatives:
            groups.append(("combined", self.combined))
        for q, hs in groups:
            out += [{"query": q, "rank": h.rank, "path": h.path, "score": h.score,
                     "distance": h.distance, "method": self.method, "metric": self.metric}
                    for h in hs]
        return out


def check_request(method: str, metric: str, k: int, n_queries: int) -> str:
    """Validate a request; return the kernel metric it runs (cosine/euclidean/...)."""
    if method not in METHODS:
        raise QueryError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "embedding" and metric not in EMBEDDING_METRICS:
        raise QueryError(f"unknown metric {metric!r}; choose one of "
                         f"{', '.join(EMBEDDING_METRICS)}")
    if not isinstance(k, int | np.integer) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    if n_queries < 1:
        raise QueryError("give at least one query image")
    if n_queries > MAX_QUERIES:
        raise QueryError(f"at most {MAX_QUERIES} query images per search (got {n_queries})")
    return metric if method == "embedding" else METHOD_METRIC[method]


def score_of(metric: str, value: float) -> tuple[float, float]:
    """(score, distance) for a metric's raw value."""
    if metric == "cosine":
        value = min(1.0, max(-1.0, float(value)))  # float64 rounding can exceed 1 by an ulp
        return value, 1.0 - value
    value = max(0.0, float(value))
    return 1.0 / (1.0 + value), value


def _bounds(metric: str, data: np.ndarray, q: np.ndarray, norms: np.ndarray | None,
            half: HalfCopy | None) -> dict[str, Any]:
    """Fast scores (q, n) of one metric and their proven error bound.

    Returns the keyword arguments of :func:`imgrec.search.topk.candidates`: ``fast`` (with a
    per-row ``scale``), ``err`` and ``rel``/``const`` such that
    ``|fast * scale - exact| <= rel * |fast * scale| + err + const``. With ``half`` the
    scan reads its float16 rows and each row's bound grows by its stored rounding error
    (see :mod:`imgrec.index.half`).
    """
    d = data.shape[1]
    rows = data if half is None else half.data
    if metric == "cosine":
        assert norms is not None
        qn = np.linalg.norm(q.astype(np.float64), axis=1)
        qu = (q / np.where(qn > 0, qn, 1)[:, None]).astype(np.float32)
        dots = K.dot_scores(rows, qu)
        inv = np.divide(1.0, norms, out=np.zeros(len(norms)), where=norms > 0)
        g = 4 * K.gamma(d + 2)
        if half is None:
            return {"fast": dots, "scale": inv, "const": g}
        # relative to |x|: accumulation over fl16(x) (|fl16(x)| <= |x| + r) plus r itself
        rho = half.l2 * inv
        return {"fast": dots, "scale": inv, "err": (g * (1 + rho) + rho * (1 + 1e-6))[None]}
    if metric == "euclidean":
        assert norms is not None
        dots = K.dot_scores(rows, q)
        esq = norms.astype(np.float64) ** 2
        qsq = (q.astype(np.float64) ** 2).sum(1)
        g = 4 * K.gamma(d + 8)
        extra = np.zeros(1) if half is None else 2 * half.l2.astype(np.float64) * (1 + g)
        dist, err = np.empty(dots.shape), np.empty(dots.shape)
        with K._PARALLEL:
            K.euclidean_from_dots(dots, esq, qsq, g, extra, dist, err)
        return {"fast": dist, "err": err}
    if metric == "manhattan":
        fast = K.manhattan_fast(rows, q)
        g = K.gamma(d + 2)
        err = None if half is None else (half.l1.astype(np.float64) * (1 + 1e-6))[None]
        return {"fast": fast, "err": err, "rel": g / (1 - g), "const": 1e-30}
    g = K.gamma(d + 8)
    return {"fast": K.chi2_fast(data, q), "rel": g / (1 - g),
            "const": K.chi2_abs_slack(d) + 1e-30}


_EXACT = {"cosine": K.cosine_exact, "euclidean": K.euclidean_exact,
          "manhattan": K.manhattan_exact, "chi2": K.chi2_exact}


def rank(metric: str, data: np.ndarray, queries: np.ndarray, k: int,
         norms: np.ndarray | None = None,
         half: HalfCopy | None = None) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                 tuple[np.ndarray, np.ndarray]]:
    """Exact top-k rows and values per query and for the mean over queries.

    Args:
        metric: ``cosine`` (similarity), ``euclidean``, ``manhattan`` or ``chi2`` (distances).
        data: (n, d) float32 matrix (a memory map is fine; it is read once per call).
        queries: (q, d) float32 query features.
        k: results wanted (clipped to n).
        norms: (n,) row norms of ``data`` (needed for cosine and euclidean).
        half: the float16 copy of ``data`` (embeddings only): the first pass scans it,
            and only the candidate rows of ``data`` are read. Results are the same.

    Returns:
        ``([(rows, values) per query], (rows, values) combined)``, best first.

    Example:
        >>> data = np.eye(3, dtype=np.float32)
        >>> per, comb = rank("cosine", data, data[:1], 2, norms=np.ones(3, np.float32))
        >>> per[0][0].tolist()
        [0, 1]
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = len(data)
    k = min(int(k), n)
    if n == 0:
        empty = (np.zeros(0, np.int64), np.zeros(0))
        return [empty for _ in q], empty
    if not np.isfinite(q).all():
        raise QueryError("a query's features hold NaN or infinite values")
    if metric == "chi2":  # histograms have no float16 copy
        half = None
    larger = LARGER_IS_BETTER[metric]
    rows_per_slot, thresholds = topk.candidates(k=k, larger_is_better=larger,
                                                **_bounds(metric, data, q, norms, half))
    if not np.isfinite(thresholds).all() and k < n:
        raise IndexFormatError("the index holds non-finite feature values: run "
                               "`imgrec info --verify`, then rebuild with --full")
    exact = _EXACT[metric]

    def pick(rows, score_fn) -> tuple[np.ndarray, np.ndarray]:
        values = score_fn(rows)
        if not np.isfinite(values).all():
            raise IndexFormatError("the index holds non-finite feature values: run "
                                   "`imgrec info --verify`, then rebuild with --full")
        o = K.order(values, rows, larger)[:k]
        return rows[o], values[o]

    per = [pick(rows_per_slot[j], lambda rows, j=j: exact(data[rows], q[j])[0])
           for j in range(len(q))]
    if len(q) == 1:
        return per, per[0]
    combined = pick(rows_per_slot[-1], lambda rows: exact(data[rows], q).mean(0))
    return per, combined


def rank_refined(data: np.ndarray, norms: np.ndarray, positives: np.ndarray,
                 negatives: np.ndarray, weight: float, k: int,
                 half: HalfCopy | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows for relevance feedback ("more like these, less like those").

    score(x) = mean cosine(x, positives) - weight * mean cosine(x, negatives). This is
    ``x . v / |x|`` for the single vector ``v = mean(p/|p|) - weight * mean(n/|n|)``, so
    one float32 pass over ``data`` scores every row; rows whose fast score lies within
    the proven rounding bound of the k-th best are rescored in float64 from the
    definition, as :func:`rank` does, so the result equals a float64 brute-force scan
    (ties broken by row number).

    Args:
        data: (n, d) float32 matrix (a memory map is fine).
        norms: (n,) row norms of ``data``.
        positives: (p, d) positive examples (p >= 1).
        negatives: (m, d) negative examples (m may be 0).
        weight: the negatives' weight (>= 0).
        k: results wanted (clipped to n).
        half: the float16 copy of ``data``, scanned instead of it (same results).

    Returns:
        ``(rows, scores)``, best first.

    Example:
        >>> data = np.eye(3, dtype=np.float32)
        >>> rank_refined(data, np.ones(3, np.float32), data[:1], data[1:2], 0.5, 3)[0].tolist()
        [0, 2, 1]
    """
    pos = _unit(positives)
    neg = _unit(negatives)
    if len(pos) == 0:
        raise QueryError("give at least one positive example")
    v = pos.mean(0) - (weight * neg.mean(0) if len(neg) else 0.0)
    n = len(data)
    k = min(int(k), n)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    d = data.shape[1]
    dots = K.dot_scores(data if half is None else half.data, v[None].astype(np.float32))[0]
    inv = np.divide(1.0, norms, out=np.zeros(len(norms), np.float64), where=norms > 0)
    fast = dots.astype(np.float64) * inv
    g = 4 * K.gamma(d + 2) + 4 * K.EPS32
    if half is None:
        err = g * float(np.linalg.norm(v)) + 1e-30
    else:  # see _bounds: rho = |x - fl16(x)| / |x|
        rho = half.l2 * inv
        err = (g * (1 + rho) + rho * (1 + 1e-6)) * float(np.linalg.norm(v)) + 1e-30
    rows = K.candidates(fast - err, fast + err, k, True)
    values = np.empty(len(rows))
    for s in range(0, len(rows), 16384):  # bounded memory even when all rows tie
        sub = data[rows[s:s + 16384]]
        val = K.cosine_exact(sub, pos).mean(0)
        if len(neg):
            val -= weight * K.cosine_exact(sub, neg).mean(0)
        values[s:s + 16384] = val
    if not np.isfinite(values).all():
        raise IndexFormatError("the index holds non-finite feature values: run "
                               "`imgrec info --verify`, then rebuild with --full")
    o = K.order(values, rows, True)[:k]
    return rows[o], values[o]


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length in float64 (zero rows stay zero)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.size == 0:
        return x.reshape(0, x.shape[-1] if x.ndim == 2 else 0)
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, nrm, out=np.zeros_like(x), where=nrm > 0)
