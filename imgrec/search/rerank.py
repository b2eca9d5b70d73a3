"""Query-side re-ranking by alpha query expansion: the query plus its neighbours, searched again.

The expanded query of a unit query vector ``q`` whose ``n`` nearest gallery rows (by
cosine, among the rows the search may return) are ``x_1 .. x_n`` with cosines
``s_1 .. s_n`` is

    q' = q + sum_i max(s_i, 0) ** alpha * x_i / |x_i|

(rounded to float32), and the re-ranked score of a row ``x`` is the better of its two
cosines, ``max(cos(q, x), cos(q', x))``: the expansion can lift an image, never sink one
below its plain score, so an image identical to the query (cosine 1) stays first. With
several queries the combined ranking is the mean of their re-ranked scores. The top-k is
exact (:func:`rank_fused`). A gallery image used as a query is its own first neighbour
(``s_1 = 1``); leave-one-out evaluation (:func:`imgrec.insights.evaluate.evaluate`) finds
the neighbours with the query's own row left out, so an image never expands itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imgrec.errors import QueryError
from imgrec.index.half import HalfCopy
from imgrec.search import kernels as K
from imgrec.search import topk

KINDS = ("aqe",)
MAX_NEIGHBOURS = 100


@dataclass(frozen=True)
class Rerank:
    """One re-ranking: ``kind`` (``aqe``: alpha query expansion), its ``n`` neighbours
    (1 to :data:`MAX_NEIGHBOURS`) and the exponent ``alpha`` (>= 0) of their weights."""

    kind: str = "aqe"
    n: int = 3
    alpha: float = 3.0

    def __str__(self) -> str:
        return f"{self.kind}:n={self.n},alpha={self.alpha:g}"


DEFAULT = Rerank()


def parse(spec: Any) -> Rerank | None:
    """A :class:`Rerank` from ``None``/``"none"`` (no re-ranking), a Rerank, or text
    ``aqe`` / ``aqe:n=10,alpha=3``; a QueryError for anything else.

    Example:
        >>> parse("aqe:n=10"), parse(None)
        (Rerank(kind='aqe', n=10, alpha=3.0), None)
        >>> parse("aqe:n=0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        imgrec.errors.QueryError: rerank n must be a whole number from 1 to 100, got '0'...
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none")):
        return None
    if isinstance(spec, Rerank):
        return _checked(spec.kind, spec.n, spec.alpha)
    if not isinstance(spec, str):
        raise QueryError(f"rerank must be text like 'aqe:n=5,alpha=3' or a Rerank, "
                         f"got {type(spec).__name__}")
    kind, _, args = spec.strip().partition(":")
    opts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in args.split(","))):
        key, eq, val = part.partition("=")
        if not eq or key.strip() not in ("n", "alpha"):
            raise QueryError(f"rerank option {part!r} not understood in {spec!r}: use "
                             "aqe:n=N,alpha=A")
        opts[key.strip()] = val.strip()
    return _checked(kind, opts.get("n", str(DEFAULT.n)), opts.get("alpha", str(DEFAULT.alpha)))


def _checked(kind: Any, n: Any, alpha: Any) -> Rerank:
    if kind not in KINDS:
        raise QueryError(f"unknown rerank {kind!r}; use {', '.join(KINDS)} (alpha query "
                         "expansion) or none")
    try:
        nn = int(str(n))
    except ValueError:
        nn = 0
    if not 1 <= nn <= MAX_NEIGHBOURS:
        raise QueryError(f"rerank n must be a whole number from 1 to {MAX_NEIGHBOURS}, "
                         f"got {str(n)!r}")
    try:
        a = float(str(alpha))
    except ValueError:
        a = float("nan")
    if not (np.isfinite(a) and 0 <= a <= 100):
        raise QueryError(f"rerank alpha must be a number from 0 to 100, got {str(alpha)!r}")
    return Rerank(kind, nn, a)


def expand(q: np.ndarray, data: np.ndarray, norms: np.ndarray, rows: np.ndarray,
           sims: np.ndarray, alpha: float) -> np.ndarray:
    """The expanded queries (float64, unit length) of alpha query expansion.

    Args:
        q: (m, d) query vectors.
        data: (n, d) stored rows (a memory map is fine); ``norms`` their lengths.
        rows: (m, t) each query's nearest rows, best first (index rows of ``data``).
        sims: (m, t) their cosines to the query.
        alpha: the exponent of the neighbours' weights.

    Example:
        >>> data = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
        >>> out = expand(np.array([[1.0, 0.0]]), data, np.ones(2), np.array([[1]]),
        ...              np.array([[0.5]]), 1.0)
        >>> out.round(4).tolist()
        [[0.8944, 0.4472]]
    """
    q = np.asarray(q, np.float64)
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    out = q / np.where(qn > 0, qn, 1)
    w = np.maximum(np.asarray(sims, np.float64), 0.0) ** alpha
    flat = np.asarray(rows, np.int64).ravel()
    if flat.size:
        x = np.asarray(data[np.sort(np.unique(flat))], np.float64)
        pos = np.searchsorted(np.sort(np.unique(flat)), flat)
        nx = np.asarray(norms, np.float64)[flat]
        unit = x[pos] / np.where(nx > 0, nx, 1)[:, None]
        out = out + (w.ravel()[:, None] * unit).reshape(*w.shape, -1).sum(1)
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n > 0, n, 1)


def fused(data: np.ndarray, rows: np.ndarray, q: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """(m, len(rows)) float64 re-ranked scores: the better of each row's cosine to the
    query ``q[j]`` and to its expanded query ``q2[j]``."""
    sub = data[rows]
    return np.maximum(K.cosine_exact(sub, q), K.cosine_exact(sub, q2))


def rank_fused(data: np.ndarray, norms: np.ndarray, q: np.ndarray, q2: np.ndarray, k: int,
               half: HalfCopy | None = None, mask: np.ndarray | None = None
               ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """Exact top-k of the re-ranked scores, per query and of their mean over the queries,
    as :func:`imgrec.search.rank.rank` returns them (ties by row number).

    The fast pass scores both query sets; the larger of two values each within the
    cosine's proven bound is within it of the larger exact value (and so is their mean),
    so the candidates hold the exact top-k, which is rescored in float64.
    """
    from imgrec.search.rank import _bounds, require_finite

    q = np.atleast_2d(np.asarray(q, np.float32))
    q2 = np.atleast_2d(np.asarray(q2, np.float32))
    n = len(data) if mask is None else int(np.count_nonzero(mask))
    k = min(int(k), n)
    if n == 0:
        empty = (np.zeros(0, np.int64), np.zeros(0))
        return [empty for _ in q], empty
    kw = _bounds("cosine", data, np.vstack([q, q2]), norms, half)
    kw["fast"] = np.maximum(kw["fast"][:len(q)], kw["fast"][len(q):])
    slots, thresholds = topk.candidates(k=k, larger_is_better=True, mask=mask, **kw)
    if k < n:
        require_finite(thresholds)

    def pick(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        require_finite(values)
        o = topk.order(values, rows, True)[:k]
        return rows[o], values[o]

    per = [pick(slots[j], fused(data, slots[j], q[j:j + 1], q2[j:j + 1])[0])
           for j in range(len(q))]
    if len(q) == 1:
        return per, per[0]
    return per, pick(slots[-1], fused(data, slots[-1], q, q2).mean(0))
