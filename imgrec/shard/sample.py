"""A sample drawn across the shards of a sharded index, held in memory as an index that the
insights functions (clusters, auto_k, the neighbour graph, the projector export) take unchanged.

The rows are those :func:`imgrec.insights.graph.sample_rows` draws over the global rows
(seeded, uniform: each shard gives rows in proportion to its size), the very rows the
unsharded index's own sample holds, so a graph or a projector export of a sample equals the
unsharded one, and when the whole index fits the sample it *is* the whole index. The
features and labels of those rows are fetched once from the shards that hold them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgrec.errors import ImgrecError
from imgrec.insights.graph import sample_rows

#: the images an insight of a sharded index runs on by default (the Explore plot's points,
#: and the most :func:`imgrec.insights.clusters.clusters` clusters with full K-means)
SAMPLE = 20_000


class SampleIndex:
    """Rows of a sharded index, renumbered 0..m-1 (``rows[i]`` is sample row i's global row).

    Offers what the insights functions read of an index: ``len()``, ``embeddings``,
    ``labels_top5``/``labels_prob5`` (None without labels), ``has_labels``, ``paths``,
    ``all_paths``, ``root``, ``resolve``, ``model``. Make one with :meth:`draw`.
    """

    def __init__(self, source: Any, rows: np.ndarray, embeddings: np.ndarray,
                 labels_top5: np.ndarray | None, labels_prob5: np.ndarray | None) -> None:
        self.source, self.rows = source, np.asarray(rows, np.int64)
        self.embeddings = embeddings
        self.labels_top5, self.labels_prob5 = labels_top5, labels_prob5

    @classmethod
    def draw(cls, source: Any, size: int = SAMPLE, seed: int = 0) -> SampleIndex:
        """``size`` rows of the sharded index ``source`` drawn with ``seed`` (every row
        when it holds no more), their embeddings and labels fetched from their shards.

        Raises:
            ImgrecError: ``size`` is not a positive whole number.
        """
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ImgrecError(f"a sample needs a positive number of images, got {size!r}")
        rows = sample_rows(len(source), int(size), int(seed))
        emb = np.asarray(source.embeddings[rows], np.float32)
        top5 = source.labels_top5[rows] if source.has_labels else None
        prob5 = source.labels_prob5[rows] if source.has_labels else None
        return cls(source, rows, emb, top5, prob5)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> int:
        """Images in the whole sharded index."""
        return len(self.source)

    @property
    def whole(self) -> bool:
        """Whether the sample holds every image of the index."""
        return len(self) == self.total

    def describe(self) -> str:
        """``a sample of N of M images drawn across S shards``."""
        return describe(self.source, len(self))

    @property
    def has_labels(self) -> bool:
        return self.labels_top5 is not None

    @property
    def model(self) -> str:
        return self.source.model

    @property
    def root(self) -> Path:
        return self.source.root

    @property
    def index_dir(self) -> Path:
        return self.source.index_dir

    def resolve(self, path: str) -> Path:
        return self.source.resolve(path)

    def paths(self, rows: Any) -> list[str]:
        """Paths of sample rows, in the order given."""
        return self.source.paths(self.rows[np.asarray(rows, np.int64)])

    def all_paths(self) -> list[str]:
        return self.source.paths(self.rows)


def describe(source: Any, size: int = SAMPLE) -> str:
    """What a sample of ``size`` images of the sharded index ``source`` is, in words."""
    shards = len(source.manifest.shards)
    return (f"a sample of {min(int(size), len(source)):,} of {len(source):,} images drawn "
            f"across {shards} shard{'s' if shards != 1 else ''}")


def sample_of(idx: Any, size: int = SAMPLE, seed: int = 0) -> tuple[Any, str | None]:
    """What an insight runs on: an :class:`~imgrec.index.index.Index` itself (note None),
    or for a sharded index a :class:`SampleIndex` of ``size`` images and its description
    (such as ``a sample of 170 of 170 images drawn across 2 shards``).

    Example:
        >>> view, note = sample_of(idx)
        >>> view is idx, note
        (True, None)
    """
    from imgrec.index.index import Index

    if isinstance(idx, Index):
        return idx, None
    s = SampleIndex.draw(idx, size, seed)
    return s, s.describe()
