"""Thumbnails cached on disk beside the index, so a result grid of RAW or HEIC files shows fast.

A thumbnail is a square JPEG (the image letterboxed), keyed by the file's content hash and
the side in pixels, so a moved or touched file keeps its thumbnail and a changed one gets
a new one. The cache folder is ``thumbs/`` in the index directory (outside every version
folder; builds never touch it), or, where that cannot be written, a folder under
``~/.cache/imgrec/thumbs``; never inside the gallery. Its size is bounded by total bytes:
past the bound the least recently used thumbnails are deleted. Files are written under a
temporary name and renamed, so readers in other processes never see half a thumbnail.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgrec import images
from imgrec.errors import ImgrecError

if TYPE_CHECKING:
    from imgrec.index.index import Index

#: default bound of a cache folder's total size
MAX_BYTES = 512 * 1024 * 1024
#: side of the thumbnails the grids show
THUMB_SIZE = 256
#: letterbox colour (the dashboard theme's secondary background)
BACKGROUND = (243, 245, 249)
FOLDER = "thumbs"
_NAME = re.compile(r"[0-9a-f]{64}-\d{1,5}s?\.jpg")


def encode(im: Any, size: int) -> bytes:
    """JPEG bytes of an RGB image centred on a ``size`` x ``size`` canvas."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), BACKGROUND)
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def render(path: str | os.PathLike, size: int = THUMB_SIZE, square: bool = True) -> bytes:
    """A fresh thumbnail of an image file (decoded like any gallery file): letterboxed on
    a square, or (``square=False``) as it is, its longer side ``size``.

    Raises:
        ImgrecError: the file cannot be decoded; OSError: it cannot be read.
    """
    im = images.thumbnail(path, size)
    if square:
        return encode(im, size)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


class ThumbCache:
    """The thumbnails of one cache folder, bounded to ``max_bytes`` (LRU by file time).

    Args:
        folder: where the thumbnails live (created on the first write); None caches nothing.
        max_bytes: bound of the folder's total size.

    Example:
        >>> cache = ThumbCache.for_index(idx)
        >>> jpeg = cache.thumbnail(idx, "coffee/coffee_orig.jpg")
        >>> jpeg[:2]  # a JPEG, kept beside the index for the next view
        b'\\xff\\xd8'
    """

    def __init__(self, folder: str | os.PathLike | None, max_bytes: int = MAX_BYTES) -> None:
        self.folder = None if folder is None else Path(folder)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes in the folder, counted on the first write

    @classmethod
    def for_index(cls, idx: Index, max_bytes: int = MAX_BYTES) -> ThumbCache:
        """The cache of an opened index: ``thumbs/`` beside its versions, else one in the
        user's cache folder; no disk cache where neither can be written."""
        for folder in (idx.index_dir / FOLDER, _user_folder(idx.index_dir)):
            if folder is not None and not images.is_within(folder, idx.root) and _writable(folder):
                return cls(folder, max_bytes)
        return cls(None, max_bytes)

    def path_of(self, sha256: str, size: int, square: bool = True) -> Path | None:
        """Where the thumbnail of this content and side lives (None: no disk cache)."""
        if self.folder is None or not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
            return None
        return self.folder / sha256[:2] / f"{sha256}-{int(size)}{'s' if square else ''}.jpg"

    def get(self, file: str | os.PathLike, sha256: str, size: int = THUMB_SIZE,
            square: bool = True) -> bytes:
        """The thumbnail of ``file`` (whose content hash is ``sha256``): from the cache,
        else rendered (see :func:`render`) and stored.

        Raises:
            ImgrecError: the file cannot be decoded; OSError: it cannot be read.
        """
        where = self.path_of(sha256, size, square)
        if where is not None:
            with contextlib.suppress(OSError):
                data = where.read_bytes()
                with contextlib.suppress(OSError):
                    os.utime(where)  # recently used: evicted last
                return data
        data = render(file, size, square)
        if where is not None:
            self._put(where, data)
        return data

    def thumbnail(self, idx: Index, path: str, size: int = THUMB_SIZE,
                  square: bool = True) -> bytes | None:
        """The thumbnail of an indexed image, or None when it is gone or does not decode.

        The path goes through :meth:`Index.resolve`, which refuses anything outside the
        gallery."""
        try:
            file = idx.resolve(path)
            return self.get(file, idx.sha256_of([path]).get(path, ""), size, square)
        except (ImgrecError, OSError, MemoryError):
            return None

    def _put(self, where: Path, data: bytes) -> None:
        tmp = where.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{where.name}")
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, where)
        except OSError:  # a full or read-only disk: the thumbnail is simply not kept
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            if self._total is None:
                self._total = sum(size for _, size, _ in self._files())
            else:
                self._total += len(data)
            if self._total > self.max_bytes:
                self._total = self._evict(int(self.max_bytes * 0.9))

    def _files(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every cached thumbnail."""
        out = []
        if self.folder is None or not self.folder.is_dir():
            return out
        for sub in self.folder.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if _NAME.fullmatch(f.name):
                    with contextlib.suppress(OSError):
                        st = f.stat()
                        out.append((st.st_mtime, st.st_size, f))
        return out

    def _evict(self, target: int) -> int:
        """Delete the least recently used thumbnails until at most ``target`` bytes stay."""
        files = sorted(self._files())
        total = sum(s for _, s, _ in files)
        for _, size, f in files:
            if total <= target:
                break
            f.unlink(missing_ok=True)
            total -= size
        return total

    def total_bytes(self) -> int:
        """Bytes the cached thumbnails take now."""
        return sum(size for _, size, _ in self._files())


def _user_folder(index_dir: Path) -> Path | None:
    home = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    key = hashlib.blake2b(str(Path(index_dir).resolve()).encode(), digest_size=8).hexdigest()
    return Path(home) / "imgrec" / FOLDER / key


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)
