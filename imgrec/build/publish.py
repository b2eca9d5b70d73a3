"""The one publish step of every build: fill a new version from the previous one and the
work store, then switch to it atomically (the only user of the index writer here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgrec.build.sync import Plan, Previous
from imgrec.build.workstore import WorkStore
from imgrec.errors import ImgrecError
from imgrec.features.pca import fit_pca
from imgrec.index import catalog
from imgrec.index.writer import VersionWriter

_COPY_STEP = 8192


def publish(index_dir: Path, entries: list[catalog.Entry], plan: Plan, prev: Previous | None,
            ws: WorkStore, dim: int, manifest: dict[str, Any], pca_components: int
            ) -> tuple[str, list[str]]:
    """Write ``entries`` (numbered by :meth:`Plan.numbered`) as a new published version.

    Rows of :attr:`Plan.from_prev` are copied from ``prev``; rows of
    :attr:`Plan.from_work` are read from the work store's chunks. On any failure the
    half-written version is removed and the published one stays.

    Returns:
        The new version's name and notes for the build report.
    """
    rows = sum(1 for e in entries if e.row is not None)
    writer = VersionWriter(index_dir, rows, dim)
    notes: list[str] = []
    try:
        prev_labels = prev.labels if prev is not None else None
        labels = writer.labels() if (ws.has_labels or prev_labels is not None) else None
        if prev is not None:
            _copy_previous(writer, labels, prev, prev_labels, entries, plan)
        want: dict[str, list[int]] = {}
        for e in entries:
            if e.row is not None and e.path in plan.from_work:
                want.setdefault(e.sha256, []).append(e.row)
        for chunk in ws.chunks():
            for i, sha in enumerate(chunk.shas):
                for r in want.pop(sha, ()):
                    writer.embeddings[r] = chunk.embeddings[i]
                    writer.histograms[r] = chunk.histograms[i]
                    if labels is not None and chunk.top5 is not None and chunk.prob5 is not None:
                        labels[0][r] = chunk.top5[i]
                        labels[1][r] = chunk.prob5[i]
        if want:
            raise ImgrecError(f"internal error: features missing for {len(want)} files")
        if labels is not None:
            unlabelled = int((np.asarray(labels[0][:, 0]) < 0).sum())
            if unlabelled:
                notes.append(f"{unlabelled} of {rows} images have no ImageNet labels "
                             "(indexed before labels were kept): `--full` computes them")
        writer.publish(entries, manifest, fit_pca(writer.histograms, pca_components))
    except BaseException:
        writer.abort()
        raise
    return writer.name, notes


def _copy_previous(writer: VersionWriter, labels: tuple[np.ndarray, np.ndarray] | None,
                   prev: Previous, prev_labels: tuple[np.ndarray, np.ndarray] | None,
                   entries: list[catalog.Entry], plan: Plan) -> None:
    """Copy the reused rows from the previous version, in blocks."""
    pairs = [(e.row, plan.from_prev[e.path]) for e in entries
             if e.row is not None and e.path in plan.from_prev]
    if not pairs:
        return
    dst, src = (np.array(x) for x in zip(*pairs, strict=True))
    for s in range(0, len(dst), _COPY_STEP):
        d, o = dst[s:s + _COPY_STEP], src[s:s + _COPY_STEP]
        writer.embeddings[d] = prev.index.embeddings[o]
        writer.histograms[d] = prev.index.histograms[o]
        if labels is not None and prev_labels is not None:
            for mine, theirs in zip(labels, prev_labels, strict=True):
                mine[d] = theirs[o]
