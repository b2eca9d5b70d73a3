"""Exact all-pairs cosine scan: a cascade of proven bounds on rotated rows, then exact checks.

Every row ``x`` (unit-normalised in float64) is rotated onto the top ``R`` eigenvectors
``V`` of the rows' second moment (fitted on a sample): ``p = V^T x``. For any prefix of
``r`` coordinates with tail norm ``e_r = |x - V_r p_r|``, Cauchy-Schwarz on the tails gives
``x.y <= p_r(x).p_r(y) + e_r(x) e_r(y)``. The first pass multiplies the augmented rows
``[p_r1, e_r1]`` of a block of rows by those of a block of columns (one float32 BLAS
product, ``r1 + 1`` columns instead of ``d``); each pair whose bound can reach the
threshold then gains the next ranges of coordinates (``STAGES``: up to 128, 256, 512;
tighter bounds as the energy of the tail shrinks), and the survivors of all of them are
computed exactly in float64 from the stored rows (:mod:`.cascade`). Every bound is taken
less its proven float32 rounding error (:func:`slack`), so no pair at or above the
threshold is ever dropped.

With a cap of ``m`` partners per row, a pair is also dropped when its bound is below the
m-th best exact similarity already found for both of its rows: it is then in neither
row's top m, which the cap would drop anyway, so the result equals the capped brute force.

Memory: the rotated rows (``n x (R + 4)`` float32: 2.1 GB at 1,000,000 rows, ``R = 512``),
one ``row_block x col_block`` float32 block per thread, and the top-m lists (``n x m``);
no N x N anything. Time: the first pass grows as ``n^2 (r1 + 1)`` (BLAS), the later
stages with their survivors (measured in bench/duplicates.py).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from imgrec.insights.duplicates import cascade as C
from imgrec.search import kernels as K

#: default dimension of the first pass; the later stages use STAGES' other two dimensions
RANK = 64
STAGES = (128, 256, 512)
ROW_BLOCK = 256
COL_BLOCK = 2048
SAMPLE = 20000  # rows the basis is fitted on
CHUNK = 16384  # rows rotated at a time
Progress = Callable[[int, int], None]


def basis(data: np.ndarray, rank: int) -> np.ndarray:
    """(d, r) orthonormal float64 basis: top eigenvectors of the second moment of evenly
    spaced unit rows (the top right singular vectors, without an SVD of the sample)."""
    n, d = data.shape
    r = max(0, min(rank, d, n))
    if r == 0:
        return np.zeros((d, 0))
    take = np.unique(np.linspace(0, n - 1, min(n, SAMPLE)).astype(np.int64))
    gram = np.zeros((d, d))
    for s in range(0, len(take), 4096):
        x = np.asarray(data[take[s:s + 4096]], np.float64)
        nx = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, nx, out=np.zeros_like(x), where=nx > 0)
        gram += x.T @ x
    from scipy.linalg import eigh

    _, vecs = eigh(gram, subset_by_index=[d - r, d - 1])  # only the top r
    return np.ascontiguousarray(vecs[:, ::-1])


def stages(rank: int, d: int, n: int | None = None) -> tuple[int, ...]:
    """The cascade's dimensions for ``n`` rows of ``d`` dimensions: the first pass's, then
    each later stage's (``STAGES`` clipped to ``d`` and to ``n``, the most directions a
    basis of the rows has); ``(d, d, ...)`` (no rotation, the exact first pass on the full
    rows) where a first pass would not pay."""
    if not 0 < rank < d // 2:
        return (d,) * (len(STAGES) + 1)
    top = min(d, n) if n else d
    out = [min(rank, top)]
    for r in STAGES:
        out.append(max(out[-1], min(r, top)))
    return tuple(out)


def rotated(data: np.ndarray, v: np.ndarray | None, dims: tuple[int, ...]
            ) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """``(aug, ps, es, nrm)`` of the unit rows, rotated: ``aug`` the float32 first-pass
    rows ``[p[:r1], e1]``; ``ps`` the float32 coordinate ranges of the later stages;
    ``es`` the float32 tail norms after each later stage; every tail norm rounded up;
    ``nrm`` the float64 row norms.

    ``v`` None: the unit rows themselves (no rotation, tails 0 but for a margin).
    """
    n = len(data)
    cuts = list(dims)
    aug = np.empty((n, cuts[0] + 1), np.float32)
    ps = tuple(np.empty((n, hi - lo), np.float32) for lo, hi in itertools.pairwise(cuts))
    es = np.empty((n, len(ps)), np.float32)
    nrms = np.empty(n)
    for s in range(0, n, CHUNK):
        x = np.asarray(data[s:s + CHUNK], np.float64)
        nrm = np.linalg.norm(x, axis=1)
        iv = np.divide(1.0, nrm, out=np.zeros(len(x)), where=nrm > 0)
        x = x * iv[:, None]
        q = x if v is None else x @ v
        sq = q * q
        # |tail|^2 = |x|^2 - |p|^2, up to float64 rounding (< 1e-12 for d < 10^3 u^-1)
        tail = [np.maximum((x * x).sum(1) - sq[:, :cuts[-1]].sum(1), 0.0) + 1e-12]
        for lo, hi in zip(cuts[-2::-1], cuts[:0:-1], strict=True):
            tail.append(tail[-1] + sq[:, lo:hi].sum(1))
        tails = np.sqrt(np.stack(tail[::-1], 1)) * (1 + 1e-9)
        t32 = tails.astype(np.float32)
        t32 = np.where(t32 < tails, np.nextafter(t32, np.float32(np.inf)), t32)
        aug[s:s + CHUNK, :-1] = q[:, :cuts[0]]
        aug[s:s + CHUNK, -1] = t32[:, 0]
        es[s:s + CHUNK] = t32[:, 1:]
        for k, (lo, hi) in enumerate(itertools.pairwise(cuts)):
            ps[k][s:s + CHUNK] = q[:, lo:hi]
        nrms[s:s + CHUNK] = nrm
    return aug, ps, es, nrms


def slack(dims: tuple[int, ...]) -> float:
    """Proven bound on (true bound) - (computed bound) at every stage of the cascade.

    Rounding ``p`` to float32 moves a dot product of rows of norm <= 1 by <= 2.0001u; the
    float32 first pass over ``r1 + 1`` terms (|terms| summing to <= 1 + 1e-5) errs by <=
    ``gamma_{r1+1}`` (Higham; any summation order, FMA or not), each later range of
    ``k`` coordinates by ``gamma_k``; the tail norms are rounded up, and 1e-9 covers the
    float64 work (rotation, tails, the sums of the stages; ~1e-13).
    """
    g = K.gamma(dims[0] + 1) + sum(K.gamma(max(hi - lo, 1))
                                   for lo, hi in itertools.pairwise(dims))
    return 1.01 * g + 4 * K.EPS32 + 1e-9


def near_pairs(data: np.ndarray, norms: np.ndarray | None, threshold: float,
               max_neighbours: int = 16, row_block: int = ROW_BLOCK,
               col_block: int = COL_BLOCK, *, rank: int = RANK,
               progress: Progress | None = None, stats: dict | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows with cosine similarity >= ``threshold``, exactly, in bounded memory.

    A pair is kept when it is among the ``max_neighbours`` most similar partners of
    either of its rows (ties: the lower partner row; 0 keeps every pair). Only blocks on
    or above the diagonal are computed, on every core; no N x N matrix exists.

    Args:
        data: (n, d) float32 rows (a memory map is fine).
        norms: (n,) row norms; accepted for the callers' convenience, the scan recomputes
            them in float64 while it rotates the rows.
        threshold: cosine similarity a pair needs.
        max_neighbours: partners kept per row.
        row_block: rows per block; col_block: columns per block.
        rank: dimension of the first pass (0: no first pass, full rows only).
        progress: called as ``progress(rows_done, n)`` after each row block (from the
            calling thread).
        stats: filled with ``pairs``, ``survivors`` (first pass), ``stages`` (pairs past
            each stage: first pass, top-m test, each later range), ``found``, ``dims`` and
            ``cpu_seconds`` (the process's CPU time: rotation, then the scan).

    Returns:
        ``(i, j, similarity)`` with ``i < j``, sorted by ``(i, j)``; similarities are
        float64, computed exactly.

    Example:
        >>> x = np.array([[1, 0], [1, 0.01], [0, 1]], np.float32)
        >>> near_pairs(x, None, 0.9)[:2]
        (array([0]), array([1]))
    """
    n = len(data)
    m = max(0, int(max_neighbours))
    d = data.shape[1] if data.ndim == 2 else 0
    t = float(threshold)
    dims = stages(rank, d, n)
    if n < 2 or d == 0:
        if stats is not None:
            stats.update(pairs=n * (n - 1) // 2, survivors=0, stages=[0] * (len(dims) + 1),
                         found=0, rank=d, dims=dims)
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    clock = time.process_time()
    v = None
    if dims[0] < d:
        v = basis(data, dims[-1])
    aug, ps, es, nrm = rotated(data, v, dims)
    run = _Run(aug, ps, es, np.asarray(data), nrm, t, slack(dims), m, int(row_block),
               max(int(col_block), int(row_block)))
    prepared = time.process_time()
    i, j, s = run.scan(progress)
    if stats is not None:
        c = run.counts.sum(0)
        stats.update(pairs=n * (n - 1) // 2, survivors=int(c[0]), stages=c[:-1].tolist(),
                     found=len(i), rank=dims[0], dims=dims,
                     cpu_seconds={"rotate": round(prepared - clock, 2),
                                  "scan": round(time.process_time() - prepared, 2)})
    return i, j, s


