"""Leave-one-out retrieval quality of each search method on a labelled gallery.

Every labelled image queries the rest of the gallery (itself left out) through the exact
scoring the search uses (:mod:`imgrec.insights.evaluate_rank`); a hit is relevant when it
shares a label with the query. Per method and k: precision@k, recall@k (relevant hits over
all the query's relevant images), mAP@k (average precision over the first k, divided by
min(k, relevant images)) and the share of queries whose first hit is relevant, each with
a 95 % bootstrap interval over the queries (the same resamples for every method, so the
best method's lead can be judged).

Which images count: an image with no label stays in the gallery as a candidate (always
irrelevant) but does not query; an image whose labels no other image shares (a singleton)
does not query either, since nothing could be found for it. Both are counted in the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from imgrec.errors import QueryError
from imgrec.insights.evaluate_labels import Labels, load_labels
from imgrec.insights.evaluate_rank import exact_topk, reranked_loo
from imgrec.search.rank import EMBEDDING_METRICS
from imgrec.search.rerank import Rerank
from imgrec.search.rerank import parse as parse_rerank

if TYPE_CHECKING:
    from imgrec.index.index import Index

DEFAULT_METHODS = ("embedding:cosine", "embedding:euclidean", "embedding:manhattan",
                   "color", "pca")
DEFAULT_KS = (5, 10, 20)
METRICS = ("precision", "recall", "mAP", "first_hit")


@dataclass
class EvaluationReport:
    """The measured quality of each method; ``rows`` hold one value per method/metric/k."""

    labels: str
    n_images: int
    n_queries: int
    n_unlabelled: int
    n_singletons: int
    ks: tuple[int, ...]
    methods: list[str]
    #: dicts with method, metric, k, value, low, high (the 95 % bootstrap interval)
    rows: list[dict[str, Any]]
    best: str
    best_by: str
    #: share of bootstrap resamples in which ``best`` beats the runner-up on ``best_by``
    best_confidence: float
    seconds: dict[str, float]
    unknown_paths: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def value(self, method: str, metric: str, k: int | None = None) -> float:
        """One measured value (``k`` ignored for ``first_hit``)."""
        for r in self.rows:
            if r["method"] == method and r["metric"] == metric and (
                    metric == "first_hit" or r["k"] == k):
                return float(r["value"])
        raise KeyError(f"no {metric}@{k} for {method}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by ``imgrec evaluate --json``."""
        return asdict(self)

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame (method, metric, k, value, low, high)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["method", "metric", "k", "value", "low", "high"])

    def table(self) -> str:
        """A plain-text table: one line per method, value [low-high] per metric."""
        cols = [(m, k) for k in self.ks for m in ("precision", "recall", "mAP")]
        cols.append(("first_hit", 1))
        head = ["method"] + [("P" if m == "precision" else "R" if m == "recall" else m)
                             + f"@{k}" if m != "first_hit" else "first hit" for m, k in cols]
        lines = []
        for meth in self.methods:
            cells = [meth]
            for m, k in cols:
                r = next(r for r in self.rows if r["method"] == meth and r["metric"] == m
                         and r["k"] == k)
                cells.append(f"{r['value']:.3f} [{r['low']:.3f}-{r['high']:.3f}]")
            lines.append(cells)
        widths = [max(len(c[i]) for c in [head, *lines]) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join(fmt.format(*c) for c in [head, *lines])


def parse_method(spec: str) -> tuple[str, str, int | None]:
    """``embedding[:metric]``, ``color`` or ``pca[:components]`` -> (method, metric, components).

    Raises:
        QueryError: an unknown method or metric.
    """
    name, _, arg = spec.strip().partition(":")
    if name == "embedding":
        metric = arg or "cosine"
        if metric not in EMBEDDING_METRICS or metric == "all":
            raise QueryError(f"unknown metric in {spec!r}; use embedding:cosine, "
                             "embedding:euclidean or embedding:manhattan")
        return "embedding", metric, None
    if name == "color" and not arg:
        return "color", "chi2", None
    if name == "pca":
        if not arg:
            return "pca", "cosine", None
        if arg.isdigit() and int(arg) >= 1:
            return "pca", "cosine", int(arg)
    raise QueryError(f"unknown method {spec!r}; use embedding:cosine, embedding:euclidean, "
                     "embedding:manhattan, color, pca or pca:N")


def method_arrays(index: Index, spec: str) -> tuple[str, np.ndarray, np.ndarray | None, str]:
    """(kernel metric, stored rows, their norms, the method's canonical name) of ``spec``
    (a shard of a sharded index reads its own rows with it)."""
    method, metric, comps = parse_method(spec)
    if method == "embedding":
        return metric, index.embeddings, index.embedding_norms, f"embedding:{metric}"
    if method == "color":
        return "chi2", index.histograms, None, "color"
    stored = int(index.manifest.pca_components)
    c = stored if comps is None else min(comps, stored)
    data = np.ascontiguousarray(index.pca_histograms[:, :c])
    norms = np.linalg.norm(data.astype(np.float64), axis=1).astype(np.float32)
    return "cosine", data, norms, "pca" if comps is None else f"pca:{c}"


def leave_one_out(index: Index, spec: str, qrows: np.ndarray, k: int,
                  rerank: Rerank | None = None) -> tuple[np.ndarray, str]:
    """The exact top-k rows (m, k) of each row of ``qrows`` queried with its own stored
    features, itself left out, and the method's canonical name (re-ranked by ``rerank``:
    :func:`imgrec.insights.evaluate_rank.reranked_loo`, named ``method+rerank``). A
    sharded index offers the same, without re-ranking, as its ``leave_one_out`` method
    (the shards' exact lists merged)."""
    metric, data, norms, name = method_arrays(index, spec)
    if rerank is not None:
        return reranked_loo(metric, data, norms, qrows, k, rerank), f"{name}+{rerank}"
    queries = np.asarray(data[qrows], np.float32)
    rows, _ = exact_topk(metric, data, queries, k, norms, self_rows=qrows)
    return rows, name


def _incidence(per_image: list[tuple[str, ...]]) -> sparse.csr_matrix:
    """(n images, n labels) 0/1 matrix of which image carries which label."""
    names: dict[str, int] = {}
    rows, cols = [], []
    for i, labels in enumerate(per_image):
        for lab in labels:
            rows.append(i)
            cols.append(names.setdefault(lab, len(names)))
    data = np.ones(len(rows), np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(per_image), max(1, len(names))))


