"""The read side of :class:`~imgrec.shard.sharded.ShardedIndex` that the CLI and the
dashboard use as they use an :class:`~imgrec.index.index.Index`: facts, paths, rows, and
feature rows fetched from the shards that hold them (for samples, never the whole matrix)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from imgrec import images
from imgrec.errors import ImgrecError, QueryError
from imgrec.features.embedding import Embedder

#: the matrices a shard hands out rows of (see :meth:`ShardServer.rows`)
MATRICES = ("embeddings", "histograms", "pca_histograms", "labels_top5", "labels_prob5")


class RemoteRows:
    """One matrix over every shard, in global rows: ``len()``, ``shape`` and ``m[rows]``
    (rows fetched from the shards that hold them; a sample, not the whole matrix)."""

    def __init__(self, owner: ShardedFacts, name: str, width: int) -> None:
        self.owner, self.name = owner, name
        self.shape = (len(owner), width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, tuple):  # m[rows, columns]
            return self[rows[0]][(slice(None), *rows[1:])]
        if isinstance(rows, slice):
            rows = range(*rows.indices(len(self)))
        scalar = np.ndim(rows) == 0
        want = np.atleast_1d(np.asarray(rows, np.int64))
        if len(want) and (want.min() < 0 or want.max() >= len(self)):
            raise IndexError(f"rows outside 0..{len(self) - 1}")
        out = self.owner.fetch_rows(self.name, want)
        return out[0] if scalar else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every row (the whole matrix through this process: for small indexes only)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class ShardedFacts:
    """Index-like facts of a sharded index (mixed into ShardedIndex, which supplies
    ``manifest``, ``path`` and ``_all``); ``_read_facts`` runs once when it opens."""

    manifest: Any
    path: Path
    _embedder: Embedder | None

    def _all(self, method: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    def _each(self, method: str, args: Sequence[tuple]) -> list[Any]:
        raise NotImplementedError

    def _read_facts(self, facts: list[dict[str, Any]], paths: list[list[str]]) -> None:
        self._facts = facts
        self._paths = [p for part in paths for p in part]
        self._rows = {p: i for i, p in enumerate(self._paths)}
        self.has_labels = all(f["has_labels"] for f in facts)
        from imgrec.shard.split import sharded_version

        self.version = sharded_version([(s.name, f["version"]) for s, f in
                                        zip(self.manifest.shards, facts, strict=True)])
        self._offsets = np.array([s.offset for s in self.manifest.shards], np.int64)
        dims = {"embeddings": facts[0]["dim"], "histograms": facts[0]["histogram_dim"],
                "pca_histograms": self.manifest.pca_components, "labels_top5": 5,
                "labels_prob5": 5}
        self._matrices = {m: RemoteRows(self, m, d) for m, d in dims.items()}

    # ---- what an Index says about itself -------------------------------------------------

    def __len__(self) -> int:
        return self.manifest.count

    @property
    def index_dir(self) -> Path:
        return self.path

    @property
    def model(self) -> str:
        return self.manifest.model

    @property
    def root(self) -> Path:
        return Path(self.manifest.gallery_root)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from imgrec.features.embedding import CNNEmbedder

            self._embedder = CNNEmbedder(self.model)
        return self._embedder

    def facts(self) -> Any:
        """The shards' :class:`~imgrec.index.facts.IndexFacts` summed: counts, formats,
        decoders, disk size; the newest build; this sharded index's folder and version."""
        parts = [f["facts"] for f in self._facts]
        formats: Counter[str] = Counter()
        decoders: Counter[str] = Counter()
        for p in parts:
            formats.update(p.formats)
            decoders.update(p.decoders)
        seconds = [p.build_seconds for p in parts if p.build_seconds is not None]
        return replace(parts[0], index_dir=str(self.path), version=self.version,
                       count=len(self), skipped=self.skipped(),
                       formats=dict(formats.most_common()), decoders=dict(decoders.most_common()),
                       size_bytes=sum(p.size_bytes for p in parts),
                       built_at=max(p.built_at for p in parts),
                       build_seconds=sum(seconds) if seconds else None,
                       first_pass="float16" if all(p.first_pass == "float16" for p in parts)
                       else "float32", has_labels=self.has_labels,
                       checksums=all(p.checksums for p in parts))

    def skipped(self) -> list[tuple[str, str]]:
        return sorted(x for part in self._all("skipped") for x in part)

    # ---- rows and paths ------------------------------------------------------------------

    def all_paths(self) -> list[str]:
        """Every indexed path, in global row order."""
        return list(self._paths)

    def paths(self, rows: Sequence[int]) -> list[str]:
        """Gallery-relative paths of global rows, in the order given."""
        try:
            return [self._paths[int(r)] for r in rows]
        except IndexError:
            raise KeyError(f"a row outside 0..{len(self) - 1}") from None

    def row_of(self, path: str) -> int:
        """The global row of an indexed path."""
        if path not in self._rows:
            raise QueryError(f"{path!r} is not an indexed image of this gallery")
        return self._rows[path]

    def resolve(self, path: str) -> Path:
        """Absolute file of an indexed path; refuses anything outside the gallery root."""
        full = self.root / path
        if Path(path).is_absolute() or not images.is_within(full, self.root):
            raise QueryError(f"{path!r} lies outside the gallery {self.root}")
        return full

    def entry(self, path: str) -> Any:
        """The catalog row of one gallery path (indexed or skipped), or None."""
        return next((e for e in self._all("entry", str(path)) if e is not None), None)

    def entries(self) -> list[Any]:
        """Every catalog row of every shard (indexed and skipped; global rows), by path
        (the whole catalog through this process, as ``Index.entries`` reads it)."""
        return sorted((e for part in self._all("entries") for e in part),
                      key=lambda e: e.path)

    def sha256_of(self, paths: Sequence[str]) -> dict[str, str]:
        """path -> content hash of the given indexed paths (absent paths are left out)."""
        out: dict[str, str] = {}
        for part in self._all("sha256_of", [str(p) for p in paths]):
            out.update(part)
        return out

    # ---- feature rows --------------------------------------------------------------------

    @property
    def embeddings(self) -> RemoteRows:
        return self._matrices["embeddings"]

    @property
    def histograms(self) -> RemoteRows:
        return self._matrices["histograms"]

    @property
    def labels_top5(self) -> RemoteRows | None:
        return self._matrices["labels_top5"] if self.has_labels else None

    @property
    def labels_prob5(self) -> RemoteRows | None:
        return self._matrices["labels_prob5"] if self.has_labels else None

    def fetch_rows(self, matrix: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (global, any order) of ``matrix``, each from the shard holding it."""
        if matrix not in MATRICES:
            raise ImgrecError(f"no matrix {matrix!r} in a shard")
        shard = np.searchsorted(self._offsets, rows, side="right") - 1
        wanted = [rows[shard == i] - self._offsets[i] for i in range(len(self._offsets))]
        got = self._each("rows", [(matrix, w) for w in wanted])
        width = self._matrices[matrix].shape[1]
        dtype = np.result_type(*[g.dtype for g in got])
        out = np.zeros((len(rows), width), dtype)
        for i, g in enumerate(got):
            out[shard == i] = g
        return out

    def label_counts(self, top: int = 50) -> list[Any]:
        """The ``top`` most frequent top-1 classes over every shard (as
        :func:`imgrec.insights.labels.label_counts`: ties by lower class id)."""
        from imgrec.insights.labels import LabelCount

        if not isinstance(top, int) or isinstance(top, bool) or top < 1:
            raise QueryError(f"top must be a positive integer, got {top!r}")
        counts: Counter[int] = Counter()
        names: dict[int, str] = {}
        for part in self._all("label_counts"):
            for c in part:
                counts[c.class_id] += c.count
                names[c.class_id] = c.name
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [LabelCount(cid, names[cid], n) for cid, n in ranked]

    def labels_of(self, path: str) -> list[Any]:
        """The stored top-5 labels of one indexed image, from the shard holding it."""
        row = self.row_of(path)
        shard = int(np.searchsorted(self._offsets, row, side="right") - 1)
        asks = [([row - int(self._offsets[shard])] if i == shard else [],)
                for i in range(len(self._offsets))]
        return self._each("labels_of", asks)[shard][0]

    def find_duplicates(self, *args: Any, **kwargs: Any) -> Any:
        """Not offered across shards yet: raises ImgrecError."""
        raise ImgrecError("duplicate detection across shards is not supported: run it on "
                          "the unsharded index")
