"""The thorough check of an index version behind ``imgrec info --verify``.

:func:`verify` reads every byte: the structure checks :mod:`imgrec.index.reader` runs on
every open, then every value of every matrix, the PCA against the stored projections,
SQLite's full integrity check of the catalog, and the recorded checksum of every file.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from imgrec.errors import IndexFormatError
from imgrec.features.pca import PCAModel
from imgrec.index import format as F
from imgrec.index import half, integrity
from imgrec.index.format import LABEL_FILES, Manifest
from imgrec.index.reader import (
    checksum_problems,
    load_pca,
    open_half,
    open_labels,
    open_matrix,
    read_manifest,
)
from imgrec.index.writer import current_version

CHUNK = 32768
#: Embedding rows must have unit length (or be all zero) within this tolerance.
NORM_TOL = 1e-3


def verify(index_dir: str | os.PathLike) -> list[str]:
    """Check an index thoroughly; returns the problems found (empty when all is well).

    Checks that ``CURRENT`` names an existing version; the manifest parses, has this
    format version and its fields; each matrix opens without pickles with the manifest's
    shape and dtype and holds no NaN/inf; embedding rows have unit length (or are zero)
    and agree with ``embedding_norms.npy``; histograms are non-negative; the PCA file has
    the right shapes and reproduces the stored projections; the catalog passes SQLite's
    integrity check, its indexed rows are exactly ``0..n-1``, every skipped file has a
    reason, and no path leaves the gallery; the optional label files, when present, both
    exist with shape (n, 5) and hold valid top-5 labels; the float16 copy of the
    embeddings, when present, is their rounding and its stored error bounds hold.

    Example:
        >>> problems = verify("data/index")
        >>> problems
        []
    """
    index_dir = Path(index_dir)
    try:
        version = current_version(index_dir)
    except IndexFormatError as exc:
        return [str(exc)]
    if version is None:
        return [f"no index at {index_dir} ({index_dir / 'CURRENT'} is missing)"]
    if not version.is_dir():
        return [f"{index_dir / 'CURRENT'} names {version.name}, but {version} does not exist"]
    try:
        manifest = read_manifest(version)
    except IndexFormatError as exc:
        return [str(exc)]
    problems: list[str] = []
    if manifest.version != version.name:
        problems.append(f"{version / F.MANIFEST} names version {manifest.version!r}, "
                        f"but lies in {version.name}")
    arrays: dict[str, np.ndarray] = {}
    for name, shape in manifest.shapes().items():
        try:
            arrays[name] = open_matrix(version / name, shape)
        except IndexFormatError as exc:
            problems.append(str(exc))
    for name, arr in arrays.items():
        problems += _matrix_problems(version / name, arr)
    if F.EMBEDDINGS in arrays and F.NORMS in arrays:
        problems += _norm_problems(version, arrays[F.EMBEDDINGS],
                                   arrays[F.NORMS])
    try:
        pca = load_pca(version / F.PCA, manifest.pca_components)
    except IndexFormatError as exc:
        problems.append(str(exc))
    else:
        if F.HISTOGRAMS in arrays and F.PCA_HISTOGRAMS in arrays:
            problems += _projection_problems(version, pca, arrays[F.HISTOGRAMS],
                                             arrays[F.PCA_HISTOGRAMS])
    try:
        labels = open_labels(version, manifest.count)
    except IndexFormatError as exc:
        problems.append(str(exc))
    else:
        if labels is not None:
            problems += _label_problems(version, *labels)
    try:
        copy = open_half(version, manifest.count, manifest.embedding_dim)
    except IndexFormatError as exc:
        problems.append(str(exc))
    else:
        if copy is not None and F.EMBEDDINGS in arrays:
            problems += _half_problems(version, copy, arrays[F.EMBEDDINGS])
    problems += _catalog_problems(version / F.CATALOG, manifest)
    # a checksum names what the checks above cannot see; one problem per file is enough
    named = " ".join(problems)
    problems += [p for name, p in checksum_problems(version, manifest, thorough=True)
                 if str(version / name) not in named]
    return problems


def _label_problems(version: Path, top5: np.ndarray, prob5: np.ndarray) -> list[str]:
    """Label rows must hold distinct class ids >= 0 with probabilities in [0, 1], best
    first, summing to at most 1; unknown entries are id -1 with probability 0."""
    path = version / LABEL_FILES[0]

    def ok(s: int, e: int) -> np.ndarray:
        t = np.asarray(top5[s:e]).astype(np.int64)
        p = np.asarray(prob5[s:e]).astype(np.float64)
        known = t >= 0
        good = np.isfinite(p).all(1) & (t >= -1).all(1)
        good &= ((p >= 0) & (p <= 1 + 1e-6)).all(1) & (p.sum(1) <= 1 + 1e-3)
        good &= (np.where(known, 0.0, p) == 0).all(1)
        good &= (np.diff(p, axis=1) <= 1e-6).all(1)
        srt = np.sort(np.where(known, t, -np.arange(1, t.shape[1] + 1)), axis=1)
        good &= (np.diff(srt, axis=1) != 0).all(1)
        return good

    bad, first = 0, None
    for s in range(0, len(top5), CHUNK):
        good = ok(s, s + CHUNK)
        if not good.all():
            first = s + int(np.flatnonzero(~good)[0]) if first is None else first
            bad += int((~good).sum())
    if bad:
        return [f"{path} and {version / LABEL_FILES[1]}: {_rows(bad)} with invalid labels (class ids "
                f"below -1 or repeated, probabilities outside [0, 1], not best first, or "
                f"summing over 1) (first: row {first})"]
    return []


def _half_problems(version: Path, copy: half.HalfCopy, emb: np.ndarray) -> list[str]:
    """The float16 rows must be the rounding of the float32 rows, within the stored
    bounds: the first search pass trusts both."""
    bad, first = 0, None
    for s in range(0, len(emb), CHUNK):
        block = np.asarray(emb[s:s + CHUNK])
        if not np.isfinite(block).all():
            return []  # already reported
        ok = half.check(copy.data[s:s + CHUNK], copy.errors[s:s + CHUNK], block)
        if not ok.all():
            first = s + int(np.flatnonzero(~ok)[0]) if first is None else first
            bad += int((~ok).sum())
    if bad:
        return [f"{version / F.HALF_DATA} and {version / F.HALF_ERROR} disagree with "
                f"embeddings.npy in {_rows(bad)} (first: row {first}): rebuild with --full"]
    return []


def _bad_rows(path: Path, arr: np.ndarray, test: Any, what: str) -> list[str]:
    """Rows of ``arr`` (chunked, memory-mapped) where ``test(block)`` is False."""
    bad, first = 0, None
    for s in range(0, len(arr), CHUNK):
        ok = test(np.asarray(arr[s:s + CHUNK]))
        if not ok.all():
            n_bad = int((~ok).sum())
            if first is None:
                first = s + int(np.flatnonzero(~ok)[0])
            bad += n_bad
    if bad:
        return [f"{path}: {_rows(bad)} {what} (first: row {first})"]
    return []


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


def _finite(block: np.ndarray) -> np.ndarray:
    return np.isfinite(block).all(axis=1) if block.ndim > 1 else np.isfinite(block)


def _matrix_problems(path: Path, arr: np.ndarray) -> list[str]:
    problems = _bad_rows(path, arr, _finite, "with NaN or infinite values")
    if problems:
        return problems
    if path.name == F.EMBEDDINGS:
        def unit(block: np.ndarray) -> np.ndarray:
            norms = np.linalg.norm(block.astype(np.float64), axis=1)
            return (np.abs(norms - 1.0) <= NORM_TOL) | (norms == 0.0)
        return _bad_rows(path, arr, unit, "neither unit-length nor zero")
    if path.name == F.HISTOGRAMS:
        return _bad_rows(path, arr, lambda b: (b >= 0).all(axis=1), "with negative values")
    return []


def _norm_problems(version: Path, emb: np.ndarray, norms: np.ndarray) -> list[str]:
    bad, first = 0, None
    for s in range(0, len(emb), CHUNK):
        block = np.asarray(emb[s:s + CHUNK], dtype=np.float64)
        if not np.isfinite(block).all():
            return []  # already reported
        diff = np.abs(np.linalg.norm(block, axis=1) - np.asarray(norms[s:s + CHUNK]))
        wrong = ~(diff <= NORM_TOL)
        if wrong.any():
            first = s + int(np.flatnonzero(wrong)[0]) if first is None else first
            bad += int(wrong.sum())
    if bad:
        return [f"{version / F.NORMS}: stored norms disagree with "
                f"embeddings.npy in {_rows(bad)} (first: row {first})"]
    return []


def _projection_problems(version: Path, pca: PCAModel, hist: np.ndarray,
                         proj: np.ndarray) -> list[str]:
    """Spot-check that pca.npz maps stored histograms onto the stored projections."""
    n = len(hist)
    if n == 0:
        return []
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64))
    h, p = np.asarray(hist[rows]), np.asarray(proj[rows])
    if not (np.isfinite(h).all() and np.isfinite(p).all()):
        return []  # already reported
    got = pca.transform(h)
    if not np.allclose(got, p, rtol=1e-3, atol=1e-4):
        return [f"{version / F.PCA} does not reproduce pca_histograms.npy from "
                f"histograms.npy (the files come from different builds)"]
    return []


def _catalog_problems(path: Path, manifest: Manifest) -> list[str]:
    if not path.is_file():
        return [f"{path} is missing"]
    problem = integrity.header_problem(path)
    if problem:
        return [problem]
    n = manifest.count
    try:
        got = integrity.audit(path)
    except IndexFormatError as exc:
        return [str(exc)]
    if got.integrity != ["ok"]:
        return [f"{path} fails SQLite's integrity check: "
                f"{' '.join('; '.join(got.integrity[:3]).split())[:300]}"]
    unsafe = [p for p in got.paths if not _safe_path(p)]
    problems = []
    want = (n, n, 0, n - 1) if n else (0, 0, None, None)
    if (got.rows, got.distinct, got.lo, got.hi) != want:
        problems.append(f"{path}: indexed row numbers are not exactly 0..{n - 1} "
                        f"({got.rows} rows, {got.distinct} distinct, from {got.lo} to "
                        f"{got.hi}; the manifest says {n})")
    if got.skipped != manifest.skipped:
        problems.append(f"{path} lists {got.skipped} skipped files; the manifest says "
                        f"{manifest.skipped}")
    if got.no_reason:
        problems.append(f"{path}: {got.no_reason} skipped files have no reason recorded")
    if got.with_error:
        problems.append(f"{path}: {got.with_error} indexed files also carry an error")
    if unsafe:
        problems.append(f"{path}: {len(unsafe)} paths are absolute or leave the gallery "
                        f"(first: {unsafe[0]!r})")
    return problems


def _safe_path(p: object) -> bool:
    if not isinstance(p, str) or not p or "\0" in p:
        return False
    pp = PurePosixPath(p)
    return not pp.is_absolute() and ".." not in pp.parts
