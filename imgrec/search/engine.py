"""The search entry point: a request checked against the method table, its queries'
features, the exact ranking, and the :class:`SearchResult` (see :meth:`Index.search`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from imgrec import images
from imgrec.errors import QueryError
from imgrec.search import kernels as K
from imgrec.search import topk
from imgrec.search.filters import Restricted, Where, ranked, restrict
from imgrec.search.methods import TABLE, check_request, components
from imgrec.search.query import query_features
from imgrec.search.refine import refine
from imgrec.search.rerank import Rerank, expand, rank_fused
from imgrec.search.rerank import parse as parse_rerank
from imgrec.search.results import Hit, SearchResult, make_hits

if TYPE_CHECKING:
    from imgrec.index.index import Index

#: the metrics ``metric="all"`` runs; the union of their top-k is ordered by the first
ALL_METRICS = ("cosine", "euclidean", "manhattan")


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else [x]


def search(index: Index, queries: Any, method: str = "embedding", metric: str = "cosine",
           k: int = 5, pca_components: int | None = None, *, negatives: Any = None,
           negative_weight: float = 0.5,
           max_megapixels: float = images.MAX_MEGAPIXELS, where: Any = None,
           rerank: Any = None) -> SearchResult:
    """Find the ``k`` gallery images most similar to one to five queries.

    The arguments are those of :meth:`imgrec.index.index.Index.search`, which calls this.

    Example:
        >>> import tempfile
        >>> from imgrec import Index, Stored
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rng = np.random.default_rng(0)
        >>> idx = Index.from_arrays(tmp.name, ["a.jpg", "b.jpg", "c.jpg"],
        ...                         rng.normal(size=(3, 8)), rng.random((3, 768)), model="m")
        >>> res = search(idx, Stored("b.jpg"), k=2)
        >>> res.per_query[0][0].path, res.metric
        ('b.jpg', 'cosine')
        >>> search(idx, Stored("b.jpg"), method="color", k=1).metric
        'chi2'
        >>> del idx; tmp.cleanup()
    """
    queries = _as_list(queries)
    entry = check_request(method, metric, k, len(queries), pca_components)
    k = int(k)  # a numpy integer is accepted, and reported as a plain int
    negatives = [] if negatives is None else _as_list(negatives)
    cond = Where.of(where)
    rows = cond.rows(index) if cond is not None else None
    rr = check_rerank(rerank, method, metric, negatives)
    if negatives:
        return refine(index, queries, negatives, negative_weight, k, method, metric,
                      max_megapixels, rows)
    kernel_metric = entry.metric(metric)
    feats = query_features(index, queries, entry.feature == "embedding", max_megapixels)
    labels = [f.label for f in feats]
    notes: list[str] = []
    raw = np.stack([getattr(f, entry.feature) for f in feats])
    if rows is not None:
        notes.append(f"restricted to {len(rows):,} of {len(index):,} images")
    if kernel_metric == "all":
        per, comb = rank_all(index, raw, k, rows)
        return SearchResult(method, "all", k, labels, per, comb, notes)
    c = components(index, pca_components, notes) if entry.components else None
    q = entry.transform(index, raw, [f.row for f in feats], c)
    scan = restrict(entry.matrix(index, c), rows)
    if rr is not None:
        notes.append(f"re-ranked by alpha query expansion ({rr})")
        per_rows, comb = reranked(index, scan, q, rr, k)
    else:
        per_rows, comb = ranked(kernel_metric, scan, q, k)
    return SearchResult(method, kernel_metric, k, labels,
                        [make_hits(index.paths(r), kernel_metric, r, v) for r, v in per_rows],
                        make_hits(index.paths(comb[0]), kernel_metric, *comb), notes)


def check_rerank(rerank: Any, method: str, metric: str, negatives: list[Any]) -> Rerank | None:
    """The parsed re-ranking of a request, or a QueryError where it does not apply."""
    rr = parse_rerank(rerank)
    if rr is not None and (method != "embedding" or metric != "cosine" or negatives):
        raise QueryError("rerank works with method embedding, metric cosine and no negatives")
    return rr


def reranked(index: Index, scan: Restricted, q: np.ndarray, rr: Rerank, k: int
             ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The re-ranked top-k over ``scan`` (:mod:`imgrec.search.rerank`), in index rows."""
    near, _ = ranked("cosine", scan, q, rr.n)
    q2 = np.concatenate([expand(q[j:j + 1], index.embeddings, index.embedding_norms, r[None],
                                v[None], rr.alpha) for j, (r, v) in enumerate(near)])
    s = scan.scan
    per, comb = rank_fused(s.data, s.norms, q, q2.astype(np.float32), k, s.half, scan.mask)
    return [(scan.rows(a), v) for a, v in per], (scan.rows(comb[0]), comb[1])


def rank_all(index: Index, q: np.ndarray, k: int, rows: np.ndarray | None = None
             ) -> tuple[list[list[Hit]], list[Hit]]:
    """Union of the cosine, euclidean and manhattan top-k, ordered by cosine (among
    ``rows`` when given).

    Each hit carries all three values in ``metrics``.
    """
    scan = TABLE["embedding"].matrix(index, None)
    sub = restrict(scan, rows)
    runs = {m: ranked(m, sub, q, k) for m in ALL_METRICS}
    exact = {"cosine": K.cosine_exact, "euclidean": K.euclidean_exact,
             "manhattan": K.manhattan_exact}

    def merge(row_sets: list[np.ndarray], qs: np.ndarray) -> list[Hit]:
        rows = np.unique(np.concatenate(row_sets))
        sub = scan.data[rows]
        vals = {m: exact[m](sub, qs).mean(0) for m in ALL_METRICS}
        o = topk.order(vals["cosine"], rows, True)
        extra = [{m: float(v[i]) for m, v in vals.items()} for i in o]
        return make_hits(index.paths(rows[o]), "cosine", rows[o], vals["cosine"][o], extra)

    per = [merge([runs[m][0][j][0] for m in runs], q[j:j + 1]) for j in range(len(q))]
    return per, merge([runs[m][1][0] for m in runs], q)
