"""Writing index versions: a temporary folder, disk space reserved, fsync, atomic ``CURRENT``.

A version is written next to the published one (see :mod:`imgrec.index.format` for the
layout) and published by renaming it and replacing ``CURRENT``; a crash or a full disk
leaves the published version untouched. The space of every memory-mapped file is
reserved (``posix_fallocate``) before anything is written through the map, so a full
disk is an :class:`~imgrec.errors.IndexWriteError`, never a bus error.

Readers hold on to the version they opened; a build never touches a published version.
An open :class:`~imgrec.index.index.Index` holds a shared ``flock`` on its version's
``manifest.json`` (see :func:`hold_version`), and :func:`prune` never deletes a version
that is held, so a reader keeps working until it reopens, however many builds happen.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.errors import IndexFormatError, IndexWriteError
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.pca import PCAModel
from imgrec.index import catalog, half
from imgrec.index import format as F
from imgrec.index.format import CURRENT, FORMAT_VERSION, LABEL_FILES, LABEL_TOP, VERSION_NAME

__all__ = ["CURRENT", "FORMAT_VERSION", "KEEP_VERSIONS", "LABEL_FILES", "LABEL_TOP",
           "VersionWriter", "current_version", "discard_unpublished", "hold_version",
           "prune", "remove_stale_temporaries", "switch_to"]

KEEP_VERSIONS = 2  # the published one and the one before (readers may still use it)
CHUNK = 32768


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
        fd = os.open(Path(version_dir) / F.MANIFEST, os.O_RDONLY)
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


def _write_error(path: Path, exc: BaseException) -> IndexWriteError:
    cause = getattr(exc, "strerror", None) or str(exc)
    return IndexWriteError(f"cannot write {path}: {cause}; the published index is unchanged")


def reserve(path: Path, nbytes: int) -> None:
    """Allocate ``nbytes`` of disk for ``path`` now, so writes through a map cannot fail.

    Raises:
        IndexWriteError: the disk has no room (or the file cannot be opened).
    """
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, max(1, nbytes))
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS):
            return  # no fallocate on this file system (glibc emulates it on most)
        raise IndexWriteError(f"cannot write {path}: {exc.strerror or exc} (it needs "
                              f"{nbytes:,} bytes); the published index is unchanged") from None


def mapped(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` file opened as a writable memory map, its disk space reserved."""
    try:
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    except OSError as exc:
        raise _write_error(path, exc) from None
    reserve(path, arr.offset + arr.nbytes)
    return arr


