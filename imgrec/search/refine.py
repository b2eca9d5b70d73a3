"""Relevance feedback ("more like these, less like those"): an exact refined ranking.

The refined score of a gallery row x is

    mean cosine(x, positives) - w * mean cosine(x, negatives),

computed in float64 and returned as it is (not clamped), so it lies in [-1 - w, 1 + w].
The weight w is a finite number in [0, :data:`MAX_NEGATIVE_WEIGHT`].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from imgrec import images
from imgrec.errors import QueryError
from imgrec.index.half import HalfCopy
from imgrec.search import kernels as K
from imgrec.search import topk
from imgrec.search.filters import ranked, restrict
from imgrec.search.methods import MAX_QUERIES, TABLE, is_whole, shown
from imgrec.search.query import query_features
from imgrec.search.rank import _bounds, require_finite
from imgrec.search.results import REFINED, SearchResult, make_hits

if TYPE_CHECKING:
    from imgrec.index.index import Index

#: Largest accepted negative weight. Beyond it the negatives decide the ranking alone
#: (the positives' share of a score is below 1 %), which a weight of 100 already does.
MAX_NEGATIVE_WEIGHT = 100.0


def check_weight(weight: Any) -> float:
    """The negative weight as a float, or a QueryError (nothing is coerced).

    Example:
        >>> check_weight(2)
        2.0
        >>> check_weight(1e308)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        imgrec.errors.QueryError: negative_weight must be a finite number in [0, 100], ...
    """
    number = is_whole(weight) or (isinstance(weight, float | np.floating))
    w = float(weight) if number else float("nan")
    if not number or not np.isfinite(w) or not 0 <= w <= MAX_NEGATIVE_WEIGHT:
        raise QueryError(f"negative_weight must be a finite number in "
                         f"[0, {MAX_NEGATIVE_WEIGHT:g}], got {shown(weight)}")
    return w


def rank_refined(data: np.ndarray, norms: np.ndarray, positives: np.ndarray,
                 negatives: np.ndarray, weight: float, k: int,
                 half: HalfCopy | None = None, mask: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows for relevance feedback ("more like these, less like those").

    score(x) = mean cosine(x, positives) - weight * mean cosine(x, negatives). This is
    ``|v| * cosine(x, v)`` for the single float64 vector
    ``v = mean(p/|p|) - weight * mean(n/|n|)``, so one pass of the cosine scan (with
    the unit vector ``v/|v|`` as its query, and its proven bound scaled by ``|v|``)
    scores every row; the rows that can reach the top-k are rescored in float64 from
    the definition, as :func:`imgrec.search.rank.rank` does, so the result equals a
    float64 brute-force scan (ties broken by row number). Scores are not clamped.

    Args:
        data: (n, d) float32 matrix (a memory map is fine).
        norms: (n,) row norms of ``data``.
        positives: (p, d) positive examples (p >= 1).
        negatives: (m, d) negative examples (m may be 0).
        weight: the negatives' weight, in [0, :data:`MAX_NEGATIVE_WEIGHT`].
        k: results wanted (clipped to n).
        half: the float16 copy of ``data``, scanned instead of it (same results).
        mask: (n,) bool, or None: only rows where it is True are ranked.

    Returns:
        ``(rows, scores)``, best first; scores in [-1 - weight, 1 + weight].

    Example:
        >>> data = np.eye(3, dtype=np.float32)
        >>> rows, scores = rank_refined(data, np.ones(3, np.float32), data[:1], data[1:2],
        ...                             50, 3)
        >>> rows.tolist(), scores.tolist()
        ([0, 2, 1], [1.0, 0.0, -50.0])
    """
    w = check_weight(weight)
    pos, neg = _unit(positives), _unit(negatives)
    if len(pos) == 0:
        raise QueryError("give at least one positive example")
    v = pos.mean(0) - (w * neg.mean(0) if len(neg) else 0.0)
    n = len(data) if mask is None else int(np.count_nonzero(mask))
    k = min(int(k), n)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    # the cosine scan with v as its query bounds cosine(x, v); scores are |v| times that
    nv = float(np.linalg.norm(v))
    scan = _bounds("cosine", data, v[None], norms, half)
    scan["scale"] = scan["scale"] * nv
    if "err" in scan:
        scan["err"] = scan["err"] * nv
    # + 4u |v|: the float64 v and its unit vector are rounded once more than rank()'s query
    scan["const"] = (scan.get("const", 0.0) + 4 * K.EPS32) * nv + 1e-30
    slots, thresholds = topk.candidates(k=k, larger_is_better=True, mask=mask, **scan)
    if k < n:
        require_finite(thresholds)
    rows = slots[0]
    values = np.empty(len(rows))
    for s in range(0, len(rows), 16384):  # bounded memory even when all rows tie
        sub = data[rows[s:s + 16384]]
        val = K.cosine_exact(sub, pos).mean(0)
        if len(neg):
            val -= w * K.cosine_exact(sub, neg).mean(0)
        values[s:s + 16384] = val
    require_finite(values)
    o = topk.order(values, rows, True)[:k]
    return rows[o], values[o]


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length in float64 (zero rows stay zero)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.size == 0:
        return x.reshape(0, x.shape[-1] if x.ndim == 2 else 0)
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, nrm, out=np.zeros_like(x), where=nrm > 0)


def refine(index: Index, queries: Sequence[Any], negatives: Sequence[Any], weight: Any,
           k: int, method: str, metric: str,
           max_megapixels: float = images.MAX_MEGAPIXELS, rows: np.ndarray | None = None
           ) -> SearchResult:
    """Per-query cosine top-k plus the refined ``combined`` ranking (metric ``"refined"``),
    among ``rows`` when given (see :mod:`imgrec.search.filters`)."""
    if method != "embedding" or not (isinstance(metric, str) and metric == "cosine"):
        raise QueryError("negative examples work with method 'embedding' and metric "
                         f"'cosine' only (got {shown(method)}, {shown(metric)})")
    if len(negatives) > MAX_QUERIES:
        raise QueryError(f"at most {MAX_QUERIES} negative examples (got {len(negatives)})")
    w = check_weight(weight)
    feats = query_features(index, list(queries) + list(negatives), True, max_megapixels)
    pos, neg = feats[:len(queries)], feats[len(queries):]
    q = np.stack([f.embedding for f in pos])  # type: ignore[misc]
    nq = np.stack([f.embedding for f in neg])  # type: ignore[misc]
    sub = restrict(TABLE["embedding"].matrix(index, None), rows)
    per, _ = ranked("cosine", sub, q, k)
    s = sub.scan
    at, values = rank_refined(s.data, s.norms, q, nq, w, k, s.half, sub.mask)  # type: ignore[arg-type]
    rows = sub.rows(at)
    note = (f"combined: mean cosine to {len(pos)} quer{'y' if len(pos) == 1 else 'ies'} "
            f"- {w:g} x mean cosine to {len(neg)} negative example"
            f"{'' if len(neg) == 1 else 's'} (refined score, in [{-1 - w:g}, {1 + w:g}])")
    return SearchResult(method, metric, k, [f.label for f in pos],
                        [make_hits(index.paths(r), "cosine", r, v) for r, v in per],
                        make_hits(index.paths(rows), REFINED, rows, values), [note],
                        [f.label for f in neg], w, combined_metric=REFINED)
