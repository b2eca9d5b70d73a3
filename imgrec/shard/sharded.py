"""A sharded index served by one Ray actor per shard, with the search API of :class:`Index`:
each shard returns its exact top-k with exact values (a search filter applied to its own
rows), and the driver merges them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgrec import errors, images
from imgrec.errors import ImgrecError, QueryError
from imgrec.features.embedding import Embedder
from imgrec.features.recipe import Recipe, recipe_named
from imgrec.search import topk
from imgrec.search.engine import ALL_METRICS
from imgrec.search.filters import Where
from imgrec.search.methods import LARGER_IS_BETTER, MAX_QUERIES, check_request
from imgrec.search.query import Stored, query_features
from imgrec.search.refine import check_weight
from imgrec.search.results import REFINED, Hit, SearchResult, make_hits
from imgrec.shard.calls import each
from imgrec.shard.facade import ShardedFacts
from imgrec.shard.insights import ShardedInsights
from imgrec.shard.split import ShardedManifest

#: restarts Ray gives a shard's actor that dies (a query that hit it is retried once)
MAX_RESTARTS = 3


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else [x]


def merge(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int, larger: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """The global top-k (rows, values) of the shards' exact top-k lists (ties by global
    row, as Index orders them)."""
    rows = np.concatenate([p[0] for p in parts]).astype(np.int64)
    vals = np.concatenate([np.asarray(p[1], np.float64) for p in parts])
    o = topk.order(vals, rows, larger)[:k] if len(rows) else np.zeros(0, np.int64)
    return rows[o], vals[o]


def _threads_per_shard(shards: int) -> int:
    """Kernel threads per shard actor: the cluster's CPUs shared by the shards placed
    on them (the actors are spread evenly over the nodes)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [int(n.get("Resources", {}).get("CPU", 1)) for n in nodes] or [1]
    per_node = -(-shards // len(cpus))  # ceil: shards on the busiest node
    return max(1, min(cpus) // per_node)


class _Stored:
    """The stored features of a request's :class:`Stored` queries, fetched from their
    shards, in the shape :func:`imgrec.search.query.query_features` reads."""

    def __init__(self, found: dict[str, tuple], embedder: Embedder, model: str,
                 recipe: Recipe) -> None:
        self.found = found
        self.embeddings = {v[0]: v[1] for v in found.values()}
        self.histograms = {v[0]: v[2] for v in found.values()}
        self.projections = {v[0]: v[3] for v in found.values()}
        self.embedder, self.model, self.recipe = embedder, model, recipe

    def row_of(self, path: str) -> int:
        if path not in self.found:
            raise QueryError(f"{path!r} is not an indexed image of this gallery")
        return int(self.found[path][0])


class ShardedIndex(ShardedFacts, ShardedInsights):
    """A sharded index (see :func:`imgrec.shard.split.split`) served over Ray actors.

    Offers :meth:`search` and :meth:`search_by_label` as :class:`Index` does, with the
    same results: rows are global (shard offset + local row). Query images are decoded
    and embedded once, here. Open with :meth:`open`; :meth:`close` ends the actors.

    Example:
        On a running Ray cluster (skipped as a test: none is running there):

        >>> idx = ShardedIndex.open("photos-sharded", ray_address="auto")  # doctest: +SKIP
        >>> idx.search([Stored("cats/tom.jpg")], k=5).combined[0].path     # doctest: +SKIP
    """

    def __init__(self, path: Path, manifest: ShardedManifest, actors: list[Any],
                 embedder: Embedder | None) -> None:
        self.path, self.manifest, self.actors = path, manifest, actors
        self._embedder = embedder
        self._pca: Any = None

    @property
    def recipe(self) -> Recipe:
        """The embedding recipe every shard was built with (its thresholds are the
        defaults of the duplicate finder and the neighbour graph on this index)."""
        return recipe_named(self.manifest.recipe)

    @classmethod
    def open(cls, path: str | os.PathLike, *, ray_address: str | None = None,
             embedder: Embedder | None = None) -> ShardedIndex:
        """Place one actor per shard (spread over the nodes) and check every shard.

        Args:
            path: the sharded index folder (readable at this path on every node).
            ray_address: the Ray cluster (None: the session open in this process, else a
                local Ray started for it).
            embedder: the CNN for query images (default: made on first use).

        Raises:
            IndexFormatError: the manifest is damaged, or a shard cannot be opened or does
                not match it (the message names the shard).
        """
        import ray

        from imgrec.shard.cluster import import_ray, start
        from imgrec.shard.server import ShardServer

        path = Path(path).expanduser().resolve()
        manifest = ShardedManifest.read(path)
        import_ray()
        start(ray_address)
        remote = ray.remote(ShardServer).options(
            num_cpus=0, max_restarts=MAX_RESTARTS, max_task_retries=0,
            scheduling_strategy="SPREAD")
        threads = _threads_per_shard(len(manifest.shards))
        actors = [remote.remote(str(path / s.name), s.offset, threads, s.version)
                  for s in manifest.shards]
        out = cls(path, manifest, actors, embedder)
        try:
            out._check()
        except BaseException:
            out.close()
            raise
        return out

    def _check(self) -> None:
        facts = self._all("facts")
        for s, f in zip(self.manifest.shards, facts, strict=True):
            want = (s.count, self.manifest.model, self.manifest.pca_components)
            if (f["count"], f["model"], f["pca_components"]) != want:
                raise errors.IndexFormatError(
                    f"shard {s.name} of {self.path} does not match {self.path.name}'s "
                    f"manifest: {f['count']} rows of {f['model']} with {f['pca_components']}"
                    f" PCA components, expected {want[0]} rows of {want[1]} with {want[2]}")
        paths = self._all("paths")
        seen: dict[str, str] = {}
        for s, part in zip(self.manifest.shards, paths, strict=True):
            for p in part:
                if p in seen:
                    raise ImgrecError(f"{p!r} is in shards {seen[p]} and {s.name} of "
                                      f"{self.path}: an image may be in one shard only")
                seen[p] = s.name
        self._read_facts(facts, paths)

    # ---- calling the actors ------------------------------------------------------------

    def _all(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every shard (see :meth:`_each`)."""
        return self._each(method, [args] * len(self.actors))

    def _each(self, method: str, args: Sequence[tuple | None]) -> list[Any]:
        """``method(*args[i])`` on shard ``i`` (see :func:`imgrec.shard.calls.each`)."""
        return each(self.path, self.manifest.shards, self.actors, method, args)

    def close(self) -> None:
        """End the shard actors."""
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []

    def pca(self) -> Any:
        if self._pca is None:
            self._pca = self._all("pca")[0]
        return self._pca

    # ---- search ------------------------------------------------------------------------

    def query_features(self, queries: Sequence[Any], need_embedding: bool,
                       max_megapixels: float = images.MAX_MEGAPIXELS) -> list[Any]:
        """Features of each query, computed once here (stored ones fetched from their shard)."""
        return query_features(self._stored(queries), queries, need_embedding, max_megapixels)

    def _stored(self, queries: Sequence[Any]) -> _Stored:
        """The stored features of the :class:`Stored` queries, each asked of the one
        shard holding it (the rows are known here: no catalog lookup on the shards)."""
        rows = sorted({self._rows[q.path] for q in queries
                       if isinstance(q, Stored) and q.path in self._rows})
        found: dict[str, tuple] = {}
        if rows:
            shard = np.searchsorted(self._offsets, rows, side="right") - 1
            asks: list[tuple | None] = [None] * len(self.actors)
            for i in set(shard.tolist()):
                asks[i] = ([r - int(self._offsets[i])
                            for r, s in zip(rows, shard, strict=True) if s == i],)
            for part in self._each("stored", asks):
                for r, e, h, p in part or ():
                    found[self._paths[r]] = (r, e, h, p)
        return _Stored(found, self.embedder, self.model, self.recipe)

    def search(self, queries: Any, method: str = "embedding", metric: str = "cosine",
               k: int = 5, pca_components: int | None = None, *, negatives: Any = None,
               negative_weight: float = 0.5, max_megapixels: float = images.MAX_MEGAPIXELS,
               where: Any = None) -> SearchResult:
        """The search of :meth:`imgrec.index.index.Index.search`, over every shard.

        A ``where`` filter is applied by each shard to its own rows (the same catalog
        conditions and labels), so the merged result is the exact top-k among the rows
        that pass, as on the unsharded index.

        Raises:
            QueryError: as :meth:`Index.search`.
        """
        queries = _as_list(queries)
        entry = check_request(method, metric, k, len(queries), pca_components)
        k = int(k)
        negatives = [] if negatives is None else _as_list(negatives)
        cond = Where.of(where)
        if negatives:
            return self._refine(queries, negatives, negative_weight, k, method, metric,
                                max_megapixels, cond)
        passing = sum(self._all("passing", cond)) if cond is not None else None
        kernel_metric = entry.metric(metric)
        view = self._stored(queries)
        feats = query_features(view, queries, entry.feature == "embedding", max_megapixels)
        labels, notes = [f.label for f in feats], []
        raw = np.stack([getattr(f, entry.feature) for f in feats])
        if passing is not None:
            notes.append(f"restricted to {passing:,} of {len(self):,} images")
        if kernel_metric == "all":
            per, comb = self._rank_all(raw.astype(np.float32), k, cond)
            return SearchResult(method, "all", k, labels, per, comb, notes)
        c = None
        q = np.asarray(raw, np.float32)
        if entry.components:
            c = self._components(pca_components, notes)
            q = self.pca().transform(raw, c)
            for i, f in enumerate(feats):  # a stored query reuses its stored projection
                if f.row is not None:
                    q[i] = view.projections[f.row][:c]
        parts = self._all("rank", method, kernel_metric, q, k, c, cond)
        larger = LARGER_IS_BETTER[kernel_metric]
        per = [self._hits(kernel_metric, merge([p[0][j] for p in parts], k, larger))
               for j in range(len(q))]
        comb = self._hits(kernel_metric, merge([p[1] for p in parts], k, larger))
        return SearchResult(method, kernel_metric, k, labels, per, comb, notes)

    def _components(self, requested: int | None, notes: list[str]) -> int:
        from imgrec.search.methods import components

        return components(self, requested, notes)  # type: ignore[arg-type]

    def _hits(self, metric: str, ranked: tuple[np.ndarray, np.ndarray],
              extra: list[dict[str, float]] | None = None) -> list[Hit]:
        """Hits of merged (rows, values), their paths from the driver's row -> path list."""
        rows, vals = ranked
        return make_hits(self.paths(rows), metric, rows, vals, extra)

    def _rank_all(self, q: np.ndarray, k: int, cond: Where | None
                  ) -> tuple[list[list[Hit]], list[Hit]]:
        """Union of the global cosine, euclidean and manhattan top-k, ordered by cosine."""
        parts = self._all("rank_all", q, k, cond)

        def union(slot: list[tuple[np.ndarray, dict[str, np.ndarray]]]) -> list[Hit]:
            rows = np.concatenate([s[0] for s in slot]).astype(np.int64)
            vals = {m: np.concatenate([s[1][m] for s in slot]) for m in ALL_METRICS}
            keep = np.unique(np.concatenate(
                [topk.order(vals[m], rows, LARGER_IS_BETTER[m])[:k] for m in ALL_METRICS]))
            o = keep[topk.order(vals["cosine"][keep], rows[keep], True)]
            extra = [{m: float(vals[m][i]) for m in ALL_METRICS} for i in o]
            return make_hits(self.paths(rows[o]), "cosine", rows[o], vals["cosine"][o],
                             extra)

        per = [union([p[0][j] for p in parts]) for j in range(len(q))]
        return per, union([p[1] for p in parts])

    def _refine(self, queries: list[Any], negatives: list[Any], weight: Any, k: int,
                method: str, metric: str, max_megapixels: float, cond: Where | None
                ) -> SearchResult:
        if method != "embedding" or metric != "cosine":
            raise QueryError("negative examples work with method 'embedding' and metric "
                             f"'cosine' only (got {method!r}, {metric!r})")
        if len(negatives) > MAX_QUERIES:
            raise QueryError(f"at most {MAX_QUERIES} negative examples (got {len(negatives)})")
        w = check_weight(weight)
        feats = query_features(self._stored(queries + negatives), queries + negatives, True,
                               max_megapixels)
        pos, neg = feats[:len(queries)], feats[len(queries):]
        q = np.stack([f.embedding for f in pos]).astype(np.float32)
        nq = np.stack([f.embedding for f in neg]).astype(np.float32)
        parts = self._all("rank", "embedding", "cosine", q, k, None, cond)
        per = [self._hits("cosine", merge([p[0][j] for p in parts], k, True))
               for j in range(len(q))]
        comb = merge(self._all("refine", q, nq, w, k, cond), k, True)
        note = (f"combined: mean cosine to {len(pos)} quer{'y' if len(pos) == 1 else 'ies'} "
                f"- {w:g} x mean cosine to {len(neg)} negative example"
                f"{'' if len(neg) == 1 else 's'} (refined score, in [{-1 - w:g}, {1 + w:g}])")
        return SearchResult(method, metric, k, [f.label for f in pos], per,
                            self._hits(REFINED, comb), [note], [f.label for f in neg], w,
                            combined_metric=REFINED)

    def search_by_label(self, text: str, k: int = 20, where: Any = None) -> SearchResult:
        """:func:`imgrec.insights.labels.search_by_label` over every shard (``where``
        applied by each shard to its own rows)."""
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        parts = self._all("label", text, int(k), Where.of(where))
        rows, vals = merge([p[0] for p in parts], int(k), True)
        paths = self.paths(rows)
        hits = [Hit(i + 1, p, float(v), float(1.0 - v), int(r))
                for i, (r, v, p) in enumerate(zip(rows, vals, paths, strict=True))]
        notes = parts[0][1][:1]
        if not hits:
            notes.append("no indexed image has a matching class among its top-5 labels")
        return SearchResult("label", "probability", int(k), [f"label: {text.strip()}"],
                            [hits], hits, notes)