def relevant_counts(m: sparse.csr_matrix, block: int = 1024) -> np.ndarray:
    """For each image, how many other images share at least one of its labels."""
    mt = m.T.tocsc()
    out = np.zeros(m.shape[0], np.int64)
    for s in range(0, m.shape[0], block):
        shared = m[s:s + block] @ mt
        out[s:s + block] = shared.getnnz(axis=1)
    labelled = np.asarray(m.sum(1)).ravel() > 0
    return np.where(labelled, out - 1, 0)


def per_query_metrics(rel: np.ndarray, n_relevant: np.ndarray,
                      ks: Sequence[int]) -> dict[tuple[str, int], np.ndarray]:
    """Per-query values of each metric from the 0/1 relevance of the ranked hits.

    Args:
        rel: (m, K) 1 where hit i of query j is relevant (K >= max(ks)).
        n_relevant: (m,) relevant images of each query (>= 1).
        ks: cut-offs.

    Example:
        >>> out = per_query_metrics(np.array([[1, 0, 1]]), np.array([2]), [3])
        >>> [round(float(out[m, 3][0]), 4) for m in ("precision", "recall", "mAP")]
        [0.6667, 1.0, 0.8333]
    """
    rel = np.asarray(rel, np.float64)
    cum = np.cumsum(rel, axis=1)
    prec_at = cum / np.arange(1, rel.shape[1] + 1)
    out: dict[tuple[str, int], np.ndarray] = {}
    for k in ks:
        hits = cum[:, k - 1]
        out["precision", k] = hits / k
        out["recall", k] = hits / n_relevant
        out["mAP", k] = (prec_at[:, :k] * rel[:, :k]).sum(1) / np.minimum(k, n_relevant)
    out["first_hit", 1] = rel[:, 0]
    return out


