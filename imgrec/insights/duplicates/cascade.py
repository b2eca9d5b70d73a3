"""Compiled loops of the all-pairs scan: the bound cascade over one block, and the top-m lists.

:func:`cascade` walks one ``R x C`` block of first-pass bounds (a BLAS product of the
augmented rows, see :mod:`.scan`) and sends each pair through ever tighter proven upper
bounds on its cosine: the first pass (``r1`` leading rotated coordinates and the tail
norm), then the coordinates up to ``r2`` and ``r3`` with their tail norms, each read only
for the pairs still alive; the survivors of the last bound are computed exactly in float64
from the stored rows. A pair is dropped when its bound is below the threshold, or below
the m-th best exact similarity already found for *both* of its rows (then it is in
neither top-m, so the cap would drop it anyway). :func:`merge` keeps those top-m lists.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from imgrec._numba_cache import CACHE

FAST = {"reassoc", "contract", "nsz"}  # the error bounds hold for any summation order


@njit(cache=CACHE, nogil=True, fastmath=FAST)
def _dot32(a, b, lo, hi):  # pragma: no cover - compiled
    x, y = a[lo:hi], b[lo:hi]  # slices: indices provably >= 0, so the loop vectorises
    acc = np.float32(0.0)
    for k in range(x.shape[0]):
        acc += x[k] * y[k]
    return acc


@njit(cache=CACHE, nogil=True, fastmath=FAST)
def _dot64(a, b):  # pragma: no cover - compiled
    acc = 0.0
    for k in range(a.shape[0]):
        acc += np.float64(a[k]) * np.float64(b[k])
    return acc


@njit(cache=CACHE, nogil=True)
def cascade(s, rs, cs, a0, e1, ps, es, tau, t, slack, data, nrm,
            oi, oj, os_, counts):  # pragma: no cover - compiled
    """Pairs ``(rs + a, cs + b)`` of block ``s`` with ``cs + b > rs + a`` and exact cosine
    >= ``t``, from row ``a0`` on, into ``oi, oj, os_``.

    ``s[a, b]`` is the float32 first-pass bound (the leading coordinates and the tail
    norms ``e1``); ``ps[k]`` holds the next range of rotated coordinates and ``es[:, k]``
    the tail norm after it; every bound is taken less ``slack``. ``counts`` gains the
    pairs passing each stage (first pass, the top-m test, each range of ``ps``) and the
    pairs found. Stops before a row whose pairs might not fit the output; returns
    ``(next row, pairs written)``.
    """
    rr, cc = s.shape
    cap = oi.shape[0]
    lo1 = np.float32(t - slack)
    if np.float64(lo1) > t - slack:
        lo1 = np.nextafter(lo1, np.float32(-np.inf))
    idx = np.empty(cc, np.int64)
    flags = np.zeros(8 * (cc // 8 + 1), np.uint8)
    words = flags.view(np.uint64)
    row = np.empty(data.shape[1], np.float64)
    n_st = len(ps)
    n_out = 0
    a = a0
    while a < rr:
        if n_out + cc > cap:
            return a, n_out
        i = rs + a
        b0 = max(0, i + 1 - cs)
        srow, fl = s[a, b0:], flags[b0:cc]
        for b in range(srow.shape[0]):  # a vectorised compare, then the survivors' places
            fl[b] = srow[b] >= lo1
        m = 0
        for w in range(b0 // 8, (cc + 7) // 8):
            if words[w]:
                for b in range(max(8 * w, b0), min(8 * w + 8, cc)):
                    idx[m] = b
                    m += flags[b]
        counts[0] += m
        if m == 0:
            a += 1
            continue
        for k in range(data.shape[1]):
            row[k] = data[i, k]
        ti, e1i = tau[i], np.float64(e1[i])
        for q in range(m):
            b = idx[q]
            j = cs + b
            lim = max(t, min(ti, tau[j])) - slack
            u = np.float64(s[a, b])
            if u < lim:
                continue
            counts[1] += 1
            base = u - e1i * np.float64(e1[j])
            alive = True
            for k in range(n_st):
                pk = ps[k]
                base += np.float64(_dot32(pk[i], pk[j], 0, pk.shape[1]))
                if base + np.float64(es[i, k]) * np.float64(es[j, k]) < lim:
                    alive = False
                    break
                counts[2 + k] += 1
            if not alive:
                continue
            den = nrm[i] * nrm[j]  # symmetric, so copies of one row tie exactly
            sim = _dot64(row, data[j]) / den if den > 0 else 0.0
            if sim >= t:
                oi[n_out] = i
                oj[n_out] = j
                os_[n_out] = sim
                n_out += 1
        a += 1
    counts[2 + n_st] += n_out
    return a, n_out


@njit(cache=CACHE, nogil=True)
def _insert(top_s, top_j, fill, row, other, sim):  # pragma: no cover - compiled
    """Put ``(sim, other)`` into row's list (best first; ties: lower partner first)."""
    m = top_s.shape[1]
    k = fill[row]
    if k == m:
        last = top_s[row, m - 1]
        if sim < last or (sim == last and other > top_j[row, m - 1]):
            return
        k = m - 1
    else:
        fill[row] = k + 1
    while k > 0 and (top_s[row, k - 1] < sim or
                     (top_s[row, k - 1] == sim and top_j[row, k - 1] > other)):
        top_s[row, k] = top_s[row, k - 1]
        top_j[row, k] = top_j[row, k - 1]
        k -= 1
    top_s[row, k] = sim
    top_j[row, k] = other


@njit(cache=CACHE, nogil=True)
def merge(top_s, top_j, fill, tau, oi, oj, os_, n):  # pragma: no cover - compiled
    """Add ``n`` found pairs to both rows' top-m lists; ``tau`` = each full list's m-th."""
    m = top_s.shape[1]
    for q in range(n):
        i, j, sim = oi[q], oj[q], os_[q]
        _insert(top_s, top_j, fill, i, j, sim)
        _insert(top_s, top_j, fill, j, i, sim)
        if fill[i] == m:
            tau[i] = top_s[i, m - 1]
        if fill[j] == m:
            tau[j] = top_s[j, m - 1]
