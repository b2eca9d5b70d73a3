"""Opening an index version: memory-mapped matrices, labels, float16 copy, PCA, checksums.

:func:`open_version` is what :meth:`imgrec.index.index.Index.open` runs on every open:
the structure of every file (shape, dtype, layout, length), the catalog's rows, and the
recorded checksums of the manifest, of the small files and of every file up to
:data:`HASHED_ON_OPEN` bytes (larger ones by size); the thorough check of every byte is
:func:`imgrec.index.verify.verify`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.errors import IndexFormatError
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.pca import PCAModel
from imgrec.index import format as F
from imgrec.index import integrity
from imgrec.index.half import HalfCopy

read_manifest = F.Manifest.read

#: Files up to this size are checked byte for byte on every open, whatever they hold (a few
#: milliseconds), so damage anywhere in a small index is refused, never answered from.
HASHED_ON_OPEN = 4 << 20


def open_matrix(path: Path, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """Memory-map one ``.npy`` file, checking shape, dtype, layout and file length.

    Raises:
        IndexFormatError: naming the file and what is wrong with it.
    """
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # EOFError, ValueError, OSError, UnpicklingError, ...
        raise IndexFormatError(f"{path} is damaged (truncated or not a .npy file: {exc})") from None
    if not isinstance(arr, np.memmap):
        raise IndexFormatError(f"{path} is not a plain .npy matrix")
    if arr.shape != shape or arr.dtype != np.dtype(dtype):
        raise IndexFormatError(f"{path} has shape {arr.shape} {arr.dtype}; the manifest says "
                               f"{shape} {np.dtype(dtype)}")
    if arr.ndim > 1 and not arr.flags.c_contiguous:
        raise IndexFormatError(f"{path} is stored in Fortran order; expected C order")
    size = os.stat(path).st_size
    want = arr.offset + arr.nbytes
    if size != want:
        raise IndexFormatError(f"{path} is {size} bytes, expected {want} (extra data appended)")
    return arr


def _optional_pair(paths: list[Path], what: str) -> bool:
    """Whether a pair of optional files is there; one without the other is damage."""
    present = [p.is_file() for p in paths]
    if all(present) or not any(present):
        return all(present)
    missing = paths[present.index(False)]
    raise IndexFormatError(f"{missing} is missing (its companion {what} exists)")


def open_labels(version_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Memory-map the optional label files (top-5 class ids and probabilities).

    Returns None when the version has neither file (built by an embedder without a
    classifier, or by an older imgrec).

    Raises:
        IndexFormatError: only one of the two files exists, or one has the wrong shape,
            dtype or length.
    """
    paths = [version_dir / f for f in F.LABEL_FILES]
    if not _optional_pair(paths, "label file"):
        return None
    shape = (count, F.LABEL_TOP)
    return open_matrix(paths[0], shape, np.int16), open_matrix(paths[1], shape, np.float32)


def open_half(version_dir: Path, count: int, dim: int) -> HalfCopy | None:
    """Memory-map the float16 copy of the embeddings and its error bounds.

    The bounds (8 bytes per row) are read in full: they can never be negative or
    non-finite, and the first search pass trusts them.

    Returns None when the version has neither file (written by an older imgrec: searches
    then scan the float32 rows).

    Raises:
        IndexFormatError: only one of the two files exists, one has the wrong shape,
            dtype or length, or a bound is negative or not finite.
    """
    paths = [version_dir / F.HALF_DATA, version_dir / F.HALF_ERROR]
    if not _optional_pair(paths, "float16 file"):
        return None
    data = open_matrix(paths[0], (count, dim), np.float16)
    errors = open_matrix(paths[1], (count, 2), np.float32)
    for s in range(0, count, 1 << 18):
        block = np.asarray(errors[s:s + (1 << 18)])
        bad = ~(np.isfinite(block) & (block >= 0)).all(1)
        if bad.any():
            raise IndexFormatError(f"{paths[1]} is damaged: negative or non-finite error "
                                   f"bounds (first: row {s + int(np.flatnonzero(bad)[0])})")
    return HalfCopy(data, errors)


def load_pca(path: Path, components: int) -> PCAModel:
    """Load ``pca.npz`` (no pickles) and check its shapes against the manifest.

    Raises:
        IndexFormatError: naming the file and what is wrong with it.
    """
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in F.PCA_KEYS}
    except Exception as exc:  # BadZipFile, KeyError, ValueError, OSError, EOFError, ...
        raise IndexFormatError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    want = {"mean": (HIST_DIM,), "components": (components, HIST_DIM),
            "explained_variance": (components,), "explained_variance_ratio": (components,)}
    for k, shape in want.items():
        a = arrays[k]
        if a.shape != shape or a.dtype.kind != "f":
            raise IndexFormatError(f"{path}: {k} has shape {a.shape} {a.dtype}, expected "
                                   f"{shape} float")
        if not np.isfinite(a).all():
            raise IndexFormatError(f"{path}: {k} holds NaN or infinite values")
    return PCAModel(**arrays)


def checksum_problems(version_dir: Path, manifest: F.Manifest,
                      thorough: bool) -> list[tuple[str, str]]:
    """(file name, problem) for each file that disagrees with its recorded checksum.

    Without checksums (a version written before they existed) there is nothing to
    compare. Otherwise the manifest's own digest, every listed file's size and presence,
    and the digests of the small files and of every file up to :data:`HASHED_ON_OPEN`
    bytes (all files when ``thorough``) are compared.
    """
    if not manifest.checksums:
        return []
    out = []
    if manifest.checksums.get("manifest") != manifest.digest():
        out.append((F.MANIFEST, f"{version_dir / F.MANIFEST} was changed after the index was "
                                "written (its checksum no longer matches its content)"))
    files = manifest.checksums["files"]
    for name in sorted(files):
        size, digest = manifest.recorded(name)  # type: ignore[misc]
        path = version_dir / name
        try:
            got = path.stat().st_size
        except OSError:
            out.append((name, f"{path} is missing (the manifest lists it)"))
            continue
        if got != size:
            out.append((name, f"{path} is {got} bytes; the manifest records {size}"))
        elif ((thorough or name in F.SMALL_FILES or size <= HASHED_ON_OPEN)
              and F.file_checksum(path) != digest):
            out.append((name, f"{path} is damaged (its checksum differs from the one "
                              "recorded when the index was written)"))
    return out


@dataclass(frozen=True)
class Opened:
    """The memory-mapped files of one version, checked by :func:`open_version`."""

    matrices: dict[str, np.ndarray]
    labels: tuple[np.ndarray, np.ndarray] | None
    half: HalfCopy | None
    pca: PCAModel


def open_version(version_dir: Path, manifest: F.Manifest) -> Opened:
    """Open and check every file of a version (the checks run on every open).

    Raises:
        IndexFormatError: naming the first file found damaged and what is wrong with it.
    """
    matrices = {name: open_matrix(version_dir / name, shape)
                for name, shape in manifest.shapes().items()}
    labels = open_labels(version_dir, manifest.count)
    copy = open_half(version_dir, manifest.count, manifest.embedding_dim)
    integrity.check(version_dir / F.CATALOG, manifest.count)
    pca = load_pca(version_dir / F.PCA, manifest.pca_components)
    problems = checksum_problems(version_dir, manifest, thorough=False)
    if problems:
        raise IndexFormatError(problems[0][1])
    return Opened(matrices, labels, copy, pca)
