"""Scan kernels over stored matrices (fast float32 scores) and their float64 references.

A fast pass scores every stored row; :mod:`imgrec.search.rank` bounds its rounding error,
keeps the rows that can reach the top-k (:func:`imgrec.search.topk.candidates`) and
rescores those with the float64 references below. Every scan runs through
:func:`_blocked`, the one entry point of the compiled loops: a row subset (a filter) would
be passed there and the loops would skip the rows outside it.
"""

from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from imgrec._numba_cache import CACHE

# numba's default threading layer must not be entered from two threads at once (the
# dashboard serves several sessions from threads); the scans are memory-bound anyway.
_PARALLEL = threading.Lock()

EPS32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff u
CHUNK = 65536  # rows per block for the BLAS pass (bounds temporary memory)
TINY = 1e-30  # chi-square denominators below this are replaced by it


def chi2_abs_slack(d: int) -> float:
    """Extra absolute error of the branch-free chi-square kernel (d terms, each < TINY)."""
    return 0.5 * d * TINY


def gamma(n: int) -> float:
    """Higham's gamma_n = n*u / (1 - n*u): bound on the relative error of an n-term sum."""
    nu = n * EPS32
    return nu / (1.0 - nu)


# no "arcp"/"afn": divisions and abs stay correctly rounded, so the error bounds hold
FAST = {"reassoc", "contract", "nsz"}


# Rows are float32, or float16 (the first pass, see imgrec.index.half). numba has no float16
# type: those rows are read as uint16 bit patterns and widened with LLVM's half -> float
# conversion, which compiles to F16C's vcvtph2ps where available. The conversion is
# exact, so the only approximation is the stored rounding itself, which imgrec.index.half
# bounds per row. Each kernel below compiles once per row type.

@intrinsic
def _half_to_float(typingctx, bits):  # pragma: no cover - compiled
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


