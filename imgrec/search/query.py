"""Query images: what a search accepts as a query, and its features (decoded and embedded
exactly like a gallery file, or read from the index for a :class:`Stored` one)."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from imgrec import images
from imgrec.errors import ImageError, QueryError
from imgrec.features.color import histogram
from imgrec.features.recipe import with_recipe

if TYPE_CHECKING:
    from imgrec.index.index import Index

#: Largest query read from a stream that cannot seek (a pipe, ``sys.stdin.buffer``): the
#: dashboard's upload limit (``maxUploadSize`` in .streamlit/config.toml), 50 MB.
MAX_STREAM_BYTES = 50 * 1024 * 1024
ACCEPTED = ("an image file path, bytes, a binary file object, a PIL image or "
            "Stored(gallery path)")


@dataclass(frozen=True)
class Stored:
    """A query naming an indexed gallery image by its path relative to the gallery root.

    Its stored features are used directly: nothing is decoded or embedded.

    Example:
        >>> Stored("cats/tom.jpg").path
        'cats/tom.jpg'
    """

    path: str


@dataclass(frozen=True)
class QueryFeatures:
    """A query's label and features (``row``: its index row, for a stored query)."""

    label: str
    embedding: np.ndarray | None
    histogram: np.ndarray
    row: int | None = None


def label_of(q: Any, i: int) -> str:
    """The name a result shows for query ``i``: its file name, stored path or number.

    Example:
        >>> label_of("photos/cat.jpg", 0), label_of(b"...", 1), label_of(Stored("a/b.png"), 2)
        ('cat.jpg', 'query 2', 'a/b.png')
    """
    if isinstance(q, Stored):
        return q.path
    if isinstance(q, str | os.PathLike):
        try:
            return Path(q).name
        except TypeError:  # a PathLike that gives no path: refused by as_source
            return f"query {i + 1}"
    name = getattr(q, "name", None)
    if isinstance(name, str) and name:
        return Path(name).name
    return f"query {i + 1}"


def _describe(q: Any) -> str:
    if q is None:
        return "None"
    kind = type(q)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(q, np.ndarray):
        return f"{name} of shape {q.shape}"
    try:
        text = repr(q)
    except Exception:  # a caller's object whose repr fails still gets named by its type
        return name
    return name if len(text) > 40 or text.startswith("<") else f"{name} {text}"


def _refuse(label: str, q: Any, why: str = "") -> QueryError:
    return QueryError(f"{label}: {why or 'got ' + _describe(q)}; a query is {ACCEPTED}")


def _check_path(path: str) -> None:
    """Refuse a path that is not a regular file, before anything opens it (a FIFO blocks).

    The messages name the path as given (a query's label is only its file name).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # the decoder names it: "no such file"
    except (OSError, ValueError) as exc:
        raise QueryError(f"{path!r}: cannot read: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise QueryError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise QueryError(f"{path}: not a regular file (a pipe, device or socket); give an "
                         "image file")


def _call(label: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on a caller's file object; its OS or state errors become a QueryError."""
    try:
        return fn(*args)
    except (OSError, ValueError) as exc:  # ValueError: e.g. "I/O operation on closed file"
        raise QueryError(f"{label}: cannot read the file object: {exc}") from None


def _read_stream(q: Any, label: str) -> Any:
    """A binary file object as the decoder takes it; a stream that cannot seek is read
    into memory here, to its end or :data:`MAX_STREAM_BYTES` (a raw stream's read may
    return less than asked: it is read until it ends)."""
    if isinstance(q, io.TextIOBase):
        raise _refuse(label, q, "a text-mode file was given; open it with 'rb'")
    if callable(getattr(q, "seekable", None)):
        seekable = bool(_call(label, q.seekable))
    else:
        seekable = callable(getattr(q, "seek", None))
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = _call(label, q.read, 0 if seekable else min(1 << 20, MAX_STREAM_BYTES + 1 - size))
        if not isinstance(chunk, bytes | bytearray | memoryview):
            what = "nothing (a non-blocking stream with no data yet?)" if chunk is None \
                else f"{type(chunk).__name__}, not bytes (a text-mode file?)"
            raise _refuse(label, q, f"its read() gives {what}")
        if seekable:
            return q  # the decoder reads it from the start
        if not chunk:
            return b"".join(chunks)
        chunks.append(bytes(chunk))
        size += len(chunk)
        if size > MAX_STREAM_BYTES:
            raise QueryError(f"{label}: the stream holds more than "
                             f"{MAX_STREAM_BYTES // (1024 * 1024)} MB, the largest query read "
                             "from a stream")


def as_source(q: Any, label: str) -> images.ImageSource:
    """What the decoder reads for query ``q``, or a QueryError naming what was given.

    Example:
        >>> as_source(b"GIF89a...", "query 1")
        b'GIF89a...'
        >>> as_source(123, "query 1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        imgrec.errors.QueryError: query 1: got int 123; a query is an image file path, bytes, ...
    """
    if isinstance(q, bytes | bytearray | memoryview):
        return bytes(q)
    if isinstance(q, Image.Image):
        return q
    if isinstance(q, str | os.PathLike):
        try:
            path = os.fspath(q)
        except TypeError:  # a PathLike whose __fspath__ gives neither str nor bytes
            raise _refuse(label, q) from None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        _check_path(path)
        return path
    if callable(getattr(q, "read", None)):
        return _read_stream(q, label)
    raise _refuse(label, q)


def query_features(index: Index, queries: Sequence[Any], need_embedding: bool,
                   max_megapixels: float = images.MAX_MEGAPIXELS) -> list[QueryFeatures]:
    """Features of each query (stored ones reused; others decoded like gallery files, with
    the same pixel limit ``max_megapixels``).

    Raises:
        QueryError: a query is not one of the accepted kinds, not a regular file, an
            unknown stored path, or the index's backbone is not the embedder's.
        ImageError: a query could not be decoded (the message names it and why).
    """
    out: list[QueryFeatures] = []
    crops, todo = [], []
    for i, q in enumerate(queries):
        label = label_of(q, i)
        if isinstance(q, Stored):
            row = index.row_of(q.path)
            out.append(QueryFeatures(label, np.asarray(index.embeddings[row]),
                                     np.asarray(index.histograms[row]), row))
            continue
        source = as_source(q, label)
        try:
            rgb, _ = images.load_image(source, max_megapixels=max_megapixels)
        except ImageError as exc:
            raise ImageError(f"{label}: {exc}") from None
        except OSError as exc:  # unreadable (permissions, I/O error): name the whole path
            where = exc.filename if isinstance(exc.filename, str) else label
            raise ImageError(f"{where}: cannot read: {exc.strerror or exc}") from None
        work = images.prepare(rgb)
        out.append(QueryFeatures(label, None, histogram(work)))
        if need_embedding:
            crops.append(index.recipe.frame(work, index.embedder.input_size))
            todo.append(i)
    if todo:
        emb = index.embedder
        if emb.name != index.model:
            raise QueryError(f"the index was built with {index.model}, not {emb.name}")
        # as the build stored them (inputs of several shapes under the aspect framing)
        vecs = with_recipe(emb, index.recipe).embed(
            crops if index.recipe.pooling else np.stack(crops))
        for i, v in zip(todo, vecs, strict=True):
            out[i] = QueryFeatures(out[i].label, v, out[i].histogram)
    return out
