"""A rotation-invariant candidate source: DCT hash pairs within a radius under any rotation or mirroring.

Every pair of images whose DCT hashes lie within a hamming radius under one of the eight
rotations/mirrorings is found without comparing all pairs.

The hashes of the eight variants of every image (:func:`signals.variants`, each
thresholded at its own median exactly as :func:`signals.hash_distance` does) go into a
table; every image then asks it with its own hash, so a pair is found when either image's
hash lies within ``radius`` of one of the other's variants.

Exactness (multi-index hashing, the general pigeonhole principle): the 64 bits split into
``m`` disjoint bands and band ``k`` is searched within a radius ``r_k``. Two hashes more
than ``r_k`` apart in every band differ in at least ``sum(r_k + 1)`` bits, so with
``sum(r_k + 1) > radius`` every pair within ``radius`` agrees within ``r_k`` in some band
and is looked up there; each looked-up pair is then checked on all 64 bits. Three bands of
22, 21 and 21 bits are searched by flipping up to ``r_k`` bits of the query's band and
reading a direct-address table of the band's values (one offset per value): memory is
linear in the images (plus 2^22 offsets per band), and the work is the probes plus the
pairs that share a band value.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from imgrec.insights.duplicates import dihedral as D

#: hamming radius (of 64 bits) within which every dihedral pair is found
RADIUS = 8
BANDS = ((0, 22), (22, 43), (43, 64))  # [start, stop) bit positions
CHUNK = 2048  # querying rows per step (bounds the probe arrays)
PAIRS_STEP = 1 << 21  # looked-up pairs checked at once (bounds the candidate arrays)


def packed(dcts: np.ndarray) -> np.ndarray:
    """(n, 8) uint64 hashes of the eight variants of each (8, 8) DCT (identity first)."""
    dcts = np.asarray(dcts, np.float32)
    out = np.zeros((len(dcts), 8), np.uint64)
    for s in range(0, len(dcts), 16384):
        b = D.bits(D.variants(dcts[s:s + 16384]))  # (m, 8, 64): bit k of the hash
        out[s:s + len(b)] = np.packbits(b, axis=-1, bitorder="little").view("<u8")[..., 0]
    return out


def band_radii(radius: int, bands: int = len(BANDS)) -> list[int]:
    """The smallest per-band radii with ``sum(r + 1) > radius`` (as equal as possible)."""
    need = radius + 1  # sum of (r_k + 1)
    base, extra = divmod(need, bands)
    return [max(0, base + (k < extra) - 1) for k in range(bands)]


def _masks(width: int, r: int) -> np.ndarray:
    """Every ``width``-bit value with at most ``r`` bits set."""
    out = [0]
    for k in range(1, r + 1):
        out += [sum(1 << b for b in c) for c in combinations(range(width), k)]
    return np.array(out, np.int64)


def dihedral_pairs(hashes: np.ndarray, radius: int = RADIUS, max_per_row: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` whose hashes lie within ``radius`` under some variant.

    Args:
        hashes: (n, 8) uint64 from :func:`packed` (column 0: the image as is).
        radius: hamming radius, 0..63.
        max_per_row: keep only this many nearest partners per row (None: all).

    Returns:
        ``(i, j, distance)`` int64 arrays, ``distance`` the smallest over the variants
        of either image.

    Example:
        >>> h = packed(np.random.default_rng(0).standard_normal((3, 8, 8)))
        >>> h[2] = h[0] ^ np.uint64(0b111)  # three bits apart from row 0
        >>> [a.tolist() for a in dihedral_pairs(h, 4)]
        [[0], [2], [3]]
    """
    hashes = np.asarray(hashes, np.uint64)
    n = len(hashes)
    flat = hashes.reshape(-1)  # entry e: row e // 8 under variant e % 8
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for (lo, hi), r in zip(BANDS, band_radii(radius), strict=True):
        width = hi - lo
        mask = np.uint64((1 << width) - 1)
        key = ((flat >> np.uint64(lo)) & mask).astype(np.int64)
        order = np.argsort(key, kind="stable")
        start = np.zeros((1 << width) + 1, np.int32 if len(flat) < 2**31 else np.int64)
        np.cumsum(np.bincount(key, minlength=1 << width), out=start[1:])
        del key
        masks = _masks(width, r)
        q = ((hashes[:, 0] >> np.uint64(lo)) & mask).astype(np.int64)
        for s in range(0, n, CHUNK):
            rows = np.arange(s, min(s + CHUNK, n))
            probe = (q[rows, None] ^ masks[None, :]).reshape(-1)
            a = start[probe].astype(np.int64)
            cnt = start[probe + 1] - a
            src = np.repeat(rows, len(masks))
            ends = np.cumsum(cnt)
            cut = np.searchsorted(ends, np.arange(PAIRS_STEP, int(ends[-1]), PAIRS_STEP))
            for lo_p, hi_p in zip(np.r_[0, cut], np.r_[cut, len(cnt)], strict=True):
                parts.append(_check(hashes, radius, src[lo_p:hi_p], a[lo_p:hi_p],
                                    cnt[lo_p:hi_p], order))
    return _unique(parts, n, max_per_row)


