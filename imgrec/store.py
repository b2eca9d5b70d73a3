"""On-disk index versions: write one into a temporary folder, then publish it atomically.

Layout of an index directory::

    CURRENT                  name of the published version (replaced atomically)
    v-<stamp>/manifest.json  format version, backbone, dimensions, gallery root, counts
    v-<stamp>/catalog.sqlite one row per gallery file (see catalog.py)
    v-<stamp>/embeddings.npy (n, d) float32, unit rows      embedding_norms.npy (n,)
    v-<stamp>/histograms.npy (n, 768) float32               pca.npz, pca_histograms.npy
    build.lock               held while a build runs
    work/                    batches of a running build (lets a killed build resume)

Readers hold on to the version they opened; a build never touches a published version.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import catalog
from .features.color import DIM as HIST_DIM
from .reduce import DEFAULT_COMPONENTS, fit_pca

FORMAT_VERSION = 1
CURRENT = "CURRENT"
KEEP_VERSIONS = 2  # the published one and the one before (readers may still use it)
CHUNK = 32768


def current_version(index_dir: Path) -> Path | None:
    """The published version folder, or None when there is none."""
    pointer = index_dir / CURRENT
    try:
        name = pointer.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return index_dir / name if name else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VersionWriter:
    """Writes a new index version next to the published one.

    Fill :attr:`embeddings` and :attr:`histograms` (memory-mapped ``.npy`` files), then
    call :meth:`publish`; :meth:`abort` (or a crash) leaves the published index untouched.
    """

    def __init__(self, index_dir: str | Path, n: int, embedding_dim: int) -> None:
        self.index_dir = Path(index_dir)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 10**9:09d}"
        self.name = f"v-{stamp}"
        self.tmp = self.index_dir / f".tmp-{self.name}"
        self.tmp.mkdir()
        self.n, self.dim = n, embedding_dim
        self.embeddings = np.lib.format.open_memmap(
            self.tmp / "embeddings.npy", mode="w+", dtype=np.float32, shape=(n, embedding_dim))
        self.histograms = np.lib.format.open_memmap(
            self.tmp / "histograms.npy", mode="w+", dtype=np.float32, shape=(n, HIST_DIM))

    def publish(self, entries: list[catalog.Entry], manifest: dict[str, Any],
                pca_components: int = DEFAULT_COMPONENTS) -> Path:
        """Derive norms and PCA, write catalog and manifest, then switch ``CURRENT``."""
        emb, hist = self.embeddings, self.histograms
        norms = np.lib.format.open_memmap(self.tmp / "embedding_norms.npy", mode="w+",
                                          dtype=np.float32, shape=(self.n,))
        for s in range(0, self.n, CHUNK):
            norms[s:s + CHUNK] = np.linalg.norm(np.asarray(emb[s:s + CHUNK], np.float64), axis=1)
        pca = fit_pca(hist, pca_components)
        pca.save(self.tmp / "pca.npz")
        proj = np.lib.format.open_memmap(self.tmp / "pca_histograms.npy", mode="w+",
                                         dtype=np.float32, shape=(self.n, pca.n_components))
        for s in range(0, self.n, CHUNK):
            proj[s:s + CHUNK] = pca.transform(hist[s:s + CHUNK])
        for arr in (emb, hist, norms, proj):
            arr.flush()
        del arr, norms, proj
        self.embeddings = self.histograms = None  # type: ignore[assignment]
        catalog.write(self.tmp / "catalog.sqlite", entries)
        skipped = sum(1 for e in entries if e.row is None)
        manifest = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "embedding_dim": self.dim,
            "histogram_dim": HIST_DIM,
            "pca_components": pca.n_components,
            "count": self.n,
            "skipped": skipped,
            "version": self.name,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for f in self.tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = self.index_dir / self.name
        os.rename(self.tmp, final)
        pointer_tmp = self.index_dir / f".{CURRENT}.tmp"
        with open(pointer_tmp, "w") as fh:
            fh.write(self.name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer_tmp, self.index_dir / CURRENT)
        _fsync_dir(self.index_dir)
        prune(self.index_dir)
        return final

    def abort(self) -> None:
        self.embeddings = self.histograms = None  # type: ignore[assignment]
        shutil.rmtree(self.tmp, ignore_errors=True)


def prune(index_dir: Path, keep: int = KEEP_VERSIONS) -> None:
    """Delete old versions beyond ``keep`` (open memory maps of them stay valid on POSIX)."""
    cur = current_version(index_dir)
    versions = sorted(p for p in index_dir.glob("v-*") if p.is_dir())
    old = [p for p in versions if p != cur][: max(0, len(versions) - keep)]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


def remove_stale_temporaries(index_dir: Path) -> None:
    """Drop half-written versions left by a crashed build (call with the build lock held)."""
    for p in index_dir.glob(".tmp-v-*"):
        shutil.rmtree(p, ignore_errors=True)
