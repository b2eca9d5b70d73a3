"""Exact top-k lists for many queries at once, scored exactly as :func:`imgrec.search.rank.rank`.

A block of queries is scored against every stored row in one pass (a float32 matrix product
for cosine and euclidean; for manhattan and chi-square, numba kernels that keep each row in
cache while it meets 128 queries, so the data is read once per 128 queries instead of once
per five as in a search: the same float32 terms summed in another order, inside the same
bound); each score carries the same proven rounding bound the search uses, so
:func:`imgrec.search.topk.candidates` keeps every row that can belong to the exact top-k,
and those rows are rescored in float64 by the search's own reference functions and ordered
by :func:`imgrec.search.topk.order` (ties by row number). The lists are therefore those
``Index.search`` returns, without one call per query.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from imgrec.search import kernels as K
from imgrec.search import topk
from imgrec.search.rank import LARGER_IS_BETTER
from imgrec.search.rerank import Rerank, expand, fused

#: queries scored per block (bounds the (block, n) score matrices)
BLOCK = 256

#: queries meeting each row while it is in cache (manhattan and chi-square)
TILE = 128

_EXACT = {"cosine": K.cosine_exact, "euclidean": K.euclidean_exact,
          "manhattan": K.manhattan_exact, "chi2": K.chi2_exact}


@njit(parallel=True, fastmath=K.FAST, cache=K.CACHE)
def _manhattan_tile(data, q, out):  # pragma: no cover - compiled
    n, d = data.shape
    for i in prange(n):
        for j in range(q.shape[0]):
            acc = np.float32(0.0)
            for t in range(d):
                acc += abs(data[i, t] - q[j, t])
            out[j, i] = acc


@njit(parallel=True, fastmath=K.FAST, cache=K.CACHE)
def _chi2_tile(data, q, out):  # pragma: no cover - compiled
    n, d = data.shape
    tiny = np.float32(K.TINY)
    for i in prange(n):
        for j in range(q.shape[0]):
            acc = np.float32(0.0)
            for t in range(d):
                acc += K._chi_term(data[i, t], q[j, t], tiny)
            out[j, i] = np.float32(0.5) * acc


def tiled_scores(metric: str, data: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(m, n) float32 manhattan or chi-square scores, :data:`TILE` queries per data pass."""
    data = np.ascontiguousarray(data, np.float32)
    q = np.ascontiguousarray(q, np.float32)
    kernel = _manhattan_tile if metric == "manhattan" else _chi2_tile
    out = np.empty((len(q), len(data)), np.float32)
    with K._PARALLEL:
        for s in range(0, len(q), TILE):
            kernel(data, q[s:s + TILE], out[s:s + TILE])
    return out


def _fast(metric: str, data: np.ndarray, q: np.ndarray, norms: np.ndarray | None) -> dict:
    """Fast scores of a query block and their bound (the keywords of ``topk.candidates``)."""
    d = data.shape[1]
    if metric == "cosine":
        qn = np.linalg.norm(q.astype(np.float64), axis=1)
        qu = (q / np.where(qn > 0, qn, 1)[:, None]).astype(np.float32)
        dots = qu @ np.asarray(data, np.float32).T  # any summation order: same gamma bound
        inv = np.divide(1.0, norms, out=np.zeros(len(norms)), where=norms > 0)
        return {"fast": dots, "scale": inv, "const": 4 * K.gamma(d + 2)}
    if metric == "euclidean":
        dots = q @ np.asarray(data, np.float32).T
        esq = norms.astype(np.float64) ** 2
        qsq = (q.astype(np.float64) ** 2).sum(1)
        g = 4 * K.gamma(d + 8)
        dist, err = np.empty(dots.shape), np.empty(dots.shape)
        with K._PARALLEL:
            K.euclidean_from_dots(dots, esq, qsq, g, np.zeros(1), dist, err)
        return {"fast": dist, "err": err}
    fast = tiled_scores(metric, data, q)
    if metric == "manhattan":
        g = K.gamma(d + 2)
        return {"fast": fast, "rel": g / (1 - g), "const": 1e-30}
    g = K.gamma(d + 8)
    return {"fast": fast, "rel": g / (1 - g), "const": K.chi2_abs_slack(d) + 1e-30}


def exact_topk(metric: str, data: np.ndarray, queries: np.ndarray, k: int,
               norms: np.ndarray | None = None,
               self_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k rows of every query, best first, optionally leaving each query out.

    Args:
        metric: ``cosine``, ``euclidean``, ``manhattan`` or ``chi2`` (as in the search).
        data: (n, d) float32 stored rows (a memory map is fine).
        queries: (m, d) float32 query features.
        k: results per query (clipped to the rows available).
        norms: (n,) row norms of ``data`` (cosine and euclidean).
        self_rows: (m,) the row of each query in ``data`` (leave-one-out: that row is
            never returned), or None.

    Returns:
        ``(rows, values)`` of shape (m, k'): row numbers and their float64 exact values.

    Example:
        >>> data = np.eye(3, dtype=np.float32)
        >>> exact_topk("cosine", data, data, 1, np.ones(3, np.float32), np.arange(3))[0][:, 0]
        array([1, 0, 0])
    """
    q_all = np.atleast_2d(np.asarray(queries, np.float32))
    n = len(data)
    loo = self_rows is not None
    k = max(0, min(int(k), n - (1 if loo else 0)))
    rows_out = np.zeros((len(q_all), k), np.int64)
    vals_out = np.zeros((len(q_all), k))
    if k == 0:
        return rows_out, vals_out
    larger = LARGER_IS_BETTER[metric]
    exact = _EXACT[metric]
    want = k + (1 if loo else 0)  # the query's own row may take one place
    for s in range(0, len(q_all), BLOCK):
        q = q_all[s:s + BLOCK]
        cand, _ = topk.candidates(k=want, larger_is_better=larger, **_fast(metric, data, q, norms))
        for j in range(len(q)):
            rows = cand[j]
            if loo:
                rows = rows[rows != self_rows[s + j]]
            values = exact(data[rows], q[j])[0]
            o = topk.order(values, rows, larger)[:k]
            rows_out[s + j], vals_out[s + j] = rows[o], values[o]
    return rows_out, vals_out


def reranked_loo(metric: str, data: np.ndarray, norms: np.ndarray | None, qrows: np.ndarray,
                 k: int, rerank: Rerank | None = None) -> np.ndarray:
    """The top-k rows of each stored row ``qrows`` used as a query, itself left out.

    With ``rerank`` (cosine), each query is expanded (:mod:`imgrec.search.rerank`) by its
    nearest rows found with itself left out too, so it never expands itself; a row's
    re-ranked score is the better of its two cosines, so its exact top-k lies in the union
    of the two exact top-k lists (ties by row number in both).
    """
    queries = np.asarray(data[qrows], np.float32)
    rows, _ = exact_topk(metric, data, queries, k, norms, self_rows=qrows)
    if rerank is None:
        return rows
    assert norms is not None
    near, sims = exact_topk(metric, data, queries, rerank.n, norms, self_rows=qrows)
    q2 = expand(queries, data, norms, near, sims, rerank.alpha).astype(np.float32)
    rows2, _ = exact_topk(metric, data, q2, k, norms, self_rows=qrows)
    out = np.empty_like(rows)
    for j in range(len(qrows)):
        union = np.unique(np.concatenate([rows[j], rows2[j]]))
        values = fused(data, union, queries[j:j + 1], q2[j:j + 1])[0]
        out[j] = union[topk.order(values, union, True)[:k]]
    return out