def _check(hashes: np.ndarray, radius: int, src: np.ndarray, a: np.ndarray, cnt: np.ndarray,
           order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs within ``radius`` among the table entries ``order[a : a + cnt]`` of
    every probe, ``src`` the querying row of each probe."""
    total = int(cnt.sum())
    i = np.repeat(src, cnt)
    e = order[np.repeat(a - np.cumsum(cnt) + cnt, cnt) + np.arange(total)]
    j = e // 8
    d = np.bitwise_count(hashes.reshape(-1)[e] ^ hashes[i, 0]).astype(np.int64)
    ok = (d <= radius) & (i != j)
    return np.minimum(i, j)[ok], np.maximum(i, j)[ok], d[ok]


def _unique(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int,
            cap: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pair once with its smallest distance, optionally the ``cap`` nearest per row."""
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    i, j, d = (np.concatenate(x) for x in zip(*parts, strict=True))
    o = np.lexsort((d, j, i))
    i, j, d = i[o], j[o], d[o]
    first = np.ones(len(i), bool)
    first[1:] = (i[1:] != i[:-1]) | (j[1:] != j[:-1])
    i, j, d = i[first], j[first], d[first]
    if cap is not None and len(i):
        keep = np.zeros(len(i), bool)
        for rows in (i, j):  # the cap nearest of every row, as either end
            o = np.lexsort((d, rows))
            rank = np.arange(len(o)) - np.searchsorted(rows[o], rows[o])
            keep[o[rank < cap]] = True
        i, j, d = i[keep], j[keep], d[keep]
    return i, j, d


def cosines(data: np.ndarray, norms: np.ndarray | None, i: np.ndarray, j: np.ndarray
            ) -> np.ndarray:
    """float64 cosine similarity of the embedding rows ``i[k]`` and ``j[k]`` (in chunks,
    so a memory-mapped matrix is read only where needed)."""
    out = np.zeros(len(i))
    for s in range(0, len(i), 8192):
        a = np.asarray(data[i[s:s + 8192]], np.float64)
        b = np.asarray(data[j[s:s + 8192]], np.float64)
        na = np.linalg.norm(a, axis=1) if norms is None else np.asarray(norms)[i[s:s + 8192]]
        nb = np.linalg.norm(b, axis=1) if norms is None else np.asarray(norms)[j[s:s + 8192]]
        out[s:s + 8192] = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return out


def unit_pairs(keys: list[str], dcts: np.ndarray, radius: int = RADIUS,
               max_per_row: int | None = None) -> list[tuple[str, str, int]]:
    """(key, key, hamming distance) of every pair of ``keys`` (one per image, each with its
    (8, 8) DCT in ``dcts``) within ``radius`` under some variant, smaller key first."""
    if len(keys) < 2:
        return []
    i, j, d = dihedral_pairs(packed(dcts), radius, max_per_row)
    return [(min(keys[a], keys[b]), max(keys[a], keys[b]), dist)
            for a, b, dist in zip(i.tolist(), j.tolist(), d.tolist(), strict=True)]
