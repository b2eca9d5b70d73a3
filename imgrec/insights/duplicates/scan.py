"""Exact all-pairs cosine scan: a low-dimensional first pass with a proven bound, then exact checks.

Every row ``x`` (unit-normalised in float64) splits into its projection ``p = V^T x`` on an
orthonormal basis ``V`` of ``r`` directions (the top singular vectors of a sample of rows)
and a residual of norm ``e = |x - V p|``. For two rows, Cauchy-Schwarz on the residuals
gives ``x.y = p_x.p_y + res_x.res_y <= p_x.p_y + e_x e_y``: the dot product of the
*augmented* ``(r + 1)``-vectors ``[p, e]``. The first pass multiplies those (one float32
BLAS product per block, ``r + 1`` columns instead of ``d``); a pair whose bound, less the
proven float32 rounding error, stays below the threshold cannot pass and is dropped. The
survivors of a block are checked on the full float32 rows (a BLAS product of the
surviving rows by the surviving columns) and every pair within that pass's rounding bound
of the threshold is recomputed in float64, so the result equals a float64 brute force.

Memory: the augmented rows (``n x (r + 1)`` float32: 170 MB at 1,000,000 rows and
``r = 43``), one ``row_block x col_block`` float32 block, and the pairs found (capped at
``max_neighbours`` per row); time grows as ``n^2 (r + 1)`` plus the survivors' checks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imgrec.search import kernels as K

#: default dimension of the first pass (measured in bench/duplicates.py: at 400,000 rows
#: drawn from real embedding statistics it prunes all but ~1e-5 of the pairs)
RANK = 48
ROW_BLOCK = 4096
COL_BLOCK = 8192
SAMPLE = 20000  # rows the basis is fitted on
Progress = Callable[[int, int], None]


def unit_norms(data: np.ndarray) -> np.ndarray:
    """float64 L2 norm of every row, read in chunks (a memory map is fine)."""
    n = len(data)
    return np.concatenate([np.linalg.norm(np.asarray(data[s:s + 65536], np.float64), axis=1)
                           for s in range(0, n, 65536)] or [np.zeros(0)])


def basis(data: np.ndarray, inv: np.ndarray, rank: int) -> np.ndarray:
    """(d, r) orthonormal float64 basis: top eigenvectors of the second moment of evenly
    spaced unit rows (the top right singular vectors, without an SVD of the sample)."""
    n, d = data.shape
    r = max(0, min(rank, d, n))
    if r == 0:
        return np.zeros((d, 0))
    take = np.unique(np.linspace(0, n - 1, min(n, SAMPLE)).astype(np.int64))
    gram = np.zeros((d, d))
    for s in range(0, len(take), 4096):
        x = np.asarray(data[take[s:s + 4096]], np.float64) * inv[take[s:s + 4096], None]
        gram += x.T @ x
    _, vecs = np.linalg.eigh(gram)
    return np.ascontiguousarray(vecs[:, ::-1][:, :r])


def augmented(data: np.ndarray, inv: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(n, r + 1) float32 ``[p, e]`` rows, ``e`` rounded up (see the module docstring)."""
    n = len(data)
    out = np.empty((n, v.shape[1] + 1), np.float32)
    for s in range(0, n, 32768):
        x = np.asarray(data[s:s + 32768], np.float64) * inv[s:s + 32768, None]
        p = x @ v
        e = np.linalg.norm(x - p @ v.T, axis=1) * (1 + 1e-9) + 1e-12
        e32 = e.astype(np.float32)
        e32 = np.where(e32 < e, np.nextafter(e32, np.float32(np.inf)), e32)
        out[s:s + 32768, :-1] = p
        out[s:s + 32768, -1] = e32
    return out


def first_pass_slack(r: int) -> float:
    """Proven bound on (computed augmented dot) - (true bound ``p_x.p_y + e_x e_y``) below.

    The float32 product of two augmented rows of norm <= 1 + 1e-6 errs by at most
    ``gamma_{r+1}`` (Higham); rounding ``p`` to float32 moves each dot by <= 2u; the float64
    computation of ``p`` and ``e`` is covered by 1e-9 (its errors are ~1e-15).
    """
    return 1.01 * K.gamma(r + 2) + 4 * K.EPS32 + 1e-9


