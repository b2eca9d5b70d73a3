"""Exact and near-duplicate images: groups with a suggested keeper, and CSV export.

* **exact** duplicates share their content hash (SHA-256 of the file bytes, from the
  catalog);
* **near** duplicates are connected by embedding cosine similarity >= a threshold: every
  image keeps its (at most) :data:`MAX_NEIGHBOURS` most similar images above the
  threshold, found blockwise (a block of rows against a block of columns at a time, so
  memory stays bounded and no N x N matrix exists, even at 400,000 images), and groups
  are the connected components of those links (union-find), exact copies included.

Similarities from the float32 pass that lie within its proven rounding bound of the
threshold are recomputed in float64, so which pairs pass does not depend on rounding.

The suggested keeper of a group is the image with the most pixels, then the largest
file, then the first path. imgrec only reports: it never deletes or moves a file.

Default threshold, measured on the demo gallery (14 photos x 12-14 variants: crops down to
70 % of each side, rotations, flips, rescales, JPEG quality 30, blur, tone and colour
shifts) with EfficientNet-Lite0: the most similar pair of *different* photos has cosine
0.42; within each photo's variants, the lowest threshold keeping all of them connected is
0.71 (clock: JPEG-30 copy of a motion-blurred photo) to 0.96. Any threshold in
(0.42, 0.71] gives exactly the 14 photos as 14 groups; 0.65 keeps a margin on both sides
(0.06 and 0.23). At 0.75 one variant drops out, at 0.85 half the photos lose their
corner crops, at 0.9 only 3 of 14 stay whole.

Example:
    >>> rep = find_duplicates(idx)                               # doctest: +SKIP
    >>> [(g.kind, g.keeper.path, len(g.members)) for g in rep.groups][:2]  # doctest: +SKIP
    >>> write_csv(rep, "duplicates.csv")                         # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from imgrec.errors import QueryError
from imgrec.search import kernels as K

if TYPE_CHECKING:
    from imgrec.index.index import Index

DEFAULT_THRESHOLD = 0.65
MAX_NEIGHBOURS = 16
ROW_BLOCK = 2048
COL_BLOCK = 16384
CSV_COLUMNS = ("group", "kind", "action", "path", "similarity_to_keeper", "width", "height",
               "size", "sha256")


@dataclass(frozen=True)
class Member:
    """One image of a duplicate group."""

    path: str
    row: int
    width: int
    height: int
    size: int
    sha256: str
    similarity: float  # cosine similarity to the group's keeper (1.0 for the keeper)


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that duplicate each other; ``members[0]`` is the suggested keeper.

    ``kind`` is ``"exact"`` when every member has the same content hash, else ``"near"``.
    """

    id: int
    kind: str
    members: list[Member]

    @property
    def keeper(self) -> Member:
        return self.members[0]


@dataclass
class DuplicateReport:
    """Every duplicate group of an index, largest first."""

    threshold: float
    groups: list[DuplicateGroup]
    images: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.kind == "exact"]

    @property
    def near(self) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.kind == "near"]

    @property
    def redundant(self) -> int:
        """Images beyond one keeper per group."""
        return sum(len(g.members) - 1 for g in self.groups)

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per member (keeper first in each group), the columns of the CSV."""
        return [{"group": g.id, "kind": g.kind, "action": "keep" if i == 0 else "review",
                 "path": m.path, "similarity_to_keeper": round(m.similarity, 6),
                 "width": m.width, "height": m.height, "size": m.size, "sha256": m.sha256}
                for g in self.groups for i, m in enumerate(g.members)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``imgrec duplicates --json``."""
        return {"threshold": self.threshold, "images": self.images,
                "groups": [{"id": g.id, "kind": g.kind, "keeper": g.keeper.path,
                            "members": [{"path": m.path, "similarity": round(m.similarity, 6),
                                         "width": m.width, "height": m.height,
                                         "size": m.size} for m in g.members]}
                           for g in self.groups],
                "redundant": self.redundant, "seconds": round(self.seconds, 3),
                "notes": self.notes}


