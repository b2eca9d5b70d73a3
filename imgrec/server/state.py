"""What the server keeps warm: the open index (reopened when a build publishes a new
version; a sharded index is served by its shards' Ray actors, reopened when a shard
changes), the CNN (loaded in the background at start) and a bounded thumbnail cache."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from imgrec.errors import ImgrecError, IndexNotFoundError, QueryError
from imgrec.features.embedding import BACKBONES, CNNEmbedder, Embedder
from imgrec.index.index import Index
from imgrec.index.writer import current_version
from imgrec.search.query import Stored
from imgrec.thumbcache import ThumbCache

log = logging.getLogger("imgrec.server")

#: thumbnails kept in memory (JPEG bytes, a few kB each)
THUMB_CACHE = 512


class PathNotFound(QueryError):
    """A gallery path that is not an indexed image (the API answers 404)."""


class ServerState:
    """The index and model one server process shares between all requests (thread-safe).

    Args:
        index_dir: the index directory, or a sharded index's folder.
        embedder: the CNN for uploads (default: created from the index's backbone).
        ray: for a sharded index, the Ray cluster its shards are served on (see
            :func:`imgrec.shard.cli.ray_address`: None is ``$IMGREC_RAY_ADDRESS``, else a
            local Ray).
    """

    def __init__(self, index_dir: str | Path, embedder: Embedder | None = None,
                 ray: str | None = None) -> None:
        from imgrec.shard.cli import is_sharded

        self.index_dir = Path(index_dir)
        self._lock = threading.Lock()
        self._thumb_lock = threading.Lock()
        self._thumbs: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._disk: tuple[str, ThumbCache] | None = None
        self.model_warm = False
        self.model_error: str | None = None
        self.ray, self.sharded = ray, is_sharded(self.index_dir)
        self._key = self._current()  # IndexNotFound/FormatError
        idx = self._open(embedder)
        if embedder is None and idx.model in BACKBONES:
            embedder = CNNEmbedder(idx.model)
            idx = self._open(embedder, idx)
        #: None for an index of features computed elsewhere (``Index.from_arrays``): its
        #: stored images can be searched, uploads by colour only
        self._embedder: Embedder | None = embedder
        self._index: Any = idx
        if embedder is None:
            self.model_error = f"no CNN for the index's model {idx.model!r}"

    def _current(self) -> str:
        """What names the published content now: the version folder, or for a sharded
        index its manifest and every shard's version."""
        if self.sharded:
            from imgrec.shard.split import current_key

            try:
                return current_key(self.index_dir)
            except ImgrecError:
                if not self.index_dir.is_dir():
                    raise IndexNotFoundError(f"the index at {self.index_dir} is gone") from None
                raise
        version = current_version(self.index_dir)
        if version is None:
            if not hasattr(self, "_index"):
                Index.open(self.index_dir)  # the error that says why
            raise IndexNotFoundError(f"the index at {self.index_dir} is gone")
        return str(version)

    def _open(self, embedder: Embedder | None, previous: Any = None) -> Any:
        """The index (an Index, or a ShardedIndex whose actors are placed now; Ray ends
        the ``previous`` one's actors once no request uses it)."""
        if not self.sharded:
            return Index.open(self.index_dir, embedder=embedder)
        from imgrec.shard.cli import ray_address
        from imgrec.shard.sharded import ShardedIndex

        if previous is not None and not isinstance(previous, Index):
            previous._embedder = embedder  # the same shards: only the CNN changes
            return previous
        return ShardedIndex.open(self.index_dir, ray_address=ray_address(self.ray),
                                 embedder=embedder)

    def index(self) -> Any:
        """The published version of the index, reopened when CURRENT names a new one (a
        sharded index: when its manifest or any shard's version changes)."""
        with self._lock:
            key = self._current()
            if key != self._key:
                idx = self._open(self._embedder)
                if idx.model != getattr(self._embedder, "name", idx.model):  # another backbone
                    self._embedder = CNNEmbedder(idx.model) if idx.model in BACKBONES else None
                    self.model_warm = False
                    idx = self._open(self._embedder, idx)
                    threading.Thread(target=self.warm, daemon=True, name="warm").start()
                log.info("opened index version %s (%d images)", idx.version, len(idx))
                self._index, self._key = idx, key
            return self._index

    def warm(self) -> None:
        """Load the CNN and run one forward pass and one search, so requests find them ready."""
        emb = self._embedder
        if emb is None:
            return
        try:
            crop = np.zeros((1, emb.input_size, emb.input_size, 3), np.uint8)
            emb.embed(crop)
            idx = self.index()
            if len(idx):
                first = idx.paths([0])[0]
                for method in ("embedding", "color", "pca"):  # compiles the search kernels
                    idx.search([Stored(first)], method=method, k=1)
            self.model_warm = emb is self._embedder
            log.info("model %s loaded; searches of uploads are fast now", emb.name)
        except Exception as exc:
            self.model_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.error("could not load the model: %s", self.model_error)

    def checked(self, idx: Index, path: str) -> str:
        """``path`` if it names an indexed image inside the gallery, else a clear error."""
        idx.resolve(path)  # QueryError (400) for anything outside the gallery
        try:
            idx.row_of(path)
        except QueryError as exc:
            raise PathNotFound(str(exc)) from None
        return path

    def thumbnail(self, idx: Index, path: str, size: int) -> bytes:
        """JPEG thumbnail (longer side ``size``) of an indexed image."""
        key = (idx.version, self.checked(idx, path), size)
        with self._thumb_lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        with self._thumb_lock:
            if self._disk is None or self._disk[0] != idx.version:
                self._disk = (idx.version, ThumbCache.for_index(idx))
            disk = self._disk[1]
        try:  # the on-disk cache beside the index (see imgrec.thumbcache)
            data = disk.get(idx.resolve(path), idx.sha256_of([path]).get(path, ""), size,
                            square=False)
        except (ImgrecError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise PathNotFound(f"{path}: the file cannot be read now ({reason})") from None
        with self._thumb_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return data