class VersionWriter:
    """Writes a new index version next to the published one.

    Fill :attr:`embeddings` and :attr:`histograms` (memory-mapped ``.npy`` files), then
    call :meth:`publish` with a PCA fitted on the histograms; :meth:`abort` (or a crash)
    leaves the published index untouched.

    Raises:
        IndexWriteError: the folder cannot be created or the disk has no room.
    """

    def __init__(self, index_dir: str | Path, n: int, embedding_dim: int) -> None:
        self.index_dir = Path(index_dir)
        self.name = f"v-{_version_stamp()}"
        self.tmp = self.index_dir / f"{F.TMP_PREFIX}{self.name}"
        self.n, self.dim = n, embedding_dim
        self._top5: np.ndarray | None = None
        self._prob5: np.ndarray | None = None
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir()
        except OSError as exc:
            raise _write_error(self.tmp, exc) from None
        try:
            self.embeddings = mapped(self.tmp / F.EMBEDDINGS, np.float32, (n, embedding_dim))
            self.histograms = mapped(self.tmp / F.HISTOGRAMS, np.float32, (n, HIST_DIM))
        except BaseException:
            self.abort()
            raise

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """The optional label matrices (memory-mapped), created on first call.

        ``(n, 5)`` int16 ImageNet class ids, best first, and their float32 probabilities;
        rows never filled stay unknown (id -1, probability 0). A version written without
        calling this has no label files.
        """
        if self._top5 is None or self._prob5 is None:
            shape = (self.n, LABEL_TOP)
            self._top5 = mapped(self.tmp / LABEL_FILES[0], np.int16, shape)
            self._top5[:] = -1
            self._prob5 = mapped(self.tmp / LABEL_FILES[1], np.float32, shape)
        return self._top5, self._prob5

    def publish(self, entries: list[catalog.Entry], fields: dict[str, Any],
                pca: PCAModel, *, switch: bool = True) -> Path:
        """Derive norms, the float16 copy and the projections, write catalog and manifest
        (with the checksum of every file), then switch ``CURRENT``.

        Args:
            entries: the catalog rows (indexed ones carry their matrix row).
            fields: manifest fields of the caller (``model``, ``gallery_root``, ...).
            pca: the PCA fitted on :attr:`histograms` (see :func:`imgrec.features.pca.fit_pca`).
            switch: False leaves ``CURRENT`` as it is: the version is complete in its
                folder, and :func:`switch_to` publishes it later (a sharded index commits
                the new versions of all its shards at once, then switches each).

        Raises:
            IndexWriteError: the disk filled up or a file could not be written.
        """
        if pca.components.shape[1:] != (HIST_DIM,):
            raise ValueError(f"the PCA must act on {HIST_DIM}-bin histograms")
        self._derive(pca)
        try:
            catalog.write(self.tmp / F.CATALOG, entries)
        except (OSError, sqlite3.Error) as exc:
            raise _write_error(self.tmp / F.CATALOG, exc) from None
        manifest = F.Manifest.from_json({
            "format_version": FORMAT_VERSION, **fields, "embedding_dim": self.dim,
            "histogram_dim": HIST_DIM, "pca_components": pca.n_components, "count": self.n,
            "skipped": sum(1 for e in entries if e.row is None), "version": self.name,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, self.tmp / F.MANIFEST)
        manifest = F.with_checksums(manifest, self.tmp)
        try:
            (self.tmp / F.MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
            for f in self.tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(self.tmp)
            final = self.index_dir / self.name
            os.rename(self.tmp, final)
        except OSError as exc:
            raise _write_error(self.tmp, exc) from None
        if switch:
            switch_to(self.index_dir, self.name)
        return final

    def _derive(self, pca: PCAModel) -> None:
        """Write the files computed from the embeddings and histograms, space reserved first."""
        emb, hist, n = self.embeddings, self.histograms, self.n
        norms = mapped(self.tmp / F.NORMS, np.float32, (n,))
        emb16 = mapped(self.tmp / F.HALF_DATA, np.float16, (n, self.dim))
        err16 = mapped(self.tmp / F.HALF_ERROR, np.float32, (n, 2))
        proj = mapped(self.tmp / F.PCA_HISTOGRAMS, np.float32, (n, pca.n_components))
        for s in range(0, n, CHUNK):
            block = np.asarray(emb[s:s + CHUNK])
            norms[s:s + CHUNK] = np.linalg.norm(block.astype(np.float64), axis=1)
            emb16[s:s + CHUNK], err16[s:s + CHUNK] = half.encode(block)
            proj[s:s + CHUNK] = pca.transform(hist[s:s + CHUNK])
        try:
            pca.save(self.tmp / F.PCA)
            for arr in (emb, hist, norms, emb16, err16, proj, self._top5, self._prob5):
                if arr is not None:
                    arr.flush()
        except OSError as exc:
            raise _write_error(self.tmp, exc) from None
        del norms, proj, emb16, err16  # close the memory maps before the rename
        self.embeddings = self.histograms = None  # type: ignore[assignment]
        self._top5 = self._prob5 = None

    def abort(self) -> None:
        self.embeddings = self.histograms = None  # type: ignore[assignment]
        self._top5 = self._prob5 = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def switch_to(index_dir: Path, name: str) -> None:
    """Make the complete version ``name`` of ``index_dir`` the published one (atomic
    ``CURRENT`` replace), then prune old versions.

    Raises:
        IndexWriteError: ``CURRENT`` could not be written.
    """
    index_dir = Path(index_dir)
    pointer_tmp = index_dir / f".{CURRENT}.tmp"
    try:
        with open(pointer_tmp, "w") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer_tmp, index_dir / CURRENT)
        _fsync_dir(index_dir)
    except OSError as exc:
        pointer_tmp.unlink(missing_ok=True)
        raise _write_error(index_dir / CURRENT, exc) from None
    prune(index_dir)


def discard_unpublished(index_dir: Path, keep: str | None) -> list[Path]:
    """Delete complete versions newer than the published one that were never switched to
    (left by an interrupted sharded sync), except ``keep``. Returns the folders deleted."""
    cur = current_version(index_dir)
    if cur is None:
        return []
    out = [p for p in sorted(Path(index_dir).glob("v-*"))
           if p.is_dir() and p.name > cur.name and p.name != keep]
    for p in out:
        shutil.rmtree(p, ignore_errors=True)
    return out


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
            fd = os.open(p / F.MANIFEST, os.O_RDONLY)
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
    for p in Path(index_dir).glob(f"{F.TMP_PREFIX}v-*"):
        shutil.rmtree(p, ignore_errors=True)
    (Path(index_dir) / f".{CURRENT}.tmp").unlink(missing_ok=True)
