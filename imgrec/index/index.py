"""The read-only, memory-mapped index and the search API over it."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgrec import images
from imgrec.errors import IndexFormatError, IndexNotFoundError, QueryError
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.embedding import Embedder, l2_normalise
from imgrec.features.pca import DEFAULT_COMPONENTS, PCAModel
from imgrec.index import catalog
from imgrec.index.half import HalfCopy
from imgrec.index.verify import (
    check_catalog,
    check_manifest,
    expected_shapes,
    load_pca,
    open_half,
    open_labels,
    open_matrix,
    read_manifest,
)
from imgrec.index.writer import CURRENT, LABEL_TOP, VersionWriter, current_version, hold_version
from imgrec.search import engine
from imgrec.search.query import QueryFeatures, Stored, query_features  # noqa: F401 (Stored: re-export)
from imgrec.search.results import SearchResult
from imgrec.settings import Settings

#: values of ``first_pass`` (see :meth:`Index.open`)
FIRST_PASSES = ("auto", "float16", "float32")
MATRICES = ("embeddings.npy", "embedding_norms.npy", "histograms.npy", "pca_histograms.npy")


class Index:
    """An opened index version. Read-only and safe to share between threads.

    Example:
        >>> idx = Index.open("data/index")                       # doctest: +SKIP
        >>> res = idx.search(["query.jpg"], method="embedding", k=5)  # doctest: +SKIP
        >>> [h.path for h in res.per_query[0]]                   # doctest: +SKIP
    """

    def __init__(self, version_dir: Path, manifest: dict[str, Any],
                 embedder: Embedder | None = None, first_pass: str = "auto") -> None:
        if first_pass not in FIRST_PASSES:
            raise ValueError(f"first_pass must be one of {', '.join(FIRST_PASSES)}, "
                             f"got {first_pass!r}")
        self.dir = version_dir
        self.index_dir = version_dir.parent
        self.manifest = check_manifest(manifest, version_dir / "manifest.json")
        self._embedder = embedder
        self._lock = threading.Lock()
        self._pca: PCAModel | None = None
        self._pca_norms: dict[int, np.ndarray] = {}
        # Hold the version while this object lives: a later build's prune keeps it.
        fd = hold_version(version_dir)
        if fd is None:
            raise IndexFormatError(f"index version {version_dir} is gone (replaced by a newer "
                                   "build and deleted): open the index again")
        self._hold = weakref.finalize(self, os.close, fd)
        try:
            arrays = {name: open_matrix(version_dir / name, shape)
                      for name, shape in expected_shapes(self.manifest).items()}
            labels = open_labels(version_dir, self.manifest["count"])
            copy = open_half(version_dir, self.manifest["count"], self.manifest["embedding_dim"])
            check_catalog(version_dir / "catalog.sqlite", self.manifest["count"])
            self._pca = load_pca(version_dir / "pca.npz", self.manifest["pca_components"])
        except IndexFormatError as exc:
            self._hold()
            raise IndexFormatError(
                f"the index at {self.index_dir} is damaged: {exc}; rebuild it with "
                f"`imgrec index GALLERY --index {self.index_dir} --full`") from None
        self.embeddings = arrays["embeddings.npy"]
        self.embedding_norms = arrays["embedding_norms.npy"]
        self.histograms = arrays["histograms.npy"]
        self.pca_histograms = arrays["pca_histograms.npy"]
        #: (n, 5) int16 ImageNet class ids, best first (-1 = unknown), and their float32
        #: probabilities; None when the index holds no labels (see :mod:`imgrec.insights.labels`)
        self.labels_top5: np.ndarray | None = labels[0] if labels else None
        self.labels_prob5: np.ndarray | None = labels[1] if labels else None
        #: the float16 copy of the embeddings (None for indexes written before it existed)
        self.embeddings_f16 = copy
        if first_pass == "float16" and copy is None:
            self._hold()
            raise ValueError(f"the index at {self.index_dir} has no float16 copy of its "
                             "embeddings (written by an older imgrec): open it with "
                             "first_pass='auto', or rebuild it with --full")
        #: which rows the first pass of an embedding search scans: ``"float16"`` (half
        #: the bytes; the default where the index has the copy) or ``"float32"``.
        self.first_pass = "float32" if copy is None or first_pass == "float32" else "float16"

    # ---- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, index_dir: str | os.PathLike | None = None, *,
             embedder: Embedder | None = None, first_pass: str = "auto") -> Index:
        """Open the published version of the index at ``index_dir`` (memory-mapped).

        The files are checked (manifest, shapes, file lengths, catalog rows, PCA), not
        read in full: ``imgrec info --verify`` does the thorough check.

        Args:
            index_dir: the index directory (default: ``IMGREC_INDEX_DIR`` or ``data/index``).
            embedder: the CNN used to embed new query images (default: created on first
                use from the manifest's backbone).
            first_pass: the rows an embedding search scans first: ``"float16"`` (half the
                bytes of the float32 rows, so about twice as fast at scale), ``"float32"``,
                or ``"auto"`` (float16 where the index holds the copy). Results are the
                same either way: candidates are rescored exactly (see :mod:`imgrec.index.half`).

        Raises:
            IndexNotFoundError: there is no index there.
            IndexFormatError: the index is damaged or of another format version.
            ValueError: ``first_pass`` is unknown, or ``"float16"`` for an index that has
                no float16 copy (written by an older imgrec).
        """
        index_dir = Path(index_dir) if index_dir else Settings.from_env().index_dir
        for attempt in range(3):
            version = current_version(index_dir)
            if version is None:
                raise IndexNotFoundError(f"no index at {index_dir}: build one with "
                                         f"`imgrec index GALLERY --index {index_dir}`")
            try:
                return cls(version, read_manifest(version), embedder, first_pass)
            except IndexFormatError as exc:
                # A build may have published and pruned between reading CURRENT and
                # opening the files: then the new version is the one to open.
                if attempt < 2 and current_version(index_dir) != version:
                    continue
                hint = f"rebuild it with `imgrec index GALLERY --index {index_dir} --full`"
                if not version.is_dir():
                    raise IndexFormatError(f"{index_dir / CURRENT} names {version.name}, but "
                                           f"that folder is missing: {hint}") from None
                if "rebuild it" in str(exc).lower():
                    raise
                raise IndexFormatError(f"the index at {index_dir} is damaged: {exc}; "
                                       f"{hint}") from None
        raise AssertionError("unreachable")

    # ---- facts -------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def root(self) -> Path:
        """The gallery folder the paths are relative to."""
        return Path(self.manifest["gallery_root"])

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def has_labels(self) -> bool:
        """Whether the index stores the backbone's top-5 ImageNet labels per image."""
        return self.labels_top5 is not None

    def _half(self) -> HalfCopy | None:
        """The float16 copy the first pass scans, or None for the float32 rows."""
        return self.embeddings_f16 if self.first_pass == "float16" else None

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def _sql(self, query: str, args: Sequence[Any] = ()) -> list[tuple]:
        con = catalog.connect(self.dir / "catalog.sqlite")
        try:
            return con.execute(query, args).fetchall()
        finally:
            con.close()

    def paths(self, rows: Sequence[int]) -> list[str]:
        """Gallery-relative paths of matrix rows, in the order given."""
        rows = [int(r) for r in rows]
        found: dict[int, str] = {}
        for s in range(0, len(rows), 900):
            part = rows[s:s + 900]
            found.update(self._sql(f"SELECT row, path FROM images WHERE row IN "
                                   f"({','.join('?' * len(part))})", part))
        return [found[r] for r in rows]

    def all_paths(self) -> list[str]:
        """Every indexed path, in row order."""
        return [p for (p,) in self._sql("SELECT path FROM images WHERE row IS NOT NULL "
                                         "ORDER BY row")]

    def row_of(self, path: str) -> int:
        got = self._sql("SELECT row FROM images WHERE path = ?", (str(path),))
        if not got or got[0][0] is None:
            raise QueryError(f"{path!r} is not an indexed image of this gallery")
        return int(got[0][0])

    def entries(self) -> list[catalog.Entry]:
        """Every catalog row (indexed and skipped)."""
        return list(catalog.read_all(self.dir / "catalog.sqlite"))

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every gallery file that could not be indexed."""
        return [(p, e) for p, e in self._sql(
            "SELECT path, error FROM images WHERE row IS NULL ORDER BY path")]

    def resolve(self, path: str) -> Path:
        """Absolute file of an indexed path; refuses anything outside the gallery root."""
        full = self.root / path
        if Path(path).is_absolute() or not images.is_within(full, self.root):
            raise QueryError(f"{path!r} lies outside the gallery {self.root}")
        return full

    def pca(self) -> PCAModel:
        with self._lock:
            if self._pca is None:
                self._pca = PCAModel.load(self.dir / "pca.npz")
            return self._pca

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from imgrec.features.embedding import CNNEmbedder

                self._embedder = CNNEmbedder(self.model)
            return self._embedder

    # ---- queries (the search itself lives in imgrec.search) -----------------------------

    def query_features(self, queries: Sequence[Any], need_embedding: bool) -> list[QueryFeatures]:
        """Features of each query: see :func:`imgrec.search.query.query_features`."""
        return query_features(self, queries, need_embedding)

    def search(self, queries: Any, method: str = "embedding", metric: str = "cosine",
               k: int = 5, pca_components: int | None = None, *,
               negatives: Any = None, negative_weight: float = 0.5) -> SearchResult:
        """Find the ``k`` gallery images most similar to one to five queries (exact).

        Args:
            queries: one query or a list of up to five: file paths (regular files),
                ``PIL.Image`` objects, bytes, binary file objects (uploads; a stream that
                cannot seek is read into memory, at most 50 MB), or :class:`Stored`
                gallery paths.
            method: ``"embedding"`` (CNN content), ``"color"`` (RGB histogram, chi-square)
                or ``"pca"`` (PCA-reduced histogram, cosine).
            metric: for ``embedding``: ``cosine``, ``euclidean``, ``manhattan`` or ``all``.
            k: results per query (a positive integer).
            pca_components: components for ``pca`` (a positive integer; default: all
                stored, 75 normally).
            negatives: up to five "less like this" examples (same kinds as ``queries``),
                for ``method="embedding"``, ``metric="cosine"`` only. Then ``combined`` is
                the refined ranking (``combined_metric == "refined"``): mean cosine to the
                queries minus ``negative_weight`` times mean cosine to the negatives, exact
                over the whole gallery, unclamped in [-1 - w, 1 + w].
            negative_weight: weight of the negatives, in [0, 100] (0 ignores them;
                default 0.5).

        Returns:
            A :class:`SearchResult` with ``per_query`` lists and a ``combined`` ranking.

        Raises:
            QueryError: bad method, metric, k, pca_components, query count or query
                object, or negatives with another method or metric or a bad weight.
            ImageError: a query image cannot be decoded.

        Example:
            >>> import tempfile
            >>> tmp = tempfile.TemporaryDirectory()
            >>> rng = np.random.default_rng(1)
            >>> idx = Index.from_arrays(tmp.name, ["a.jpg", "b.jpg"], rng.normal(size=(2, 4)),
            ...                         rng.random((2, 768)), model="m")
            >>> [h.path for h in idx.search(Stored("b.jpg"), k=2).per_query[0]]
            ['b.jpg', 'a.jpg']
            >>> del idx; tmp.cleanup()
        """
        return engine.search(self, queries, method, metric, k, pca_components,
                             negatives=negatives, negative_weight=negative_weight)

    # ---- writing -----------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, index_dir: str | os.PathLike, paths: Sequence[str],
                    embeddings: np.ndarray, histograms: np.ndarray, *, model: str,
                    gallery_root: str | os.PathLike = ".",
                    pca_components: int = DEFAULT_COMPONENTS,
                    embedder: Embedder | None = None,
                    labels_top5: np.ndarray | None = None,
                    labels_prob5: np.ndarray | None = None) -> Index:
        """Write a valid index from features computed elsewhere, then open it.

        Embeddings are L2-normalised on write; the PCA is fitted on ``histograms``.
        ``labels_top5`` (n, 5) class ids (-1 = unknown) and ``labels_prob5`` (n, 5) their
        probabilities, best first, are stored when both are given.

        Example:
            >>> Index.from_arrays("my-index", ["a.jpg", "b.jpg"], emb, hist,
            ...                   model="my-model")                  # doctest: +SKIP
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
            if not all(np.isfinite(arr[s:s + 65536]).all() for s in range(0, n, 65536)):
                raise ValueError(f"{name} hold NaN or infinite values")
        if (labels_top5 is None) != (labels_prob5 is None):
            raise ValueError("give both labels_top5 and labels_prob5, or neither")
        if labels_top5 is not None and (np.shape(labels_top5) != (n, LABEL_TOP)
                                        or np.shape(labels_prob5) != (n, LABEL_TOP)):
            raise ValueError(f"labels must have shape (n, {LABEL_TOP}) for n={n}")
        writer = VersionWriter(index_dir, n, emb.shape[1])
        try:
            for s in range(0, n, 65536):
                writer.embeddings[s:s + 65536] = l2_normalise(emb[s:s + 65536])
                writer.histograms[s:s + 65536] = hist[s:s + 65536]
            if labels_top5 is not None:
                top5, prob5 = writer.labels()
                top5[:] = np.asarray(labels_top5)
                prob5[:] = np.asarray(labels_prob5)
            entries = [catalog.Entry(path=str(p), row=i) for i, p in enumerate(paths)]
            writer.publish(entries, {"model": model, "gallery_root": str(gallery_root),
                                     "source": "from_arrays"}, pca_components)
        except BaseException:
            writer.abort()
            raise
        return cls.open(index_dir, embedder=embedder)

