"""Distance kernels and exact top-k selection over stored matrices.

A fast float32 pass scores every stored row; every row whose fast score lies within the
kernel's proven rounding bound of the k-th best is then rescored in float64, so the
returned top-k equals a float64 brute-force scan (ties broken by row number).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

EPS32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff u
CHUNK = 65536  # rows per block for the BLAS pass (bounds temporary memory)


def gamma(n: int) -> float:
    """Higham's gamma_n = n*u / (1 - n*u): bound on the relative error of an n-term sum."""
    nu = n * EPS32
    return nu / (1.0 - nu)


# no "arcp"/"afn": divisions and abs stay correctly rounded, so the error bounds hold
FAST = {"reassoc", "contract", "nsz"}


@njit(parallel=True, fastmath=FAST, cache=True)
def _manhattan(data, queries, out):  # pragma: no cover - compiled
    n, d = data.shape
    for i in prange(n):
        for j in range(queries.shape[0]):
            acc = np.float32(0.0)
            for t in range(d):
                acc += abs(data[i, t] - queries[j, t])
            out[j, i] = acc


@njit(parallel=True, fastmath=FAST, cache=True)
def _chi2(data, queries, out):  # pragma: no cover - compiled
    n, d = data.shape
    for i in prange(n):
        for j in range(queries.shape[0]):
            acc = np.float32(0.0)
            for t in range(d):
                s = data[i, t] + queries[j, t]
                if s > 0:
                    diff = data[i, t] - queries[j, t]
                    acc += diff * diff / s
            out[j, i] = np.float32(0.5) * acc


def dot_scores(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, n) float32 inner products, block by block over the rows of ``data``."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    out = np.empty((len(q), len(data)), dtype=np.float32)
    for start in range(0, len(data), CHUNK):
        out[:, start:start + CHUNK] = q @ np.asarray(data[start:start + CHUNK]).T
    return out


def manhattan_fast(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, n) float32 L1 distances."""
    out = np.empty((len(queries), len(data)), dtype=np.float32)
    _manhattan(data, np.ascontiguousarray(queries, dtype=np.float32), out)
    return out


def chi2_fast(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, n) float32 chi-square distances 0.5 * sum((a-b)^2 / (a+b)), empty bins skipped."""
    out = np.empty((len(queries), len(data)), dtype=np.float32)
    _chi2(data, np.ascontiguousarray(queries, dtype=np.float32), out)
    return out


# ---- float64 references (used to rescore candidates, and by the tests) ----------------

def cosine_exact(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row with each query, float64, shape (q, m)."""
    r = np.asarray(rows, dtype=np.float64)
    qq = np.atleast_2d(np.asarray(q, dtype=np.float64))
    rn = np.linalg.norm(r, axis=1)
    qn = np.linalg.norm(qq, axis=1)
    dots = qq @ r.T
    den = np.outer(qn, rn)
    return np.divide(dots, den, out=np.zeros_like(dots), where=den > 0)


def euclidean_exact(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    r = np.asarray(rows, dtype=np.float64)
    qq = np.atleast_2d(np.asarray(q, dtype=np.float64))
    return np.sqrt(((r[None, :, :] - qq[:, None, :]) ** 2).sum(-1))


def manhattan_exact(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    r = np.asarray(rows, dtype=np.float64)
    qq = np.atleast_2d(np.asarray(q, dtype=np.float64))
    return np.abs(r[None, :, :] - qq[:, None, :]).sum(-1)


def chi2_exact(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    r = np.asarray(rows, dtype=np.float64)[None, :, :]
    qq = np.atleast_2d(np.asarray(q, dtype=np.float64))[:, None, :]
    s = r + qq
    terms = np.divide((r - qq) ** 2, s, out=np.zeros(np.broadcast_shapes(r.shape, qq.shape)),
                      where=s > 0)
    return 0.5 * terms.sum(-1)


# ---- selection ---------------------------------------------------------------------------

def order(values: np.ndarray, rows: np.ndarray, larger_is_better: bool) -> np.ndarray:
    """Positions sorting ``values`` best first, ties broken by the smaller row number."""
    key = -values if larger_is_better else values
    return np.lexsort((rows, key))


def candidates(lo: np.ndarray, hi: np.ndarray, k: int, larger_is_better: bool) -> np.ndarray:
    """Rows that can belong to the exact top-k, given bounds ``lo <= exact <= hi`` per row.

    For smaller-is-better, a row whose lower bound exceeds the k-th smallest upper bound
    cannot be in the top-k (k rows are surely better); symmetrically for larger-is-better.
    """
    n = len(lo)
    if k >= n:
        return np.arange(n)
    if larger_is_better:
        kth_lo = np.partition(lo, n - k)[n - k]
        return np.flatnonzero(hi >= kth_lo)
    kth_hi = np.partition(hi, k - 1)[k - 1]
    return np.flatnonzero(lo <= kth_hi)
