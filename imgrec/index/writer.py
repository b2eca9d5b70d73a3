"""On-disk index versions: write one into a temporary folder, then publish it atomically.

Layout of an index directory::

    CURRENT                  name of the published version (replaced atomically)
    v-<stamp>/manifest.json  format version, backbone, dimensions, gallery root, counts
    v-<stamp>/catalog.sqlite one row per gallery file (see catalog.py)
    v-<stamp>/embeddings.npy (n, d) float32, unit rows      embedding_norms.npy (n,)
    v-<stamp>/embeddings_f16.npy (n, d) float16 copy, embeddings_f16_error.npy (n, 2)
                             its per-row rounding error bounds (see half.py)
    v-<stamp>/histograms.npy (n, 768) float32               pca.npz, pca_histograms.npy
    v-<stamp>/labels_top5.npy  (n, 5) int16 ImageNet class ids, -1 = unknown   (optional)
    v-<stamp>/labels_prob5.npy (n, 5) float32 their probabilities, 0 = unknown (optional)
    build.lock               held while a build runs
    work/                    batches of a running build (lets a killed build resume)

Readers hold on to the version they opened; a build never touches a published version.
An open :class:`~imgrec.index.index.Index` holds a shared ``flock`` on its version's
``manifest.json`` (see :func:`hold_version`), and :func:`prune` never deletes a version
that is held, so a reader keeps working until it reopens, however many builds happen.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.errors import IndexFormatError
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.pca import DEFAULT_COMPONENTS, fit_pca
from imgrec.index import catalog, half

FORMAT_VERSION = 1
CURRENT = "CURRENT"
KEEP_VERSIONS = 2  # the published one and the one before (readers may still use it)
CHUNK = 32768
VERSION_NAME = re.compile(r"v-[0-9A-Za-z_.-]{1,100}")
#: Optional per-image ImageNet labels: the backbone's top-5 class ids and probabilities.
LABEL_TOP = 5
LABEL_FILES = ("labels_top5.npy", "labels_prob5.npy")


def current_version(index_dir: Path) -> Path | None:
    """The published version folder, or None when there is none.

    Raises:
        IndexFormatError: ``CURRENT`` exists but does not name a version of this index.
    """
    pointer = Path(index_dir) / CURRENT
    try:
        raw = pointer.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise IndexFormatError(f"{pointer} cannot be read: {exc.strerror or exc}") from None
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        name = None
    if not name or not VERSION_NAME.fullmatch(name) or ".." in name:
        raise IndexFormatError(f"{pointer} is damaged: it should name a v-* version folder, "
                               f"found {raw[:60]!r}")
    return Path(index_dir) / name


def hold_version(version_dir: Path) -> int | None:
    """Take a shared lock marking ``version_dir`` as in use; returns the fd to close later.

    Returns None when the version is being deleted by :func:`prune` (or has no manifest).
    """
    try:
        fd = os.open(Path(version_dir) / "manifest.json", os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        pass  # a file system without flock: readable, but unprotected from prune
    return fd


def _version_stamp() -> str:
    ns = time.time_ns()  # one clock reading, so names sort in publication order
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 10**9)) + f"-{ns % 10**9:09d}"


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
        self.name = f"v-{_version_stamp()}"
        self.tmp = self.index_dir / f".tmp-{self.name}"
        self.tmp.mkdir()
        self.n, self.dim = n, embedding_dim
        self.embeddings = np.lib.format.open_memmap(
            self.tmp / "embeddings.npy", mode="w+", dtype=np.float32, shape=(n, embedding_dim))
        self.histograms = np.lib.format.open_memmap(
            self.tmp / "histograms.npy", mode="w+", dtype=np.float32, shape=(n, HIST_DIM))
        self._top5: np.ndarray | None = None
        self._prob5: np.ndarray | None = None

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """The optional label matrices (memory-mapped), created on first call.

        ``(n, 5)`` int16 ImageNet class ids, best first, and their float32 probabilities;
        rows never filled stay unknown (id -1, probability 0). A version written without
        calling this has no label files.
        """
        if self._top5 is None or self._prob5 is None:
            shape = (self.n, LABEL_TOP)
            self._top5 = np.lib.format.open_memmap(self.tmp / LABEL_FILES[0], mode="w+",
                                                   dtype=np.int16, shape=shape)
            self._top5[:] = -1
            self._prob5 = np.lib.format.open_memmap(self.tmp / LABEL_FILES[1], mode="w+",
                                                    dtype=np.float32, shape=shape)
        return self._top5, self._prob5

    def publish(self, entries: list[catalog.Entry], manifest: dict[str, Any],
                pca_components: int = DEFAULT_COMPONENTS) -> Path:
        """Derive norms and PCA, write catalog and manifest, then switch ``CURRENT``."""
        emb, hist = self.embeddings, self.histograms
        norms = np.lib.format.open_memmap(self.tmp / "embedding_norms.npy", mode="w+",
                                          dtype=np.float32, shape=(self.n,))
        emb16 = np.lib.format.open_memmap(self.tmp / half.DATA_FILE, mode="w+",
                                          dtype=np.float16, shape=(self.n, self.dim))
        err16 = np.lib.format.open_memmap(self.tmp / half.ERROR_FILE, mode="w+",
                                          dtype=np.float32, shape=(self.n, 2))
        for s in range(0, self.n, CHUNK):
            block = np.asarray(emb[s:s + CHUNK])
            norms[s:s + CHUNK] = np.linalg.norm(block.astype(np.float64), axis=1)
            emb16[s:s + CHUNK], err16[s:s + CHUNK] = half.encode(block)
        pca = fit_pca(hist, pca_components)
        pca.save(self.tmp / "pca.npz")
        proj = np.lib.format.open_memmap(self.tmp / "pca_histograms.npy", mode="w+",
                                         dtype=np.float32, shape=(self.n, pca.n_components))
        for s in range(0, self.n, CHUNK):
            proj[s:s + CHUNK] = pca.transform(hist[s:s + CHUNK])
        for arr in (emb, hist, norms, emb16, err16, proj, self._top5, self._prob5):
            if arr is not None:
                arr.flush()
        del norms, proj, emb16, err16  # close the memory maps before the rename
        self.embeddings = self.histograms = None  # type: ignore[assignment]
        self._top5 = self._prob5 = None
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
        _fsync_dir(self.tmp)
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
        self._top5 = self._prob5 = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def prune(index_dir: Path, keep: int = KEEP_VERSIONS) -> list[Path]:
    """Delete old versions beyond the newest ``keep``, except any an open reader holds.

    A held version (see :func:`hold_version`) is kept and deleted by a later prune once
    its readers are gone. Returns the folders deleted.
    """
    cur = current_version(index_dir)
    versions = sorted(p for p in Path(index_dir).glob("v-*") if p.is_dir())
    old = [p for p in versions if p != cur][: max(0, len(versions) - keep)]
    deleted = []
    for p in old:
        try:
            fd = os.open(p / "manifest.json", os.O_RDONLY)
        except OSError:  # no manifest: never readable, nobody can hold it
            fd = None
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a reader still uses it
                except OSError:
                    pass  # no flock on this file system: prune as before
            shutil.rmtree(p, ignore_errors=True)
            deleted.append(p)
        finally:
            if fd is not None:
                os.close(fd)
    return deleted


def remove_stale_temporaries(index_dir: Path) -> None:
    """Drop half-written versions left by a crashed build (call with the build lock held)."""
    for p in Path(index_dir).glob(".tmp-v-*"):
        shutil.rmtree(p, ignore_errors=True)
    (Path(index_dir) / f".{CURRENT}.tmp").unlink(missing_ok=True)
