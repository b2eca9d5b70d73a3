"""What one shard's Ray actor does: open its index memory-mapped and answer exact top-k
requests in global row numbers (its offset added), with exact values (the driver knows
every row's path, so none is looked up here); a search filter (a
:class:`~imgrec.search.filters.Where`) is applied here, to this shard's own rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.errors import ImgrecError
from imgrec.index.index import Index
from imgrec.search import kernels as K
from imgrec.search.engine import ALL_METRICS
from imgrec.search.filters import Where, ranked, restrict
from imgrec.search.methods import TABLE
from imgrec.search.refine import rank_refined
from imgrec.shard.split import open_shard

#: what a shard returns for one ranked list: global rows and their values
Ranked = tuple[np.ndarray, np.ndarray]
_EXACT = {"cosine": K.cosine_exact, "euclidean": K.euclidean_exact,
          "manhattan": K.manhattan_exact}


def guarded(fn: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    """Run ``fn``; an imgrec error comes back as ``{"error": (class name, message)}`` so
    the driver raises it as one line, never as a remote traceback."""
    def call(self: ShardServer, *args: Any) -> dict[str, Any]:
        if self.error:
            return {"error": ("IndexFormatError", self.error)}
        if self.threads:  # numba's setting is per calling thread
            import numba

            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        try:
            return {"ok": fn(self, *args)}
        except ImgrecError as exc:
            return {"error": (type(exc).__name__, str(exc))}
    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


class ShardServer:
    """One shard, opened once (memory-mapped) in the actor that holds it.

    Args:
        folder: the shard's index folder.
        offset: the global row of its first row.
        threads: threads of its kernels (numba and BLAS), so that the shards placed on
            one node share its cores instead of each taking all of them.
        version: the version the sharded index's manifest names (None: the published one).
    """

    def __init__(self, folder: str, offset: int, threads: int | None = None,
                 version: str | None = None) -> None:
        self.folder, self.offset, self.error = folder, offset, ""
        self.threads = threads
        self._passing: tuple[Where | None, np.ndarray | None] = (None, None)
        if threads:
            from threadpoolctl import threadpool_limits

            self._blas = threadpool_limits(threads)  # held for the actor's life
        try:
            self.idx: Index = open_shard(Path(folder), version)
        except (ImgrecError, OSError, ValueError) as exc:
            self.error = str(exc)

    def _ranked(self, rows: np.ndarray, values: np.ndarray) -> Ranked:
        rows = np.asarray(rows, np.int64)
        return rows + self.offset, np.asarray(values)

    def _rows(self, where: Where | None) -> np.ndarray | None:
        """This shard's local rows passing ``where`` (None: every row), kept for the last
        filter (:meth:`passing` then the ranking ask for the same one)."""
        if where is None:
            return None
        if self._passing[0] != where:
            self._passing = (where, where.rows(self.idx))
        return self._passing[1]

    @guarded
    def passing(self, where: Where | None) -> int:
        """How many of this shard's rows pass ``where``."""
        rows = self._rows(where)
        return len(self.idx) if rows is None else len(rows)

    @guarded
    def facts(self) -> dict[str, Any]:
        """Rows, model, PCA size, labels, gallery root: checked against the manifest."""
        return {"count": len(self.idx), "model": self.idx.model,
                "pca_components": self.idx.pca().n_components,
                "has_labels": self.idx.has_labels, "root": str(self.idx.root),
                "dim": int(self.idx.embeddings.shape[1]),
                "histogram_dim": int(self.idx.histograms.shape[1]),
                "version": self.idx.version, "facts": self.idx.facts()}

    @guarded
    def pca(self) -> Any:
        return self.idx.pca()

    @guarded
    def paths(self) -> list[str]:
        return self.idx.all_paths()

    @guarded
    def skipped(self) -> list[tuple[str, str]]:
        return self.idx.skipped()

    @guarded
    def stored(self, rows: list[int]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(global row, embedding, histogram, PCA projection) of each local row."""
        return [(int(r) + self.offset, np.asarray(self.idx.embeddings[r]),
                 np.asarray(self.idx.histograms[r]), np.asarray(self.idx.pca_histograms[r]))
                for r in rows]

    @guarded
    def rank(self, method: str, metric: str, q: np.ndarray, k: int, c: int | None,
             where: Where | None = None) -> tuple[list[Ranked], Ranked]:
        """Exact top-k per query and combined, as :func:`imgrec.search.rank.rank` gives,
        among the rows passing ``where``."""
        sub = restrict(TABLE[method].matrix(self.idx, c), self._rows(where))
        per, comb = ranked(metric, sub, q, k)
        return [self._ranked(*p) for p in per], self._ranked(*comb)

    @guarded
    def rank_all(self, q: np.ndarray, k: int, where: Where | None = None
                 ) -> tuple[list[tuple[np.ndarray, dict[str, np.ndarray]]], ...]:
        """Per query and combined: the union of this shard's cosine, euclidean and
        manhattan top-k (among the rows passing ``where``), each row with all three exact
        values (the driver forms the global top-k of each metric from these, then their
        union)."""
        scan = TABLE["embedding"].matrix(self.idx, None)
        sub = restrict(scan, self._rows(where))
        runs = {m: ranked(m, sub, q, k) for m in ALL_METRICS}

        def values(row_sets: list[np.ndarray], qs: np.ndarray):
            rows = np.unique(np.concatenate(row_sets)).astype(np.int64)
            data = scan.data[rows]
            vals = {m: _EXACT[m](data, qs).mean(0) for m in ALL_METRICS}
            return rows + self.offset, vals

        per = [values([runs[m][0][j][0] for m in runs], q[j:j + 1]) for j in range(len(q))]
        return per, values([runs[m][1][0] for m in runs], q)

    @guarded
    def refine(self, q: np.ndarray, nq: np.ndarray, weight: float, k: int,
               where: Where | None = None) -> Ranked:
        """The exact refined top-k among the rows passing ``where`` (see
        :func:`imgrec.search.refine.rank_refined`)."""
        sub = restrict(TABLE["embedding"].matrix(self.idx, None), self._rows(where))
        s = sub.scan
        at, values = rank_refined(s.data, s.norms, q, nq, weight, k, s.half, sub.mask)
        return self._ranked(sub.rows(at), values)

    @guarded
    def label(self, text: str, k: int, where: Where | None = None
              ) -> tuple[Ranked, list[str]]:
        """This shard's label-search top-k (among the rows passing ``where``) and the
        notes naming the matched classes."""
        from imgrec.insights.labels import search_by_label

        res = search_by_label(self.idx, text, k, where)
        rows = np.array([h.row for h in res.combined], np.int64)
        return (rows + self.offset, np.array([h.score for h in res.combined])), res.notes

    @guarded
    def rows(self, matrix: str, rows: np.ndarray) -> np.ndarray:
        """Local ``rows`` of one of :data:`imgrec.shard.facade.MATRICES`, in that order."""
        from imgrec.shard.facade import MATRICES

        if matrix not in MATRICES or getattr(self.idx, matrix) is None:
            raise ImgrecError(f"this shard holds no {matrix}")
        m = getattr(self.idx, matrix)
        if not len(rows):
            return np.zeros((0, m.shape[1]), m.dtype)
        order = np.argsort(rows, kind="stable")  # sorted reads of the memory map
        out = np.empty((len(rows), m.shape[1]), m.dtype)
        out[order] = np.asarray(m[np.asarray(rows)[order]])
        return out

    @guarded
    def entry(self, path: str) -> Any:
        """The catalog row of ``path`` here (its row made global), or None."""
        e = self.idx.entry(path)
        if e is not None and e.row is not None:
            e = replace(e, row=e.row + self.offset)
        return e

    @guarded
    def sha256_of(self, paths: list[str]) -> dict[str, str]:
        return self.idx.sha256_of(paths)

    @guarded
    def label_counts(self) -> list[Any]:
        """Every top-1 class with its count here (the driver sums the shards)."""
        from imgrec.insights.labels import class_names, label_counts

        return label_counts(self.idx, len(class_names()) + 1)

    @guarded
    def labels_of(self, rows: list[int]) -> list[list[Any]]:
        from imgrec.insights.labels import labels_of

        return [labels_of(self.idx, int(r)) for r in rows]

    @guarded
    def entries(self) -> list[Any]:
        """Every catalog row here (indexed and skipped), by path, rows made global."""
        return [e if e.row is None else replace(e, row=e.row + self.offset)
                for e in self.idx.entries()]

    @guarded
    def assign(self, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's nearest centroid and squared distance to it (a sample's K-means)."""
        from imgrec.insights.clusters import assign

        return assign(self.idx.embeddings, centroids)

    @guarded
    def method_rows(self, spec: str, rows: list[int]) -> np.ndarray:
        """Local ``rows`` of an evaluation method's stored features, as float32."""
        from imgrec.insights.evaluate import method_arrays

        data = method_arrays(self.idx, spec)[1]
        return np.asarray(data[np.asarray(rows, np.int64)], np.float32)

    @guarded
    def exact_topk(self, spec: str, q: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray, str]:
        """This shard's exact top-k (global rows, values) of each query for an evaluation
        method (:func:`imgrec.insights.evaluate_rank.exact_topk`), and the method's name."""
        from imgrec.insights.evaluate import method_arrays
        from imgrec.insights.evaluate_rank import exact_topk

        metric, data, norms, name = method_arrays(self.idx, spec)
        rows, vals = exact_topk(metric, data, q, k, norms)
        return rows + self.offset, vals, name

    def ping(self) -> str:
        """The folder this actor serves (a cheap call to check it is alive)."""
        return self.folder
