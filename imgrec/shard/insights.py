"""The insights of a sharded index: the shared sample, K-means clusters of it over every row,
every shard's catalog for the CSV export, and leave-one-out evaluation through the shards'
exact top-k lists (mixed into :class:`~imgrec.shard.sharded.ShardedIndex`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.shard.sample import SAMPLE, SampleIndex

#: leave-one-out queries sent to the shards at once (bounds each call's arrays)
QUERY_BLOCK = 2048


class Catalog:
    """Every shard's catalog as the one index :func:`imgrec.insights.export.export_csv`
    reads: the entries by path (rows global, as the unsharded index numbers them) and the
    labels of every row."""

    def __init__(self, source: Any, entries: list[Any], top5: np.ndarray | None,
                 prob5: np.ndarray | None) -> None:
        self.source, self._entries = source, entries
        self.labels_top5, self.labels_prob5 = top5, prob5

    def __len__(self) -> int:
        return len(self.source)

    @property
    def root(self) -> Path:
        return self.source.root

    def entries(self) -> list[Any]:
        return list(self._entries)


class ShardedInsights:
    """Insights of a sharded index (the class mixing it in supplies ``_all``, ``_each``,
    ``_offsets``, the facts and :class:`~imgrec.shard.facade.RemoteRows` matrices)."""

    _offsets: np.ndarray
    has_labels: bool
    embeddings: Any
    labels_top5: Any
    labels_prob5: Any

    def __len__(self) -> int:
        raise NotImplementedError

    def _all(self, method: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    def _each(self, method: str, args: Sequence[tuple | None]) -> list[Any]:
        raise NotImplementedError

    def sample(self, size: int = SAMPLE, seed: int = 0) -> SampleIndex:
        """The :class:`~imgrec.shard.sample.SampleIndex` of ``size`` images (seeded)."""
        return SampleIndex.draw(self, size, seed)

    def sample_clusters(self, k: int, seed: int = 0, sample: int = SAMPLE) -> Any:
        """:func:`imgrec.insights.clusters.clusters` of a ``sample`` (drawn with ``seed``)
        over every row: the rows outside the sample are assigned to their nearest centroid
        by their shard, and the sizes count every row (the clusters keep the sample's
        numbering). Global rows; when the whole index fits the sample this is the unsharded
        index's result."""
        from imgrec.insights.clusters import clusters

        s = self.sample(sample, seed)
        res = clusters(s, k, seed=seed)
        if s.whole:
            return res
        parts = self._all("assign", res.centroids)
        labels = np.concatenate([p[0] for p in parts]).astype(res.labels.dtype)
        dist = np.concatenate([p[1] for p in parts])
        labels[s.rows], dist[s.rows] = res.labels, res.distances
        return replace(res, labels=labels, distances=dist,
                       representatives=s.rows[res.representatives],
                       sizes=np.bincount(labels, minlength=res.k).astype(np.int64))

    def catalog(self) -> Catalog:
        """Every shard's catalog rows merged by path, with every row's labels."""
        entries = sorted((e for part in self._all("entries") for e in part),
                         key=lambda e: e.path)
        every = np.arange(len(self), dtype=np.int64)
        top5 = self.labels_top5[every] if self.has_labels else None
        prob5 = self.labels_prob5[every] if self.has_labels else None
        return Catalog(self, entries, top5, prob5)

    def _method_rows(self, spec: str, rows: np.ndarray) -> np.ndarray:
        """Global ``rows`` of an evaluation method's stored features, each from its shard."""
        shard = np.searchsorted(self._offsets, rows, side="right") - 1
        asks: list[tuple | None] = [None] * len(self._offsets)
        for i in np.unique(shard):
            asks[i] = (spec, (rows[shard == i] - self._offsets[i]).tolist())
        got = self._each("method_rows", asks)
        width = next(g.shape[1] for g in got if g is not None)
        out = np.zeros((len(rows), width), np.float32)
        for i, g in enumerate(got):
            if g is not None:
                out[shard == i] = g
        return out

    def leave_one_out(self, spec: str, qrows: np.ndarray, k: int) -> tuple[np.ndarray, str]:
        """:func:`imgrec.insights.evaluate.leave_one_out` over every shard: blocks of
        queries go to all shards, each returns its exact top-(k+1), and the driver drops
        the query's own row and keeps the k best (ties by global row, as ``Index``)."""
        from imgrec.insights.evaluate import parse_method
        from imgrec.search import topk
        from imgrec.search.rank import LARGER_IS_BETTER

        larger = LARGER_IS_BETTER[parse_method(spec)[1]]  # a bad spec fails here, once
        qrows = np.asarray(qrows, np.int64)
        out = np.zeros((len(qrows), int(k)), np.int64)
        name = spec
        for s in range(0, len(qrows), QUERY_BLOCK):
            block = qrows[s:s + QUERY_BLOCK]
            parts = self._all("exact_topk", spec, self._method_rows(spec, block), int(k) + 1)
            rows = np.concatenate([p[0] for p in parts], axis=1)
            vals = np.concatenate([p[1] for p in parts], axis=1)
            name = parts[0][2]
            for j, own in enumerate(block):
                keep = rows[j] != own
                r, v = rows[j][keep], vals[j][keep]
                out[s + j] = r[topk.order(v, r, larger)[:k]]
        return out, name
