"""Features computed by a build, saved in chunk files as they finish so a killed build resumes.

Any producer of features (the local decode workers + CNN, or a distributed one) feeds the
same :class:`WorkStore`; the publish step reads it back chunk by chunk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.features.color import DIM as HIST_DIM
from imgrec.index.writer import LABEL_TOP

FLUSH_EVERY = 256  # computed images per saved chunk (IMGREC_FLUSH_EVERY overrides)
FLUSH_SECONDS = 20.0  # ... or sooner, when the last chunk is this old
META = ("format", "mode", "width", "height", "exif", "decoder")  # catalog fields kept per content hash
_CHUNK_NAME = re.compile(r"chunk-(\d{6,})\.npz")
_UNKNOWN_TOP5 = np.full(LABEL_TOP, -1, np.int16)
_UNKNOWN_PROB5 = np.zeros(LABEL_TOP, np.float32)


@dataclass
class FeatureBatch:
    """Features of distinct contents: one row per content hash.

    Attributes:
        shas: SHA-256 of each image's file content.
        meta: the catalog fields :data:`META` of each image (format, mode, size, EXIF,
            decoder).
        embeddings: ``(n, dim)`` float32 unit rows.
        histograms: ``(n, 768)`` float32 colour histograms.
        top5, prob5: ``(n, 5)`` ImageNet class ids (-1 unknown) and probabilities, or None
            when the embedder has no classifier.
    """

    shas: list[str]
    meta: list[dict[str, Any]]
    embeddings: np.ndarray
    histograms: np.ndarray
    top5: np.ndarray | None = None
    prob5: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.shas)


class WorkStore:
    """The chunk files under ``folder``: add batches, flush them, read them back, discard.

    A chunk is written to a temporary name, synced, then renamed, so every
    ``chunk-*.npz`` is complete; anything else found when the store is opened (a temporary
    left by a crash, a chunk that does not load) is deleted and its images recomputed.
    Chunks without label arrays load as unlabelled.

    Args:
        folder: the work folder (one per embedder and pipeline version).
        dim: the embedder's dimension (chunks of another shape are dropped).
        flush_every: rows held in memory before they are written as a chunk.

    Attributes:
        meta: catalog fields per content hash, for every hash held (saved or pending).
        resumable: the hashes found on disk when the store was opened.
        has_labels: some held row has labels.
    """

    def __init__(self, folder: Path, dim: int, flush_every: int = FLUSH_EVERY) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.flush_every = flush_every
        self.meta: dict[str, dict[str, Any]] = {}
        self.has_labels = False
        self._count = 0
        self._pending: list[FeatureBatch] = []
        self._pending_rows = 0
        self._last = time.monotonic()
        if self.folder.is_dir():
            for f in sorted(self.folder.iterdir()):
                m = _CHUNK_NAME.fullmatch(f.name)
                if m is None or not self._load(f):
                    f.unlink(missing_ok=True)
                else:
                    self._count = max(self._count, int(m.group(1)))
        self.resumable = frozenset(self.meta)

    def __contains__(self, sha: str) -> bool:
        return sha in self.meta

    def _load(self, f: Path) -> bool:
        """Check one chunk and take its metadata; False when it is damaged."""
        try:
            with np.load(f, allow_pickle=False) as z:
                sha, meta, emb, hist = z["sha"], z["meta"], z["emb"], z["hist"]
                labelled = "top5" in z.files
                top5, prob5 = (z["top5"], z["prob5"]) if labelled else (None, None)
            k = len(sha)
            if (meta.shape != (k,) or emb.shape != (k, self.dim) or hist.shape != (k, HIST_DIM)
                    or not np.isfinite(emb).all() or not np.isfinite(hist).all()):
                return False
            if top5 is not None and (top5.shape != (k, LABEL_TOP) or prob5.shape != top5.shape
                                     or not np.isfinite(prob5).all()):
                return False
            decoded = [json.loads(str(m)) for m in meta]
        except Exception:  # BadZipFile, EOFError, KeyError, ValueError, OSError: cut short
            return False
        for s, m in zip(sha, decoded, strict=True):
            self.meta[str(s)] = m
        self.has_labels |= labelled
        return True

    def add(self, batch: FeatureBatch) -> None:
        """Hold ``batch``; write a chunk once enough rows are held (or time has passed)."""
        if not len(batch):
            return
        self._pending.append(batch)
        self._pending_rows += len(batch)
        for sha, m in zip(batch.shas, batch.meta, strict=True):
            self.meta[sha] = m
        self.has_labels |= batch.top5 is not None
        if (self._pending_rows >= self.flush_every
                or time.monotonic() - self._last > FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Write the held rows as one chunk (temporary name, fsync, rename)."""
        if not self._pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count += 1
        f = self.folder / f"chunk-{self._count:06d}.npz"
        tmp = self.folder / f".tmp-{f.name}"
        with open(tmp, "wb") as fh:
            np.savez(fh, **_arrays(self._pending))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f)
        self._pending, self._pending_rows = [], 0
        self._last = time.monotonic()

    def chunks(self) -> Iterator[FeatureBatch]:
        """Every saved chunk, in the order written (call :meth:`flush` first)."""
        if not self.folder.is_dir():
            return
        for f in sorted(self.folder.glob("chunk-*.npz")):
            with np.load(f, allow_pickle=False) as z:
                labelled = "top5" in z.files
                yield FeatureBatch([str(s) for s in z["sha"]], [json.loads(str(m)) for m in z["meta"]],
                                   z["emb"], z["hist"], z["top5"] if labelled else None,
                                   z["prob5"] if labelled else None)

    def discard(self) -> None:
        """Delete the work folder (and ``work/`` itself unless another build's is there)."""
        self._pending, self._pending_rows = [], 0
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()


def _arrays(batches: list[FeatureBatch]) -> dict[str, np.ndarray]:
    """The arrays of one chunk file; label arrays only when some batch has labels."""
    arrays = {"sha": np.array([s for b in batches for s in b.shas]),
              "meta": np.array([json.dumps(m) for b in batches for m in b.meta]),
              "emb": np.concatenate([b.embeddings for b in batches]).astype(np.float32),
              "hist": np.concatenate([b.histograms for b in batches]).astype(np.float32)}
    if any(b.top5 is not None for b in batches):
        arrays["top5"] = np.concatenate([
            np.tile(_UNKNOWN_TOP5, (len(b), 1)) if b.top5 is None else b.top5
            for b in batches]).astype(np.int16)
        arrays["prob5"] = np.concatenate([
            np.tile(_UNKNOWN_PROB5, (len(b), 1)) if b.prob5 is None else b.prob5
            for b in batches]).astype(np.float32)
    return arrays
