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
from imgrec.features.embedding import Embedder
from imgrec.features.pca import DEFAULT_COMPONENTS, PCAModel
from imgrec.features.recipe import Recipe, recipe_named
from imgrec.index import catalog
from imgrec.index import format as F
from imgrec.index.arrays import write_arrays
from imgrec.index.facts import IndexFacts, facts
from imgrec.index.half import HalfCopy
from imgrec.index.reader import open_version, read_manifest
from imgrec.index.writer import CURRENT, current_version, hold_version
from imgrec.search import engine
from imgrec.search.query import QueryFeatures, Stored, query_features  # noqa: F401 (Stored: re-export)
from imgrec.search.results import SearchResult
from imgrec.settings import Settings

#: values of ``first_pass`` (see :meth:`Index.open`)
FIRST_PASSES = ("auto", "float16", "float32")


class Index:
    """An opened index version. Read-only and safe to share between threads.

    Example:
        >>> idx = Index.open("data/index")
        >>> res = idx.search(["query.jpg"], method="embedding", k=5)
        >>> [h.path for h in res.per_query[0]][:3]
        ['chelsea/chelsea_orig.jpg', 'chelsea/chelsea_scale150.jpg', 'chelsea/chelsea_color.jpg']
    """

    def __init__(self, version_dir: Path, manifest: F.Manifest | dict[str, Any],
                 embedder: Embedder | None = None, first_pass: str = "auto") -> None:
        if first_pass not in FIRST_PASSES:
            raise ValueError(f"first_pass must be one of {', '.join(FIRST_PASSES)}, "
                             f"got {first_pass!r}")
        self.dir = version_dir
        self.index_dir = version_dir.parent
        if not isinstance(manifest, F.Manifest):
            manifest = F.Manifest.from_json(manifest, version_dir / F.MANIFEST)
        #: the version's manifest (see :class:`imgrec.index.format.Manifest`)
        self.manifest: F.Manifest = manifest
        self._embedder = embedder
        self._lock = threading.Lock()
        self._pca_norms: dict[int, np.ndarray] = {}
        self._rows_cache: dict[tuple, np.ndarray] = {}  # see rows_matching
        # Hold the version while this object lives: a later build's prune keeps it.
        fd = hold_version(version_dir)
        if fd is None:
            raise IndexFormatError(f"index version {version_dir} is gone (replaced by a newer "
                                   "build and deleted): open the index again")
        self._hold = weakref.finalize(self, os.close, fd)
        try:
            opened = open_version(version_dir, manifest)
        except IndexFormatError as exc:
            self._hold()
            raise IndexFormatError(
                f"the index at {self.index_dir} is damaged: {exc}; rebuild it with "
                f"`imgrec index GALLERY --index {self.index_dir} --full`") from None
        self._pca = opened.pca
        self.embeddings = opened.matrices[F.EMBEDDINGS]
        self.embedding_norms = opened.matrices[F.NORMS]
        self.histograms = opened.matrices[F.HISTOGRAMS]
        self.pca_histograms = opened.matrices[F.PCA_HISTOGRAMS]
        labels, copy = opened.labels, opened.half
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

        The files are checked (manifest, shapes, file lengths, catalog schema and rows,
        PCA, and the recorded checksums of the manifest and of the small files: catalog,
        norms, float16 error bounds, labels, PCA); the large matrices are checked by
        size, not read in full: ``imgrec info --verify`` does the thorough check.

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
        return self.manifest.count

    @property
    def root(self) -> Path:
        """The gallery folder the paths are relative to."""
        return Path(self.manifest.gallery_root)

    @property
    def model(self) -> str:
        return self.manifest.model

    @property
    def recipe(self) -> Recipe:
        """The embedding recipe the index was built with (queries are embedded by it).

        Raises:
            ImgrecError: the manifest names a recipe this imgrec does not know.
        """
        return recipe_named(self.manifest.recipe)

    @property
    def has_labels(self) -> bool:
        """Whether the index stores the backbone's top-5 ImageNet labels per image."""
        return self.labels_top5 is not None

    def _half(self) -> HalfCopy | None:
        """The float16 copy the first pass scans, or None for the float32 rows."""
        return self.embeddings_f16 if self.first_pass == "float16" else None

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def _catalog(self) -> Path:
        return self.dir / F.CATALOG

    def paths(self, rows: Sequence[int]) -> list[str]:
        """Gallery-relative paths of matrix rows, in the order given."""
        rows = [int(r) for r in rows]
        found = catalog.paths_of_rows(self._catalog, rows)
        return [found[r] for r in rows]

    def all_paths(self) -> list[str]:
        """Every indexed path, in row order."""
        return catalog.all_paths(self._catalog)

    def row_of(self, path: str) -> int:
        row = catalog.row_of(self._catalog, path)
        if row is None:
            raise QueryError(f"{path!r} is not an indexed image of this gallery")
        return row

    def sha256_of(self, paths: Sequence[str]) -> dict[str, str]:
        """path -> content hash of the given indexed paths (absent paths are left out)."""
        return catalog.sha256_of(self._catalog, [str(p) for p in paths])

    def file_stats(self) -> dict[str, tuple[int, int, bool]]:
        """path -> (size, mtime_ns, indexed) of every catalogued file (one statement)."""
        return catalog.file_stats(self._catalog)

    def entry(self, path: str) -> catalog.Entry | None:
        """The catalog row of one gallery path (indexed or skipped), or None."""
        return catalog.entry_of(self._catalog, path)

    def entries(self) -> list[catalog.Entry]:
        """Every catalog row (indexed and skipped), by path."""
        return list(catalog.read_all(self._catalog))

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every gallery file that could not be indexed."""
        return catalog.skipped(self._catalog)

    def image_meta(self) -> list[tuple[int, int, int, str]]:
        """(width, height, file size, sha256) of every indexed image, in row order."""
        return catalog.image_meta(self._catalog, len(self))

    def format_counts(self) -> dict[str, int]:
        """Indexed images per file format ('?' where none is recorded), most common first."""
        return catalog.format_counts(self._catalog)

    def decoder_counts(self) -> dict[str, int]:
        """Indexed images per decoder (empty for an index built before they were recorded)."""
        return catalog.decoder_counts(self._catalog)

    def rows_matching(self, **conditions: Any) -> np.ndarray:
        """Indexed rows passing catalog conditions, sorted (see
        :func:`imgrec.index.catalog.rows_matching`; :mod:`imgrec.search.filters` builds them).

        The last few answers are kept on this object (the version never changes), so a
        filter used for several searches reads the catalog once. Treat them as read-only.
        """
        key = tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v)
                           for k, v in conditions.items()))
        with self._lock:
            got = self._rows_cache.get(key)
        if got is None:
            got = np.asarray(catalog.rows_matching(self._catalog, **conditions), np.int64)
            got.setflags(write=False)
            with self._lock:
                if len(self._rows_cache) >= 8:
                    self._rows_cache.pop(next(iter(self._rows_cache)))
                self._rows_cache[key] = got
        return got

    def facts(self) -> IndexFacts:
        """Counts, formats, dimensions and disk size (see :func:`imgrec.index.facts.facts`)."""
        return facts(self)

    def resolve(self, path: str) -> Path:
        """Absolute file of an indexed path; refuses anything outside the gallery root."""
        full = self.root / path
        if Path(path).is_absolute() or not images.is_within(full, self.root):
            raise QueryError(f"{path!r} lies outside the gallery {self.root}")
        return full

    def pca(self) -> PCAModel:
        """The PCA of the colour histograms (loaded and checked on open)."""
        return self._pca

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from imgrec.features.embedding import CNNEmbedder

                self._embedder = CNNEmbedder(self.model)
            return self._embedder

    # ---- queries (the search itself lives in imgrec.search) -----------------------------

    def query_features(self, queries: Sequence[Any], need_embedding: bool,
                       max_megapixels: float = images.MAX_MEGAPIXELS) -> list[QueryFeatures]:
        """Features of each query: see :func:`imgrec.search.query.query_features`."""
        return query_features(self, queries, need_embedding, max_megapixels)

    def search(self, queries: Any, method: str = "embedding", metric: str = "cosine",
               k: int = 5, pca_components: int | None = None, *,
               negatives: Any = None, negative_weight: float = 0.5,
               max_megapixels: float = images.MAX_MEGAPIXELS, where: Any = None,
               rerank: Any = None) -> SearchResult:
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
            max_megapixels: query images larger than this are refused (as in a build).
            where: rank only the images passing a filter: a
                :class:`~imgrec.search.filters.Where` or a dict of its fields (folders,
                after, before, min_width, min_height, formats, orientation, label). The
                answer is the exact top-k among them (fewer when fewer pass).
            rerank: re-rank by alpha query expansion (``"aqe"``, ``"aqe:n=5,alpha=3"``
                or a :class:`~imgrec.search.rerank.Rerank`; None: off), for
                ``method="embedding"``, ``metric="cosine"`` without negatives: each query
                plus its ``n`` nearest images weighted by cosine ** alpha, searched again
                (exact; see :mod:`imgrec.search.rerank`).

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
                             negatives=negatives, negative_weight=negative_weight,
                             max_megapixels=max_megapixels, where=where, rerank=rerank)

    # ---- writing -----------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, index_dir: str | os.PathLike, paths: Sequence[str],
                    embeddings: np.ndarray, histograms: np.ndarray, *, model: str,
                    gallery_root: str | os.PathLike = ".",
                    pca_components: int = DEFAULT_COMPONENTS,
                    embedder: Embedder | None = None,
                    labels_top5: np.ndarray | None = None,
                    labels_prob5: np.ndarray | None = None) -> Index:
        """Write a valid index from features computed elsewhere, then open it
        (see :func:`imgrec.index.arrays.write_arrays`).

        Embeddings are L2-normalised on write; the PCA is fitted on ``histograms``.
        ``labels_top5`` (n, 5) class ids (-1 = unknown) and ``labels_prob5`` (n, 5) their
        probabilities, best first, are stored when both are given.

        Example:
            >>> emb, hist = np.eye(2, 4), np.full((2, 768), 1 / 768)
            >>> len(Index.from_arrays("my-index", ["a.jpg", "b.jpg"], emb, hist,
            ...                       model="my-model"))
            2
        """
        write_arrays(index_dir, paths, embeddings, histograms, model=model,
                     gallery_root=gallery_root, pca_components=pca_components,
                     labels_top5=labels_top5, labels_prob5=labels_prob5)
        return cls.open(index_dir, embedder=embedder)