def near_pairs(data: np.ndarray, norms: np.ndarray | None, threshold: float,
               max_neighbours: int = MAX_NEIGHBOURS, row_block: int = ROW_BLOCK,
               col_block: int = COL_BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows with cosine similarity >= ``threshold``, blockwise.

    A pair is kept when it is among the ``max_neighbours`` most similar partners of
    either of its rows (0 keeps every pair). Only blocks on or above the diagonal are
    computed (similarity is symmetric), each ``row_block x col_block`` float32 at most,
    and the pairs found are capped as they accumulate, so memory stays bounded whatever
    the number of rows.

    Args:
        data: (n, d) float32 rows (a memory map is fine).
        norms: (n,) row norms (computed when None).
        threshold: cosine similarity a pair needs.
        max_neighbours: partners kept per row.

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
    if norms is None:
        norms = np.concatenate([np.linalg.norm(np.asarray(data[s:s + 65536], np.float64), axis=1)
                                for s in range(0, n, 65536)] or [np.zeros(0)])
    norms = np.asarray(norms, dtype=np.float64)
    inv = np.divide(1.0, norms, out=np.zeros(n), where=norms > 0).astype(np.float32)
    d = data.shape[1] if data.ndim == 2 else 0
    lo = threshold - (4 * K.gamma(d + 2) + 8 * K.EPS32)  # float32 pass: proven error bound
    acc_i: list[np.ndarray] = []
    acc_j: list[np.ndarray] = []
    acc_s: list[np.ndarray] = []
    held = 0
    for rs in range(0, n, row_block):
        a = np.asarray(data[rs:rs + row_block], dtype=np.float32) * inv[rs:rs + row_block, None]
        for cs in range(rs, n, col_block):
            b = np.asarray(data[cs:cs + col_block], dtype=np.float32) * inv[cs:cs + col_block, None]
            sims = a @ b.T
            if cs == rs:  # diagonal block: pairs j > i only
                sims[:, :len(a)][np.tril_indices(len(a))] = -np.inf
            ii, jj = _block_hits(sims, lo, m)
            if len(ii):
                ss = _exact(data, ii + rs, jj + cs)
                keep = ss >= threshold
                acc_i.append(ii[keep] + rs)
                acc_j.append(jj[keep] + cs)
                acc_s.append(ss[keep])
                held += int(keep.sum())
        if m and held > 8 * m * min(n, rs + row_block) + 1_000_000:
            ci, cj, csim = _cap(*_cat(acc_i, acc_j, acc_s), m)
            acc_i, acc_j, acc_s, held = [ci], [cj], [csim], len(ci)
    i, j, s = _cat(acc_i, acc_j, acc_s)
    if m and len(i):
        i, j, s = _cap(i, j, s, m)
    o = np.lexsort((j, i))
    return i[o], j[o], s[o]


def _cat(i: list[np.ndarray], j: list[np.ndarray], s: list[np.ndarray]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (np.concatenate(i).astype(np.int64), np.concatenate(j).astype(np.int64),
            np.concatenate(s))


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
    """float64 cosine similarity of rows ``i`` and ``j`` pairwise."""
    out = np.empty(len(i))
    for t in range(0, len(i), 32768):
        ai = np.asarray(data[i[t:t + 32768]], dtype=np.float64)
        bj = np.asarray(data[j[t:t + 32768]], dtype=np.float64)
        den = np.linalg.norm(ai, axis=1) * np.linalg.norm(bj, axis=1)
        out[t:t + 32768] = np.divide((ai * bj).sum(1), den, out=np.zeros(len(ai)), where=den > 0)
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


def find_duplicates(index: Index, threshold: float = DEFAULT_THRESHOLD, *, near: bool = True,
                    max_neighbours: int = MAX_NEIGHBOURS,
                    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                    ) -> DuplicateReport:
    """Group the exact and near-duplicate images of an index.

    Args:
        index: an opened index.
        threshold: cosine similarity (0..1] two images need to count as near-duplicates
            (default :data:`DEFAULT_THRESHOLD`, see the module docstring).
        near: also look for near-duplicates (False: exact copies only, no embedding pass).
        max_neighbours: near-duplicate partners kept per image.
        pairs: the result of ``near_pairs(index.embeddings, index.embedding_norms, t0,
            max_neighbours)`` for some ``t0 <= threshold``, to reuse (a threshold slider
            computes it once at its lowest value: the pairs at or above a higher
            threshold are then exactly those :func:`near_pairs` would find for it).

    Returns:
        A :class:`DuplicateReport`: groups of two or more images, largest first (ties: by
        keeper path), each with its suggested keeper first and the others by decreasing
        similarity to it. A group whose members all share one content hash is
        ``"exact"``; any other is ``"near"`` (it may contain exact copies too).

    Raises:
        QueryError: ``threshold`` outside (0, 1].

    Example:
        >>> rep = find_duplicates(idx, threshold=0.9)                # doctest: +SKIP
        >>> rep.groups[0].keeper.path                                # doctest: +SKIP
    """
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise QueryError(f"threshold must be a number, got {threshold!r}") from None
    if not 0 < t <= 1:
        raise QueryError(f"threshold must lie in (0, 1], got {threshold!r}")
    t0 = time.perf_counter()
    n = len(index)
    meta = index.image_meta()
    by_sha: dict[str, list[int]] = defaultdict(list)
    for row, m in enumerate(meta):
        if m[3]:
            by_sha[m[3]].append(row)
    ei, ej = [], []
    for rows in by_sha.values():
        ei += rows[:-1]
        ej += rows[1:]
    i, j = np.array(ei, np.int64), np.array(ej, np.int64)
    if near and n > 1:
        if pairs is None:
            ni, nj, _ = near_pairs(index.embeddings, index.embedding_norms, t, max_neighbours)
        else:
            keep = np.asarray(pairs[2]) >= t
            ni, nj = np.asarray(pairs[0])[keep], np.asarray(pairs[1])[keep]
        i, j = np.concatenate([i, ni]), np.concatenate([j, nj])
    comp = components(n, i, j)
    groups_rows: dict[int, list[int]] = defaultdict(list)
    for row, c in enumerate(comp.tolist()):
        groups_rows[c].append(row)
    paths = index.all_paths()
    groups = [_group(index, rows, meta, paths) for rows in groups_rows.values() if len(rows) > 1]
    groups.sort(key=lambda g: (-len(g.members), g.keeper.path))
    groups = [DuplicateGroup(gid + 1, g.kind, g.members) for gid, g in enumerate(groups)]
    notes = [] if near else ["exact copies only (near-duplicates not searched)"]
    return DuplicateReport(t if near else 1.0, groups, n, time.perf_counter() - t0, notes)


def _group(index: Index, rows: list[int], meta: list[tuple[int, int, int, str]],
           paths: list[str]) -> DuplicateGroup:
    def key(r: int) -> tuple[int, int, str]:
        w, h, size, _ = meta[r]
        return (-(w * h), -size, paths[r])

    keeper = min(rows, key=key)
    ordered_rows = sorted(rows)
    sims: dict[int, float] = {}
    for s in range(0, len(ordered_rows), 8192):  # bounded memory for a huge group
        part = ordered_rows[s:s + 8192]
        got = K.cosine_exact(index.embeddings[part], index.embeddings[keeper])[0]
        sims.update(zip(part, got.tolist(), strict=True))
    others = sorted((r for r in rows if r != keeper), key=lambda r: (-sims[r], paths[r]))
    ordered = [keeper, *others]
    members = [Member(paths[r], r, meta[r][0], meta[r][1], meta[r][2], meta[r][3],
                      1.0 if r == keeper else float(sims[r])) for r in ordered]
    kind = "exact" if len({m.sha256 for m in members}) == 1 and members[0].sha256 else "near"
    return DuplicateGroup(0, kind, members)


def write_csv(report: DuplicateReport, path: str | os.PathLike | TextIO) -> Path | TextIO:
    """Write one CSV row per group member (columns :data:`CSV_COLUMNS`); returns the path.

    ``action`` is ``keep`` for the suggested keeper and ``review`` for the others:
    imgrec deletes nothing, the file is a list to act on. ``path`` may also be an open text
    stream (e.g. ``io.StringIO``), which is written to and returned.
    """
    if hasattr(path, "write"):
        _write_rows(report, path)  # type: ignore[arg-type]
        return path  # type: ignore[return-value]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        _write_rows(report, fh)
    return path


def _write_rows(report: DuplicateReport, fh: TextIO) -> None:
    w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
    w.writeheader()
    w.writerows(report.to_rows())
