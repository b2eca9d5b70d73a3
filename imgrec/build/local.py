"""The local feature producer: decode worker processes, then the embedder in this process."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from imgrec.build.decode import FileResult, Task, decode_all
from imgrec.build.workstore import META, FeatureBatch
from imgrec.errors import ImgrecError
from imgrec.features.embedding import Embedder
from imgrec.index.writer import LABEL_TOP


class LocalFeatures:
    """Reads, hashes and decodes files in worker processes and embeds them in batches.

    A feature producer: called with the files to read and the content hashes whose
    features are already known, it yields each file's :class:`FileResult` as it is read,
    and a :class:`FeatureBatch` (the raw embedder output, one row per distinct new
    content) after the results it covers. Contents in ``known`` are not decoded.

    Args:
        embedder: the backbone (any :class:`~imgrec.features.embedding.Embedder`).
        workers: decoding processes (0 decodes in this process).
        batch_size: images per forward pass.
    """

    def __init__(self, embedder: Embedder, workers: int, batch_size: int) -> None:
        self.embedder = embedder
        self.workers = workers
        self.batch_size = batch_size

    def __call__(self, todo: list[Task], known: frozenset[str]
                 ) -> Iterator[FileResult | FeatureBatch]:
        # network inputs of one shape go through the network together: under the
        # ``aspect`` framing a batch waits for batch_size images of its shape (or the end)
        buckets: dict[tuple, list[FileResult]] = {}  # first file of each new content
        seen: set[str] = set()
        for res in decode_all(todo, self.workers, known):
            if not res.error and not res.known and res.sha256 not in seen and res.crop is not None:
                seen.add(res.sha256)
                bucket = buckets.setdefault(res.crop.shape, [])
                bucket.append(res)
            else:
                bucket = []
            yield res
            if len(bucket) >= self.batch_size:
                yield self.embed(buckets.pop(bucket[0].crop.shape))
        for bucket in buckets.values():
            yield self.embed(bucket)

    def embed(self, results: list[FileResult]) -> FeatureBatch:
        """One forward pass over the crops of ``results`` (of one shape)."""
        crops = np.stack([r.crop for r in results])
        vecs, top5, prob5 = embed_with_labels(self.embedder, crops)
        return FeatureBatch([r.sha256 for r in results],
                            [{k: getattr(r, k) for k in META} for r in results], vecs,
                            np.stack([r.hist for r in results]), top5, prob5)


def embed_with_labels(emb: Embedder, crops: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Embeddings and, when the embedder has a ``forward`` giving class probabilities
    (:class:`~imgrec.features.embedding.CNNEmbedder`), the top-5 labels, from one pass.

    Raises:
        ImgrecError: the embedder returned arrays of the wrong shape.
    """
    from imgrec.insights.labels import top_classes

    forward = getattr(emb, "forward", None)
    if callable(forward):
        vecs, probs = forward(crops)
    else:
        vecs, probs = emb.embed(crops), None
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.shape != (len(crops), emb.dim):
        raise ImgrecError(f"embedder {emb.name} returned shape {vecs.shape} for "
                          f"{len(crops)} images (expected ({len(crops)}, {emb.dim}))")
    if probs is None:
        return vecs, None, None
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or len(probs) != len(vecs):
        raise ImgrecError(f"embedder {emb.name} returned class probabilities of shape "
                          f"{probs.shape} for {len(vecs)} images")
    top5, prob5 = top_classes(probs, LABEL_TOP)
    return vecs, top5, prob5
