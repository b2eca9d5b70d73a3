"""Integrity checks of an index directory: manifest, matrices, catalog and PCA agree.

:func:`verify` is the thorough check behind ``imgrec info --verify`` (it reads every
byte); the ``check_*`` helpers are the cheap subset :meth:`imgrec.index.index.Index.open` runs
on every open, so a damaged or foreign index is refused with a clear message.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from imgrec.errors import IndexFormatError
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.pca import PCAModel
from imgrec.index import catalog, half
from imgrec.index.writer import FORMAT_VERSION, LABEL_FILES, LABEL_TOP, current_version

CHUNK = 32768
#: Embedding rows must have unit length (or be all zero) within this tolerance.
NORM_TOL = 1e-3
#: manifest key -> required type
MANIFEST_KEYS: dict[str, type] = {
    "format_version": int, "model": str, "gallery_root": str, "embedding_dim": int,
    "histogram_dim": int, "pca_components": int, "count": int, "skipped": int, "version": str,
}
PCA_KEYS = ("mean", "components", "explained_variance", "explained_variance_ratio")


def read_manifest(version_dir: Path) -> dict[str, Any]:
    """The parsed, checked ``manifest.json`` of a version folder.

    Raises:
        IndexFormatError: missing, unparsable, another format version, or fields missing.
    """
    path = version_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise IndexFormatError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path} is damaged (not valid JSON: {exc})") from None
    return check_manifest(manifest, path)


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """Check a parsed manifest (read from ``path``); returns it.

    Raises:
        IndexFormatError: another format version, or fields missing or invalid.
    """
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{path} is damaged (not a JSON object)")
    found = manifest.get("format_version")
    if found != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} says format version {found!r}; this imgrec reads version {FORMAT_VERSION}: "
            f"rebuild it with `imgrec index GALLERY --index {path.parent.parent} --full`")
    bad = [k for k, t in MANIFEST_KEYS.items()
           if not isinstance(manifest.get(k), t) or isinstance(manifest.get(k), bool)]
    if bad:
        raise IndexFormatError(f"{path} is damaged: missing or invalid {', '.join(bad)}")
    if (manifest["count"] < 0 or manifest["embedding_dim"] < 1 or manifest["pca_components"] < 1
            or manifest["skipped"] < 0):
        raise IndexFormatError(f"{path} is damaged: negative or zero sizes")
    if manifest["histogram_dim"] != HIST_DIM:
        raise IndexFormatError(f"{path}: histogram_dim is {manifest['histogram_dim']}, "
                               f"this imgrec uses {HIST_DIM}")
    return manifest


def expected_shapes(manifest: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The ``.npy`` files of a version and the shape each must have (all float32)."""
    n, d, c = manifest["count"], manifest["embedding_dim"], manifest["pca_components"]
    return {"embeddings.npy": (n, d), "embedding_norms.npy": (n,),
            "histograms.npy": (n, HIST_DIM), "pca_histograms.npy": (n, c)}


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
    paths = [version_dir / f for f in LABEL_FILES]
    if not _optional_pair(paths, "label file"):
        return None
    shape = (count, LABEL_TOP)
    return open_matrix(paths[0], shape, np.int16), open_matrix(paths[1], shape, np.float32)


def open_half(version_dir: Path, count: int, dim: int) -> half.HalfCopy | None:
    """Memory-map the float16 copy of the embeddings and its error bounds.

    Returns None when the version has neither file (written by an older imgrec: searches
    then scan the float32 rows).

    Raises:
        IndexFormatError: only one of the two files exists, or one has the wrong shape,
            dtype or length.
    """
    paths = [version_dir / half.DATA_FILE, version_dir / half.ERROR_FILE]
    if not _optional_pair(paths, "float16 file"):
        return None
    return half.HalfCopy(open_matrix(paths[0], (count, dim), np.float16),
                         open_matrix(paths[1], (count, 2), np.float32))