def _bootstrap(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, cols) means of ``values`` (m, cols) over resampled queries."""
    m = len(values)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, values.shape[1]))
    for s in range(0, n_boot, 100):
        c = min(100, n_boot - s)
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=c)
        out[s:s + c] = counts @ values / m
    return out


def _with_rerank(methods: Sequence[str], rerank: Any) -> list[tuple[str, Rerank | None]]:
    """(method, re-ranking) pairs: each method, and for ``embedding:cosine`` with a
    re-ranking also the re-ranked method after it."""
    rr = parse_rerank(rerank)
    out: list[tuple[str, Rerank | None]] = []
    for spec in methods:
        out.append((spec, None))
        if rr is not None and parse_method(spec)[:2] == ("embedding", "cosine"):
            out.append((spec, rr))
    if rr is not None and len(out) == len(methods):
        raise QueryError("rerank re-ranks embedding:cosine: add it to the methods")
    return out


def evaluate(index: Index, labels: str | os.PathLike | Labels = "folder",
             ks: Sequence[int] = DEFAULT_KS, methods: Sequence[str] = DEFAULT_METHODS,
             bootstrap: int = 1000, seed: int = 0, rerank: Any = None) -> EvaluationReport:
    """Measure each method's retrieval quality on the index's own labelled images.

    Args:
        index: an opened :class:`imgrec.Index`, or a sharded index
            (:class:`~imgrec.shard.sharded.ShardedIndex`: the same report, each query
            ranked over every shard).
        labels: ``"folder"``, ``"depth:N"``, a CSV ``path,label[,label...]`` (see
            :mod:`imgrec.insights.evaluate_labels`), or a :class:`Labels` object.
        ks: cut-offs (clipped to the gallery size minus one).
        methods: ``embedding:cosine|euclidean|manhattan``, ``color``, ``pca``, ``pca:N``.
        bootstrap: resamples for the 95 % intervals (0: no intervals).
        seed: random seed of the resampling.
        rerank: a re-ranking (:func:`imgrec.search.rerank.parse`: ``"aqe"``,
            ``"aqe:n=5,alpha=3"``); ``embedding:cosine`` is then measured re-ranked too,
            as ``embedding:cosine+aqe:n=5,alpha=3``, each query's neighbours found with
            the query itself left out.

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        QueryError: bad ``ks`` or methods, or no image has a label another image shares.
        ImgrecError: an unusable labels source.

    Example:
        >>> report = evaluate(Index.open("data/index"), labels="depth:1")
        >>> report.best, report.value(report.best, "precision", 5)
        ('embedding:cosine', 1.0)
    """
    t0 = time.perf_counter()
    paths = index.all_paths()
    n = len(paths)
    lab = labels if isinstance(labels, Labels) else load_labels(labels, paths, index.root)
    if len(lab.per_image) != n:
        raise QueryError(f"{len(lab.per_image)} labels for {n} indexed images")
    if not ks or any(not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise QueryError(f"k values must be positive integers, got {list(ks)!r}")
    if not methods:
        raise QueryError("give at least one method")
    runs = _with_rerank(methods, rerank)
    inc = _incidence(lab.per_image)
    n_rel = relevant_counts(inc)
    labelled = np.array([bool(x) for x in lab.per_image])
    qrows = np.flatnonzero(n_rel > 0)
    if len(qrows) == 0:
        raise QueryError(f"no image shares its label ({lab.source}) with another image: "
                         "nothing to evaluate")
    notes = list(_clip_notes(ks, n))
    kk = tuple(sorted({min(int(k), n - 1) for k in ks}))
    cols: list[tuple[str, str, int]] = []
    per_method, seconds, names = [], {}, []
    for spec, rr in runs:
        t = time.perf_counter()
        if rr is not None and hasattr(index, "leave_one_out"):
            raise QueryError("rerank is not supported on a sharded index")
        if hasattr(index, "leave_one_out"):  # a sharded index: through its shards
            rows, name = index.leave_one_out(spec, qrows, max(kk))
        else:
            rows, name = leave_one_out(index, spec, qrows, max(kk), rr)
        qa = np.repeat(qrows, rows.shape[1])
        rel = (np.asarray(inc[qa].multiply(inc[rows.ravel()]).sum(1)).ravel() > 0)
        vals = per_query_metrics(rel.reshape(rows.shape), n_rel[qrows], kk)
        per_method.append(np.stack(list(vals.values()), axis=1))
        cols += [(name, m, k) for (m, k) in vals]
        names.append(name)
        seconds[name] = round(time.perf_counter() - t, 3)
    values = np.concatenate(per_method, axis=1)
    means = values.mean(0)
    boot = _bootstrap(values, bootstrap, seed) if bootstrap > 0 else means[None]
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    rows_out = [{"method": m, "metric": met, "k": k, "value": float(means[i]),
                 "low": float(lo[i]), "high": float(hi[i])}
                for i, (m, met, k) in enumerate(cols)]
    best_by = f"mAP@{kk[0]}"
    pick = [i for i, (_, met, k) in enumerate(cols) if met == "mAP" and k == kk[0]]
    order = sorted(pick, key=lambda i: -means[i])
    conf = 1.0 if len(order) < 2 else float((boot[:, order[0]] > boot[:, order[1]]).mean())
    seconds["total"] = round(time.perf_counter() - t0, 3)
    return EvaluationReport(
        labels=lab.source, n_images=n, n_queries=len(qrows),
        n_unlabelled=int((~labelled).sum()), n_singletons=int((labelled & (n_rel == 0)).sum()),
        ks=kk, methods=names, rows=rows_out, best=cols[order[0]][0], best_by=best_by,
        best_confidence=conf, seconds=seconds, unknown_paths=list(lab.unknown_paths),
        notes=notes)


def _clip_notes(ks: Sequence[int], n: int) -> list[str]:
    big = [int(k) for k in ks if k > n - 1]
    if big:
        return [f"k={', '.join(map(str, big))} clipped to {n - 1}: the gallery holds {n} images"]
    return []
