"""The read-only, memory-mapped index and the search API over it."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgrec import images
from imgrec.errors import ImageError, IndexFormatError, IndexNotFoundError, QueryError
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.color import histogram
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
from imgrec.search.rank import (
    MAX_QUERIES,
    METHOD_METRIC,
    Hit,
    SearchResult,
    check_request,
    rank,
    rank_refined,
    score_of,
)
from imgrec.settings import Settings


@dataclass(frozen=True)
class Stored:
    """A query naming an indexed gallery image by its path relative to the gallery root.

    Its stored features are used directly: nothing is decoded or embedded.
    """

    path: str


@dataclass(frozen=True)
class QueryFeatures:
    label: str
    embedding: np.ndarray | None
    histogram: np.ndarray
    row: int | None = None


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

    # ---- queries -----------------------------------------------------------------------

    def query_features(self, queries: Sequence[Any], need_embedding: bool) -> list[QueryFeatures]:
        """Features of each query (stored ones reused; others decoded like gallery files)."""
        out: list[QueryFeatures | None] = [None] * len(queries)
        crops, todo = [], []
        for i, q in enumerate(queries):
            label = _label(q, i)
            if isinstance(q, Stored):
                row = self.row_of(q.path)
                out[i] = QueryFeatures(label, np.asarray(self.embeddings[row]),
                                       np.asarray(self.histograms[row]), row)
                continue
            try:
                rgb, _ = images.load_image(q)
            except ImageError as exc:
                raise ImageError(f"{label}: {exc}") from None
            work = images.prepare(rgb)
            out[i] = QueryFeatures(label, None, histogram(work))
            if need_embedding:
                crops.append(images.center_crop(work, self.embedder.input_size))
                todo.append(i)
        if todo:
            emb = self.embedder
            if emb.name != self.model:
                raise QueryError(f"the index was built with {self.model}, not {emb.name}")
            vecs = emb.embed(np.stack(crops))
            for i, v in zip(todo, vecs, strict=True):
                qf = out[i]
                assert qf is not None
                out[i] = QueryFeatures(qf.label, v, qf.histogram)
        return [q for q in out if q is not None]

    def search(self, queries: Any, method: str = "embedding", metric: str = "cosine",
               k: int = 5, pca_components: int | None = None, *,
               negatives: Any = None, negative_weight: float = 0.5) -> SearchResult:
        """Find the ``k`` gallery images most similar to one to five queries.

        Args:
            queries: one query or a list of up to five: file paths, ``PIL.Image`` objects,
                bytes or binary file objects (uploads), or :class:`Stored` gallery paths.
            method: ``"embedding"`` (CNN content), ``"color"`` (RGB histogram, chi-square)
                or ``"pca"`` (PCA-reduced histogram, cosine).
            metric: for ``embedding``: ``cosine``, ``euclidean``, ``manhattan`` or ``all``.
            k: results per query.
            pca_components: components for ``pca`` (default: all stored, 75 normally).
            negatives: up to five "less like this" examples (same kinds as ``queries``),
                for ``method="embedding"``, ``metric="cosine"`` only. Then ``combined`` is
                the refined ranking: mean cosine to the queries minus ``negative_weight``
                times mean cosine to the negatives, exact over the whole gallery.
            negative_weight: weight of the negatives (0 ignores them; default 0.5).

        Returns:
            A :class:`SearchResult` with ``per_query`` lists and a ``combined`` ranking.

        Raises:
            QueryError: bad method, metric, k, query count, or negatives with another
                method or metric.

        Example:
            >>> idx.search([Stored("chelsea/chelsea_orig.jpg")], k=3).per_query[0][0].path
            ...                                                      # doctest: +SKIP
        """
        if not isinstance(queries, list | tuple):
            queries = [queries]
        kernel_metric = check_request(method, metric, k, len(queries))
        if negatives is not None and not isinstance(negatives, list | tuple):
            negatives = [negatives]
        if negatives:
            return self._refine(list(queries), list(negatives), negative_weight, k,
                                method, metric)
        metric_name = metric if method == "embedding" else METHOD_METRIC[method]
        feats = self.query_features(queries, need_embedding=method == "embedding")
        labels = [f.label for f in feats]
        notes: list[str] = []
        if method == "embedding":
            q = np.stack([f.embedding for f in feats])  # type: ignore[misc]
            if metric == "all":
                per, comb = self._rank_all(q, k)
                return SearchResult(method, "all", k, labels, per, comb, notes)
            data, norms, copy = self.embeddings, self.embedding_norms, self._half()
        elif method == "color":
            q, data, norms = np.stack([f.histogram for f in feats]), self.histograms, None
            copy = None
        else:
            stored = self.manifest["pca_components"]
            c = stored if pca_components is None else int(pca_components)
            if c < 1:
                raise QueryError(f"pca_components must be at least 1, got {c}")
            if c > stored:
                notes.append(f"pca_components clipped to {stored}, the most this index holds")
                c = stored
            q = self.pca().transform(np.stack([f.histogram for f in feats]), c)
            for i, f in enumerate(feats):  # a stored query reuses its stored projection
                if f.row is not None:
                    q[i] = self.pca_histograms[f.row, :c]
            data, norms, copy = self.pca_histograms[:, :c], self._prefix_norms(c), None
        per, comb = rank(kernel_metric, data, q, k, norms, copy)
        return SearchResult(method, metric_name, k, labels,
                            [self._hits(kernel_metric, r, v) for r, v in per],
                            self._hits(kernel_metric, *comb), notes)

    def _refine(self, queries: list[Any], negatives: list[Any], weight: float, k: int,
                method: str, metric: str) -> SearchResult:
        """Relevance feedback: per-query top-k plus the refined ``combined`` ranking."""
        if method != "embedding" or metric != "cosine":
            raise QueryError("negative examples work with method 'embedding' and metric "
                             f"'cosine' only (got {method!r}, {metric!r})")
        if len(negatives) > MAX_QUERIES:
            raise QueryError(f"at most {MAX_QUERIES} negative examples (got {len(negatives)})")
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise QueryError(f"negative_weight must be a number, got {weight!r}") from None
        if not np.isfinite(w) or w < 0:
            raise QueryError(f"negative_weight must be a finite number >= 0, got {weight!r}")
        feats = self.query_features(queries + negatives, need_embedding=True)
        pos, neg = feats[:len(queries)], feats[len(queries):]
        q = np.stack([f.embedding for f in pos])  # type: ignore[misc]
        nq = np.stack([f.embedding for f in neg])  # type: ignore[misc]
        data, norms = self.embeddings, self.embedding_norms
        per, _ = rank("cosine", data, q, k, norms, self._half())
        rows, values = rank_refined(data, norms, q, nq, w, k, self._half())
        note = (f"combined: mean cosine to {len(pos)} quer{'y' if len(pos) == 1 else 'ies'} "
                f"- {w:g} x mean cosine to {len(neg)} negative example"
                f"{'' if len(neg) == 1 else 's'}")
        return SearchResult(method, metric, k, [f.label for f in pos],
                            [self._hits("cosine", r, v) for r, v in per],
                            self._hits("cosine", rows, values), [note],
                            [f.label for f in neg], w)

    def _hits(self, metric: str, rows: np.ndarray, values: np.ndarray,
              extra: list[dict[str, float]] | None = None) -> list[Hit]:
        paths = self.paths(rows)
        hits = []
        for i, (r, v, p) in enumerate(zip(rows, values, paths, strict=True)):
            score, dist = score_of(metric, float(v))
            hits.append(Hit(i + 1, p, score, dist, int(r), extra[i] if extra else None))
        return hits

    def _rank_all(self, q: np.ndarray, k: int) -> tuple[list[list[Hit]], list[Hit]]:
        """Union of the cosine, euclidean and manhattan top-k, ordered by cosine."""
        from imgrec.search import kernels as K

        data, norms = self.embeddings, self.embedding_norms
        copy = self._half()
        runs = {m: rank(m, data, q, k, norms, copy) for m in ("cosine", "euclidean", "manhattan")}

        def merge(row_sets: list[np.ndarray], qs: np.ndarray) -> list[Hit]:
            rows = np.unique(np.concatenate(row_sets))
            sub = data[rows]
            vals = {"cosine": K.cosine_exact(sub, qs).mean(0),
                    "euclidean": K.euclidean_exact(sub, qs).mean(0),
                    "manhattan": K.manhattan_exact(sub, qs).mean(0)}
            o = K.order(vals["cosine"], rows, True)
            extra = [{m: float(v[i]) for m, v in vals.items()} for i in o]
            return self._hits("cosine", rows[o], vals["cosine"][o], extra)

        per = [merge([runs[m][0][j][0] for m in runs], q[j:j + 1]) for j in range(len(q))]
        return per, merge([runs[m][1][0] for m in runs], q)

    def _prefix_norms(self, c: int) -> np.ndarray:
        with self._lock:
            if c not in self._pca_norms:
                if len(self._pca_norms) > 8:
                    self._pca_norms.clear()
                p = self.pca_histograms
                self._pca_norms[c] = np.concatenate(
                    [np.linalg.norm(np.asarray(p[s:s + 65536, :c], np.float64), axis=1)
                     for s in range(0, len(p), 65536)] or [np.zeros(0)]).astype(np.float32)
            return self._pca_norms[c]

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


def _label(q: Any, i: int) -> str:
    if isinstance(q, Stored):
        return q.path
    if isinstance(q, str | os.PathLike):
        return Path(q).name
    name = getattr(q, "name", None)
    if isinstance(name, str) and name:
        return Path(name).name
    return f"query {i + 1}"