class _Run:
    """One scan: the shared arrays, the top-m lists and the per-thread work."""

    def __init__(self, aug, ps, es, data, nrm, t, sl, m, row_block, col_block):
        self.aug, self.ps, self.es, self.data, self.nrm = aug, ps, es, data, nrm
        self.e1 = np.ascontiguousarray(aug[:, -1])
        self.t, self.slack, self.m = t, sl, m
        self.rb, self.cb = row_block, col_block
        n = len(aug)
        self.tau = np.full(n, -np.inf)
        self.top_s = np.full((n, max(m, 1)), -np.inf)
        self.top_j = np.full((n, max(m, 1)), -1, np.int64)
        self.fill = np.zeros(n, np.int64)
        self.lock = threading.Lock()
        self.found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.local = threading.local()
        self.counts = np.zeros((0, len(ps) + 3), np.int64)
        self.all_counts: list[np.ndarray] = []

    def scan(self, progress: Progress | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row block on the pool's threads (BLAS single-threaded meanwhile)."""
        from threadpoolctl import threadpool_limits

        n = len(self.aug)
        starts = list(range(0, n, self.rb))
        order = [starts[k // 2] if k % 2 == 0 else starts[-1 - k // 2]
                 for k in range(len(starts))]  # big and small blocks alternate
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
        workers = max(1, min(cores, 8))
        done = 0
        with threadpool_limits(1, "blas"), ThreadPoolExecutor(workers) as pool:
            for fut in [pool.submit(self.block, rs) for rs in order]:
                done += fut.result()
                if progress is not None:
                    progress(done, n)
        self.counts = np.array(self.all_counts or np.zeros((1, len(self.ps) + 3), np.int64))
        return self.result()

    def _buffers(self):
        loc = self.local
        if not hasattr(loc, "s"):
            loc.s = np.empty((self.rb, self.cb), np.float32)
            cap = 4 * self.cb + 65536
            loc.out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap))
            loc.counts = np.zeros(len(self.ps) + 3, np.int64)
            with self.lock:
                self.all_counts.append(loc.counts)
        return loc

    def block(self, rs: int) -> int:
        """All pairs of rows ``rs:rs + row_block`` with columns from ``rs`` on."""
        loc = self._buffers()
        n = len(self.aug)
        re = min(n, rs + self.rb)
        a = self.aug[rs:re]
        for cs in range(rs, n, self.cb):
            ce = min(n, cs + self.cb)
            s = loc.s[:re - rs, :ce - cs]
            np.matmul(a, self.aug[cs:ce].T, out=s)
            row = 0
            while row < re - rs:
                row, k = C.cascade(s, rs, cs, row, self.e1, self.ps, self.es, self.tau,
                                   self.t, self.slack, self.data, self.nrm, *loc.out,
                                   loc.counts)
                if k:
                    self._keep(loc.out, k)
        return re - rs

    def _keep(self, out, k: int) -> None:
        oi, oj, os_ = out
        with self.lock:
            if self.m:
                C.merge(self.top_s, self.top_j, self.fill, self.tau, oi, oj, os_, k)
            else:
                self.found.append((oi[:k].copy(), oj[:k].copy(), os_[:k].copy()))

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kept pairs, ``i < j``, sorted by ``(i, j)``."""
        if self.m:
            held = np.arange(self.top_s.shape[1])[None, :] < self.fill[:, None]
            rows = np.nonzero(held)[0]
            cols, sims = self.top_j[held], self.top_s[held]
            i, j = np.minimum(rows, cols), np.maximum(rows, cols)
            _key, first = np.unique(i * len(self.fill) + j, return_index=True)
            return i[first], j[first], sims[first]
        i, j, s = _cat(self.found)
        o = np.lexsort((j, i))
        return i[o], j[o], s[o]


def _cat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (np.concatenate([p[0] for p in parts]).astype(np.int64),
            np.concatenate([p[1] for p in parts]).astype(np.int64),
            np.concatenate([p[2] for p in parts]))


def _cap(i: np.ndarray, j: np.ndarray, s: np.ndarray, m: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep a pair when it is among the ``m`` most similar of either of its rows (ties:
    lower partner row). Capping a subset first never drops a pair the full cap keeps."""
    ends = np.concatenate([i, j])
    other = np.concatenate([j, i])
    sim = np.concatenate([s, s])
    pair = np.concatenate([np.arange(len(i))] * 2)
    o = np.lexsort((other, -sim, ends))
    ends_sorted = ends[o]
    start = np.searchsorted(ends_sorted, ends_sorted, side="left")
    rank = np.arange(len(o)) - start
    keep = np.zeros(len(i), bool)
    keep[pair[o[rank < m]]] = True
    return i[keep], j[keep], s[keep]


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected component label of each of ``n`` nodes, given undirected edges ``(i, j)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n)).tocsr()
    return connected_components(g, directed=False)[1].astype(np.int64)
