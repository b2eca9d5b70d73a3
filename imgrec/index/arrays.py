"""Writing an index version from features computed elsewhere (``Index.from_arrays``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.embedding import l2_normalise
from imgrec.features.pca import DEFAULT_COMPONENTS, fit_pca
from imgrec.index import catalog
from imgrec.index.format import LABEL_TOP
from imgrec.index.writer import VersionWriter

_BLOCK = 65536


def write_arrays(index_dir: str | os.PathLike, paths: Sequence[str], embeddings: np.ndarray,
                 histograms: np.ndarray, *, model: str, gallery_root: str | os.PathLike = ".",
                 pca_components: int = DEFAULT_COMPONENTS,
                 labels_top5: np.ndarray | None = None,
                 labels_prob5: np.ndarray | None = None) -> Path:
    """Check the arrays, write and publish one version; returns its folder.

    Embeddings are L2-normalised on write; the PCA is fitted on ``histograms``.
    ``labels_top5`` (n, 5) class ids (-1 = unknown) and ``labels_prob5`` (n, 5) their
    probabilities, best first, are stored when both are given.

    Raises:
        ValueError: paths not unique, shapes that disagree, or non-finite values.
        IndexWriteError: the version could not be written (the published one is kept).
    """
    n = len(paths)
    if len(set(paths)) != n:
        raise ValueError("paths must be unique")
    emb = np.asarray(embeddings)
    hist = np.asarray(histograms)
    if emb.ndim != 2 or len(emb) != n or hist.shape != (n, HIST_DIM):
        raise ValueError(f"need embeddings of shape (n, d) and histograms (n, {HIST_DIM}) "
                         f"for n={n} paths; got {emb.shape} and {hist.shape}")
    for name, arr in (("embeddings", emb), ("histograms", hist)):
        if not all(np.isfinite(arr[s:s + _BLOCK]).all() for s in range(0, n, _BLOCK)):
            raise ValueError(f"{name} hold NaN or infinite values")
    if (labels_top5 is None) != (labels_prob5 is None):
        raise ValueError("give both labels_top5 and labels_prob5, or neither")
    if labels_top5 is not None and (np.shape(labels_top5) != (n, LABEL_TOP)
                                    or np.shape(labels_prob5) != (n, LABEL_TOP)):
        raise ValueError(f"labels must have shape (n, {LABEL_TOP}) for n={n}")
    writer = VersionWriter(index_dir, n, emb.shape[1])
    try:
        for s in range(0, n, _BLOCK):
            writer.embeddings[s:s + _BLOCK] = l2_normalise(emb[s:s + _BLOCK])
            writer.histograms[s:s + _BLOCK] = hist[s:s + _BLOCK]
        if labels_top5 is not None:
            top5, prob5 = writer.labels()
            top5[:] = np.asarray(labels_top5)
            prob5[:] = np.asarray(labels_prob5)
        entries = [catalog.Entry(path=str(p), row=i) for i, p in enumerate(paths)]
        pca = fit_pca(writer.histograms, pca_components)
        return writer.publish(entries, {"model": model, "gallery_root": str(gallery_root),
                                        "source": "from_arrays"}, pca)
    except BaseException:
        writer.abort()
        raise