def _widen(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


@overload(_widen, inline="always")
def _widen_impl(x):  # pragma: no cover - compiled
    if x == types.uint16:
        return lambda x: _half_to_float(x)
    return lambda x: x


# Each kernel scores every row against up to five queries in one pass over the data: the
# row is loaded once and feeds five accumulators (queries are zero-padded to five).
# Over float16 rows the five-query pass is bound by multiply-add throughput, not memory
# (4.1 G FMAs at 400,000 x 2048; tiling the queries for L1 did not help: bench/).
QBLOCK = 5


@njit(parallel=True, fastmath=FAST, cache=CACHE)
def _dots(data, q, out):  # pragma: no cover - compiled
    # two rows at a time: each query element loaded once feeds two accumulators
    n, d = data.shape
    for ii in prange((n + 1) // 2):
        i = 2 * ii
        j = min(i + 1, n - 1)
        a0 = a1 = a2 = a3 = a4 = np.float32(0.0)
        b0 = b1 = b2 = b3 = b4 = np.float32(0.0)
        for t in range(d):
            x, y = _widen(data[i, t]), _widen(data[j, t])
            q0, q1, q2, q3, q4 = q[0, t], q[1, t], q[2, t], q[3, t], q[4, t]
            a0 += x * q0
            a1 += x * q1
            a2 += x * q2
            a3 += x * q3
            a4 += x * q4
            b0 += y * q0
            b1 += y * q1
            b2 += y * q2
            b3 += y * q3
            b4 += y * q4
        out[0, i], out[1, i], out[2, i], out[3, i], out[4, i] = a0, a1, a2, a3, a4
        out[0, j], out[1, j], out[2, j], out[3, j], out[4, j] = b0, b1, b2, b3, b4


@njit(parallel=True, fastmath=FAST, cache=CACHE)
def _dots1(data, q, out):  # pragma: no cover - compiled
    n, d = data.shape
    for i in prange(n):
        acc = np.float32(0.0)
        for t in range(d):
            acc += _widen(data[i, t]) * q[0, t]
        out[0, i] = acc


@njit(parallel=True, fastmath=FAST, cache=CACHE)
def _manhattan(data, q, out):  # pragma: no cover - compiled
    n, d = data.shape
    for i in prange(n):
        a0 = a1 = a2 = a3 = a4 = np.float32(0.0)
        for t in range(d):
            x = _widen(data[i, t])
            a0 += abs(x - q[0, t])
            a1 += abs(x - q[1, t])
            a2 += abs(x - q[2, t])
            a3 += abs(x - q[3, t])
            a4 += abs(x - q[4, t])
        out[0, i], out[1, i], out[2, i], out[3, i], out[4, i] = a0, a1, a2, a3, a4


@njit(parallel=True, fastmath=FAST, cache=CACHE)
def _manhattan1(data, q, out):  # pragma: no cover - compiled
    n, d = data.shape
    for i in prange(n):
        acc = np.float32(0.0)
        for t in range(d):
            acc += abs(_widen(data[i, t]) - q[0, t])
        out[0, i] = acc


@njit(fastmath=FAST, inline="always")
def _chi_term(x, y, tiny):  # pragma: no cover - compiled
    diff = x - y
    return diff * diff / max(x + y, tiny)


# Branch-free so it vectorises: where a + b == 0 the numerator is 0 too, and dividing by
# TINY instead of a tiny a + b changes a term by less than TINY (see chi2_abs_slack).
@njit(parallel=True, fastmath=FAST, cache=CACHE)
def _chi2(data, q, out):  # pragma: no cover - compiled
    n, d = data.shape
    tiny = np.float32(TINY)
    for i in prange(n):
        a0 = a1 = a2 = a3 = a4 = np.float32(0.0)
        for t in range(d):
            x = data[i, t]
            a0 += _chi_term(x, q[0, t], tiny)
            a1 += _chi_term(x, q[1, t], tiny)
            a2 += _chi_term(x, q[2, t], tiny)
            a3 += _chi_term(x, q[3, t], tiny)
            a4 += _chi_term(x, q[4, t], tiny)
        half = np.float32(0.5)
        out[0, i], out[1, i], out[2, i], out[3, i], out[4, i] = (
            half * a0, half * a1, half * a2, half * a3, half * a4)


@njit(parallel=True, fastmath=FAST, cache=CACHE)
def _chi2_1(data, q, out):  # pragma: no cover - compiled
    n, d = data.shape
    tiny = np.float32(TINY)
    for i in prange(n):
        acc = np.float32(0.0)
        for t in range(d):
            acc += _chi_term(data[i, t], q[0, t], tiny)
        out[0, i] = np.float32(0.5) * acc


@njit(parallel=True, fastmath=FAST, cache=CACHE)
def euclidean_from_dots(dots, esq, qsq, g, extra, dist, err):  # pragma: no cover - compiled
    """Distances sqrt(|e|^2 + |q|^2 - 2 e.q) and their error bound, in one fused pass.

    ``g`` bounds the relative error of the squared distance w.r.t. |e|^2 + |q|^2;
    ``extra[i] * |q_j|`` is added to the squared distance's bound for row i (the float16
    pass: 2 |x - fl16(x)| (1 + g)), ``extra`` may be a single 0 for none.
    """
    nq, n = dots.shape
    per_row = len(extra) == n
    for i in prange(n):
        ex = extra[i] if per_row else extra[0]
        for j in range(nq):
            scale = np.float64(esq[i]) + qsq[j]
            sq = max(scale - 2.0 * dots[j, i], 0.0)
            e_sq = g * scale + ex * np.sqrt(qsq[j]) + 1e-30
            d = np.sqrt(sq)
            dist[j, i] = d
            err[j, i] = min(np.sqrt(e_sq), e_sq / (np.sqrt(max(sq - e_sq, 0.0)) + d + 1e-300))


def _blocked(kernel, single, data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if len(q) > QBLOCK:
        raise ValueError(f"at most {QBLOCK} queries per pass")
    out = np.empty((QBLOCK if len(q) > 1 else 1, len(data)), dtype=np.float32)
    with _PARALLEL:
        if len(q) == 1:
            single(data, q, out)
            return out
        padded = np.zeros((QBLOCK, q.shape[1]), np.float32)
        padded[: len(q)] = q
        kernel(data, padded, out)
    return out[: len(q)]


def dot_scores(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, n) float32 inner products in one pass over ``data``.

    A numba scan rather than BLAS: as fast as a matrix-vector product (memory-bound) and,
    unlike OpenBLAS, it leaves no threads spinning that would slow the next kernel.
    Non-contiguous views (PCA prefixes) go through BLAS block by block. float16 ``data``
    is widened exactly to float32 and accumulated in float32.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if data.dtype == np.float16:
        if not data.flags.c_contiguous:
            raise ValueError("float16 rows must be C-contiguous")
        return _blocked(_dots, _dots1, data.view(np.uint16), q)
    if data.flags.c_contiguous:
        return _blocked(_dots, _dots1, data, q)
    out = np.empty((len(q), len(data)), dtype=np.float32)
    for start in range(0, len(data), CHUNK):
        block = np.asarray(data[start:start + CHUNK])
        for j in range(len(q)):
            out[j, start:start + CHUNK] = block @ q[j]
    return out


def manhattan_fast(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, n) float32 L1 distances (``data`` float32, or float16 rows widened exactly)."""
    if data.dtype == np.float16:
        return _blocked(_manhattan, _manhattan1, data.view(np.uint16), queries)
    return _blocked(_manhattan, _manhattan1, data, queries)


def chi2_fast(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, n) float32 chi-square distances 0.5 * sum((a-b)^2 / (a+b)), empty bins skipped."""
    return _blocked(_chi2, _chi2_1, data, queries)


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