def _sqlite_header_problem(path: Path) -> str | None:
    """Cheap truncation check: file length against the page count in the header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
        size = os.stat(path).st_size
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return f"{path} is damaged (not an SQLite database)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96] and pages > 0  # the header's page count is current
    if valid and size != page * pages:
        return (f"{path} is damaged ({size} bytes, its header says {pages} pages of {page} = "
                f"{page * pages} bytes: truncated or appended to)")
    return None


def check_catalog(path: Path, count: int) -> None:
    """Catalog check run on open: an SQLite file of the right length whose b-trees are
    sound (``PRAGMA quick_check``: ~0.3 s for 400,000 rows) and whose indexed rows are
    exactly ``0..count-1``.

    Raises:
        IndexFormatError: naming the file and what is wrong with it.
    """
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing")
    problem = _sqlite_header_problem(path)
    if problem:
        raise IndexFormatError(problem)
    try:
        con = catalog.connect(path)
        try:
            check = [r[0] for r in con.execute("PRAGMA quick_check")]
            got = con.execute("SELECT count(*), min(row), max(row) FROM images "
                              "WHERE row IS NOT NULL").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise IndexFormatError(f"{path} is damaged ({exc})") from None
    if check != ["ok"]:
        raise IndexFormatError(f"{path} is damaged (SQLite: {' '.join(check[0].split())[:200]})")
    want = (count, 0, count - 1) if count else (0, None, None)
    if tuple(got) != want:
        raise IndexFormatError(f"{path} indexes {got[0]} rows ({got[1]}..{got[2]}); the manifest "
                               f"says {count} rows (0..{count - 1})")


def load_pca(path: Path, components: int) -> PCAModel:
    """Load ``pca.npz`` (no pickles) and check its shapes against the manifest.

    Raises:
        IndexFormatError: naming the file and what is wrong with it.
    """
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in PCA_KEYS}
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
        >>> problems = verify("data/index")   # doctest: +SKIP
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
    if manifest["version"] != version.name:
        problems.append(f"{version / 'manifest.json'} names version {manifest['version']!r}, "
                        f"but lies in {version.name}")
    arrays: dict[str, np.ndarray] = {}
    for name, shape in expected_shapes(manifest).items():
        try:
            arrays[name] = open_matrix(version / name, shape)
        except IndexFormatError as exc:
            problems.append(str(exc))
    for name, arr in arrays.items():
        problems += _matrix_problems(version / name, arr)
    if "embeddings.npy" in arrays and "embedding_norms.npy" in arrays:
        problems += _norm_problems(version, arrays["embeddings.npy"],
                                   arrays["embedding_norms.npy"])
    try:
        pca = load_pca(version / "pca.npz", manifest["pca_components"])
    except IndexFormatError as exc:
        problems.append(str(exc))
    else:
        if "histograms.npy" in arrays and "pca_histograms.npy" in arrays:
            problems += _projection_problems(version, pca, arrays["histograms.npy"],
                                             arrays["pca_histograms.npy"])
    try:
        labels = open_labels(version, manifest["count"])
    except IndexFormatError as exc:
        problems.append(str(exc))
    else:
        if labels is not None:
            problems += _label_problems(version, *labels)
    try:
        copy = open_half(version, manifest["count"], manifest["embedding_dim"])
    except IndexFormatError as exc:
        problems.append(str(exc))
    else:
        if copy is not None and "embeddings.npy" in arrays:
            problems += _half_problems(version, copy, arrays["embeddings.npy"])
    problems += _catalog_problems(version / "catalog.sqlite", manifest)
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
        return [f"{path} and {LABEL_FILES[1]}: {_rows(bad)} with invalid labels (class ids "
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
        return [f"{version / half.DATA_FILE} and {half.ERROR_FILE} disagree with "
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
    if path.name == "embeddings.npy":
        def unit(block: np.ndarray) -> np.ndarray:
            norms = np.linalg.norm(block.astype(np.float64), axis=1)
            return (np.abs(norms - 1.0) <= NORM_TOL) | (norms == 0.0)
        return _bad_rows(path, arr, unit, "neither unit-length nor zero")
    if path.name == "histograms.npy":
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
        return [f"{version / 'embedding_norms.npy'}: stored norms disagree with "
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
        return [f"{version / 'pca.npz'} does not reproduce pca_histograms.npy from "
                f"histograms.npy (the files come from different builds)"]
    return []


def _catalog_problems(path: Path, manifest: dict[str, Any]) -> list[str]:
    if not path.is_file():
        return [f"{path} is missing"]
    problem = _sqlite_header_problem(path)
    if problem:
        return [problem]
    n = manifest["count"]
    try:
        con = catalog.connect(path)
        try:
            check = [r[0] for r in con.execute("PRAGMA integrity_check")]
            if check != ["ok"]:
                return [f"{path} fails SQLite's integrity check: "
                        f"{' '.join('; '.join(check[:3]).split())[:300]}"]
            cols = [r[1] for r in con.execute("PRAGMA table_info(images)")]
            if cols != catalog.COLUMNS:
                return [f"{path} has no images table with the expected columns "
                        f"(found {cols or 'none'})"]
            rows, distinct, lo, hi = con.execute(
                "SELECT count(row), count(DISTINCT row), min(row), max(row) FROM images"
            ).fetchone()
            skipped = con.execute("SELECT count(*) FROM images WHERE row IS NULL").fetchone()[0]
            no_reason = con.execute("SELECT count(*) FROM images WHERE row IS NULL AND "
                                    "(error IS NULL OR error = '')").fetchone()[0]
            with_error = con.execute("SELECT count(*) FROM images WHERE row IS NOT NULL AND "
                                     "error IS NOT NULL").fetchone()[0]
            unsafe = [p for (p,) in con.execute("SELECT path FROM images")
                      if not _safe_path(p)]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return [f"{path} is damaged ({exc})"]
    problems = []
    want = (n, n, 0, n - 1) if n else (0, 0, None, None)
    if (rows, distinct, lo, hi) != want:
        problems.append(f"{path}: indexed row numbers are not exactly 0..{n - 1} "
                        f"({rows} rows, {distinct} distinct, from {lo} to {hi}; the manifest "
                        f"says {n})")
    if skipped != manifest["skipped"]:
        problems.append(f"{path} lists {skipped} skipped files; the manifest says "
                        f"{manifest['skipped']}")
    if no_reason:
        problems.append(f"{path}: {no_reason} skipped files have no reason recorded")
    if with_error:
        problems.append(f"{path}: {with_error} indexed files also carry an error")
    if unsafe:
        problems.append(f"{path}: {len(unsafe)} paths are absolute or leave the gallery "
                        f"(first: {unsafe[0]!r})")
    return problems


def _safe_path(p: object) -> bool:
    if not isinstance(p, str) or not p or "\0" in p:
        return False
    pp = PurePosixPath(p)
    return not pp.is_absolute() and ".." not in pp.parts
