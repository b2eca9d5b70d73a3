"""Search results: ranked hits, the result of one request, and its JSON and CSV rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: the metric name of a refined ("less like this") combined ranking, see
#: :func:`imgrec.search.refine.rank_refined`
REFINED = "refined"


@dataclass(frozen=True)
class Hit:
    """One ranked gallery image.

    ``score`` is higher-is-better: cosine similarity, 1 / (1 + distance) for a distance,
    or the refined score (see :func:`score_of`). ``distance`` is the metric's raw value
    (for cosine and refined scores: 1 - score).

    Example:
        >>> Hit(1, "cats/a.jpg", 0.5, 1.0, 7).score
        0.5
    """

    rank: int
    path: str
    score: float
    distance: float
    row: int
    metrics: dict[str, float] | None = None


@dataclass
class SearchResult:
    """Ranked lists for each query plus a combined ranking over all queries.

    ``metric`` names the per-query lists' metric. ``combined_metric`` is set when the
    combined ranking uses another one: ``"refined"`` for a search with negatives, whose
    combined scores are mean cosine to the queries minus ``negative_weight`` times mean
    cosine to the negatives.

    Example:
        >>> hit = Hit(1, "a.jpg", 0.9, 0.1, 0)
        >>> res = SearchResult("embedding", "cosine", 1, ["q.jpg"], [[hit]], [hit])
        >>> res.to_dict()["combined"]
        [{'rank': 1, 'path': 'a.jpg', 'score': 0.9, 'distance': 0.1}]
    """

    method: str
    metric: str
    k: int
    queries: list[str]
    per_query: list[list[Hit]]
    combined: list[Hit]
    notes: list[str] = field(default_factory=list)
    #: labels of the negative examples of a refined search ("less like this"); with
    #: negatives, ``combined`` is the refined ranking (see :func:`rank_refined`)
    negatives: list[str] = field(default_factory=list)
    negative_weight: float | None = None
    #: the combined ranking's metric where it differs from ``metric`` (``"refined"``)
    combined_metric: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by ``imgrec search --json``."""
        def hits(hs: list[Hit]) -> list[dict[str, Any]]:
            return [{k: v for k, v in asdict(h).items() if k != "row" and v is not None}
                    for h in hs]
        out = {"method": self.method, "metric": self.metric, "k": self.k,
               "queries": [{"query": q, "hits": hits(h)}
                           for q, h in zip(self.queries, self.per_query, strict=True)],
               "combined": hits(self.combined), "notes": self.notes}
        if self.combined_metric:
            out["combined_metric"] = self.combined_metric
        if self.negatives:
            out["negatives"] = list(self.negatives)
            out["negative_weight"] = self.negative_weight
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """Flat rows (query, rank, path, score, distance, method, metric) for CSV export."""
        out = []
        groups = [(q, hs, self.metric)
                  for q, hs in zip(self.queries, self.per_query, strict=True)]
        if len(self.queries) > 1 or self.negatives:
            groups.append(("combined", self.combined, self.combined_metric or self.metric))
        for q, hs, metric in groups:
            out += [{"query": q, "rank": h.rank, "path": h.path, "score": h.score,
                     "distance": h.distance, "method": self.method, "metric": metric}
                    for h in hs]
        return out


def score_of(metric: str, value: float) -> tuple[float, float]:
    """(score, distance) for a metric's raw value.

    Cosine similarities are clamped to [-1, 1] (float64 rounding can pass 1 by an ulp);
    refined scores are returned as computed, in [-1 - w, 1 + w] for negative weight w;
    distances d (clamped at 0) score 1 / (1 + d).

    Example:
        >>> score_of("cosine", 1.0000000000000002)
        (1.0, 0.0)
        >>> score_of("refined", -8.5)
        (-8.5, 9.5)
        >>> score_of("manhattan", 3.0)
        (0.25, 3.0)
    """
    value = float(value)
    if metric == REFINED:
        return value, 1.0 - value
    if metric == "cosine":
        value = min(1.0, max(-1.0, value))
        return value, 1.0 - value
    value = max(0.0, value)
    return 1.0 / (1.0 + value), value


def make_hits(paths: Sequence[str], metric: str, rows: np.ndarray, values: np.ndarray,
              extra: list[dict[str, float]] | None = None) -> list[Hit]:
    """Hits ranked 1, 2, ... from rows and their metric values, best first.

    Example:
        >>> [h.score for h in make_hits(["a", "b"], "euclidean", np.array([4, 2]),
        ...                              np.array([0.0, 1.0]))]
        [1.0, 0.5]
    """
    return [Hit(i + 1, p, *score_of(metric, v), int(r), extra[i] if extra else None)
            for i, (r, v, p) in enumerate(zip(rows, values, paths, strict=True))]