def near_pairs(data: np.ndarray, norms: np.ndarray | None, threshold: float,
               max_neighbours: int = 16, row_block: int = ROW_BLOCK,
               col_block: int = COL_BLOCK, *, rank: int = RANK,
               progress: Progress | None = None, stats: dict | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows with cosine similarity >= ``threshold``, exactly, in bounded memory.

    A pair is kept when it is among the ``max_neighbours`` most similar partners of
    either of its rows (0 keeps every pair). Only blocks on or above the diagonal are
    computed; no N x N matrix exists.

    Args:
        data: (n, d) float32 rows (a memory map is fine).
        norms: (n,) row norms (computed when None).
        threshold: cosine similarity a pair needs.
        max_neighbours: partners kept per row.
        row_block: rows per block; col_block: columns per block.
        rank: dimension of the first pass (0: no first pass, full rows only).
        progress: called as ``progress(rows_done, n)`` after each row block.
        stats: filled with ``pairs``, ``survivors`` (first pass) and ``found`` counts.

    Returns:
        ``(i, j, similarity)`` with ``i < j``, sorted by ``(i, j)``; similarities are
        float64, recomputed exactly.

    Example:
        >>> x = np.array([[1, 0], [1, 0.01], [0, 1]], np.float32)
        >>> near_pairs(x, None, 0.9)[:2]
        (array([0]), array([1]))
    """
    n = len(data)
    m = int(max_neighbours)
    d = data.shape[1] if data.ndim == 2 else 0
    norms = unit_norms(data) if norms is None else np.asarray(norms, np.float64)
    inv = np.divide(1.0, norms, out=np.zeros(n), where=norms > 0)
    use_first = 0 < rank < d // 2 and n > 2
    if use_first:
        aug = augmented(data, inv, basis(data, inv, rank))
        lo1 = threshold - first_pass_slack(aug.shape[1])
    lo = threshold - (4 * K.gamma(d + 2) + 8 * K.EPS32)  # full float32 pass: proven bound
    inv32 = inv.astype(np.float32)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    held, survivors = 0, 0
    for rs in range(0, n, row_block):
        re = min(n, rs + row_block)
        a = aug[rs:re] if use_first else None
        for cs in range(rs, n, col_block):
            ce = min(n, cs + col_block)
            if use_first:
                mask = (a @ aug[cs:ce].T) >= lo1
                if cs == rs:
                    mask[np.tril_indices(re - rs, 0, ce - cs)] = False
                ri = np.flatnonzero(mask.any(1))
                if len(ri) == 0:
                    continue
                ci = np.flatnonzero(mask[ri].any(0))
                survivors += int(np.count_nonzero(mask))
            else:
                ri, ci = np.arange(re - rs), np.arange(ce - cs)
            got = _verify(data, inv32, rs + ri, cs + ci, lo, threshold, m)
            if len(got[0]):
                found.append(got)
                held += len(got[0])
        if progress is not None:
            progress(re, n)
        if m and held > 8 * m * re + 1_000_000:
            found, held = [_cap(*_cat(found), m)], 0
            held = len(found[0][0])
    i, j, s = _cat(found)
    if m and len(i):
        i, j, s = _cap(i, j, s, m)
    if stats is not None:
        stats.update(pairs=n * (n - 1) // 2, survivors=survivors if use_first else None,
                     found=len(i), rank=aug.shape[1] - 1 if use_first else d)
    o = np.lexsort((j, i))
    return i[o], j[o], s[o]


def _verify(data: np.ndarray, inv32: np.ndarray, rows: np.ndarray, cols: np.ndarray,
            lo: float, threshold: float, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(rows[a], cols[b])`` with ``rows[a] < cols[b]`` and exact cosine >= threshold."""
    a = np.asarray(data[rows], np.float32) * inv32[rows, None]
    b = np.asarray(data[cols], np.float32) * inv32[cols, None]
    sims = a @ b.T
    sims[rows[:, None] >= cols[None, :]] = -np.inf
    ii, jj = _block_hits(sims, lo, m)
    if len(ii) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    ii, jj = rows[ii], cols[jj]
    ss = _exact(data, ii, jj)
    keep = ss >= threshold
    return ii[keep], jj[keep], ss[keep]


def _cat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (np.concatenate([p[0] for p in parts]).astype(np.int64),
            np.concatenate([p[1] for p in parts]).astype(np.int64),
            np.concatenate([p[2] for p in parts]))


def _block_hits(sims: np.ndarray, lo: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the entries >= ``lo``; where there are very many, only those among
    the ``m`` largest of their row or of their column (so a block of near-identical images
    cannot flood memory)."""
    mask = sims >= lo
    count = int(np.count_nonzero(mask))
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r, c = sims.shape
    if not m or count <= 4 * m * (r + c):
        return np.nonzero(mask)
    keep = np.zeros_like(mask)
    if c > m:
        top = np.argpartition(-sims, m - 1, axis=1)[:, :m]
        keep[np.arange(r)[:, None], top] = True
    else:
        keep[:] = True
    if r > m:
        top = np.argpartition(-sims, m - 1, axis=0)[:m, :]
        keep[top, np.arange(c)[None, :]] = True
    else:
        keep[:] = True
    return np.nonzero(mask & keep)


def _exact(data: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """float64 cosine similarity of rows ``i`` and ``j`` pairwise (rows read once each)."""
    if len(i) == 0:
        return np.zeros(0)
    rows, inv_idx = np.unique(np.concatenate([i, j]), return_inverse=True)
    if len(rows) < 2 * len(i):  # many pairs share rows: gather each row once
        x = np.asarray(data[rows], np.float64)
        nrm = np.linalg.norm(x, axis=1)
        a, b = inv_idx[:len(i)], inv_idx[len(i):]
        out = np.empty(len(i))
        for t in range(0, len(i), 8192):
            aa, bb = a[t:t + 8192], b[t:t + 8192]
            den = nrm[aa] * nrm[bb]
            out[t:t + 8192] = np.divide((x[aa] * x[bb]).sum(1), den, out=np.zeros(len(aa)),
                                        where=den > 0)
        return out
    out = np.empty(len(i))
    for t in range(0, len(i), 8192):
        ai = np.asarray(data[i[t:t + 8192]], dtype=np.float64)
        bj = np.asarray(data[j[t:t + 8192]], dtype=np.float64)
        den = np.linalg.norm(ai, axis=1) * np.linalg.norm(bj, axis=1)
        out[t:t + 8192] = np.divide((ai * bj).sum(1), den, out=np.zeros(len(ai)), where=den > 0)
    return out


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
