"""Exact top-k ranking over a feature matrix: per query and combined over all queries.

A fast float32 (or float16) scan scores every row with a proven error bound
(:func:`_bounds`); :func:`imgrec.search.topk.candidates` keeps the rows whose bound reaches
the k-th best; only those are rescored in float64 from the metric's definition. So the
top-k equals a float64 brute-force scan, ties broken by row number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imgrec.errors import IndexFormatError, QueryError
from imgrec.index.half import HalfCopy
from imgrec.search import kernels as K
from imgrec.search import topk
from imgrec.search.methods import (  # noqa: F401 - re-exported: imported from here elsewhere
    EMBEDDING_METRICS,
    LARGER_IS_BETTER,
    MAX_QUERIES,
    METHOD_METRIC,
    METHODS,
)
from imgrec.search.results import Hit, SearchResult, score_of  # noqa: F401 - re-exported

NON_FINITE = ("the index holds non-finite feature values: run `imgrec info --verify`, "
              "then rebuild with --full")


def require_finite(values: np.ndarray) -> None:
    """Refuse exact values (or top-k thresholds) computed from NaN or infinite features."""
    if not np.isfinite(values).all():
        raise IndexFormatError(NON_FINITE)


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
         half: HalfCopy | None = None, mask: np.ndarray | None = None
         ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """Exact top-k rows and values per query and for the mean over queries.

    Args:
        metric: ``cosine`` (similarity), ``euclidean``, ``manhattan`` or ``chi2`` (distances).
        data: (n, d) float32 matrix (a memory map is fine; it is read once per call).
        queries: (q, d) float32 query features.
        k: results wanted (clipped to n).
        norms: (n,) row norms of ``data`` (needed for cosine and euclidean).
        half: the float16 copy of ``data`` (embeddings only): the first pass scans it,
            and only the candidate rows of ``data`` are read. Results are the same.
        mask: (n,) bool, or None: only rows where it is True are ranked (the exact top-k
            among them; see :mod:`imgrec.search.filters`).

    Returns:
        ``([(rows, values) per query], (rows, values) combined)``, best first.

    Example:
        >>> data = np.eye(3, dtype=np.float32)
        >>> per, comb = rank("cosine", data, data[:1], 2, norms=np.ones(3, np.float32))
        >>> per[0][0].tolist()
        [0, 1]
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = len(data) if mask is None else int(np.count_nonzero(mask))
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
                                                mask=mask,
                                                **_bounds(metric, data, q, norms, half))
    if k < n:
        require_finite(thresholds)
    exact = _EXACT[metric]

    def pick(rows, score_fn) -> tuple[np.ndarray, np.ndarray]:
        values = score_fn(rows)
        require_finite(values)
        o = topk.order(values, rows, larger)[:k]
        return rows[o], values[o]

    per = [pick(rows_per_slot[j], lambda rows, j=j: exact(data[rows], q[j])[0])
           for j in range(len(q))]
    if len(q) == 1:
        return per, per[0]
    combined = pick(rows_per_slot[-1], lambda rows: exact(data[rows], q).mean(0))
    return per, combined
