"""Query view models: uploaded images, the current query set, 👍/👎 feedback, the label filter."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgrec import images
from imgrec.app.formatting import format_bytes
from imgrec.errors import ImageError
from imgrec.index.index import Index, Stored
from imgrec.search.rank import MAX_QUERIES, Hit

#: Upload size limit (bytes) checked before decoding (Streamlit enforces its own too).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class QueryImage:
    """An uploaded query image kept as bytes (survives page switches in session state)."""

    name: str
    data: bytes = field(repr=False)

    @property
    def key(self) -> str:
        """A short content key for caches."""
        return hashlib.sha1(self.data).hexdigest()[:16]

    def as_file(self) -> io.BytesIO:
        """A fresh binary file object named like the upload (what ``Index.search`` takes)."""
        f = io.BytesIO(self.data)
        f.name = self.name
        return f


@dataclass(frozen=True)
class QuerySet:
    """The current queries of one user: uploaded images or stored gallery paths."""

    uploads: tuple[QueryImage, ...] = ()
    stored: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "stored" if self.stored else "upload" if self.uploads else "none"

    def __bool__(self) -> bool:
        return bool(self.uploads or self.stored)

    def __len__(self) -> int:
        return len(self.stored) if self.stored else len(self.uploads)

    def queries(self) -> list[Any]:
        """What to pass to :meth:`Index.search`."""
        if self.stored:
            return [Stored(p) for p in self.stored]
        return [u.as_file() for u in self.uploads]

    def cache_key(self) -> tuple[str, ...]:
        if self.stored:
            return tuple(f"stored:{p}" for p in self.stored)
        return tuple(f"upload:{u.name}:{u.key}" for u in self.uploads)

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> QuerySet:
        """Stored queries (at most five, duplicates dropped, order kept)."""
        return cls(stored=tuple(dict.fromkeys(paths))[:MAX_QUERIES])


@dataclass(frozen=True)
class UploadCheck:
    """Which uploads can be searched, and a message for each one refused."""

    accepted: tuple[QueryImage, ...]
    messages: tuple[str, ...]


def image_problem(data: bytes) -> str | None:
    """Why ``data`` cannot be used as a query image, or None when it decodes."""
    if len(data) > MAX_UPLOAD_BYTES:
        return f"too large ({format_bytes(len(data))}; limit {format_bytes(MAX_UPLOAD_BYTES)})"
    try:
        images.load_image(data)
    except ImageError as exc:
        return str(exc)
    except MemoryError:
        return "too large: out of memory while decoding"
    return None


def _name_and_bytes(f: Any) -> tuple[str, bytes]:
    if isinstance(f, QueryImage):
        return f.name, f.data
    if isinstance(f, tuple):
        return str(f[0]), bytes(f[1])
    data = f.getvalue() if hasattr(f, "getvalue") else f.read()
    return str(getattr(f, "name", "upload")), bytes(data)


def validate_uploads(files: Sequence[Any], problem: Callable[[bytes], str | None] = image_problem
                     ) -> UploadCheck:
    """Check uploads one by one: at most five are kept, each bad file is named with a reason.

    Args:
        files: uploaded files (Streamlit ``UploadedFile``, ``(name, bytes)`` tuples or
            :class:`QueryImage`), in upload order.
        problem: the per-file check (default: decode with :func:`imgrec.images.load_image`).

    Example:
        >>> check = validate_uploads([("a.txt", b"hello")])
        >>> check.accepted, check.messages
        ((), ('a.txt: not an image (unrecognised format)',))
    """
    accepted: list[QueryImage] = []
    messages: list[str] = []
    for f in files:
        name, data = _name_and_bytes(f)
        if len(accepted) == MAX_QUERIES:
            messages.append(f"{name}: not searched — at most {MAX_QUERIES} query images at a "
                            f"time (the first {MAX_QUERIES} valid ones are used)")
            continue
        why = problem(data)
        if why:
            messages.append(f"{name}: {why}")
        else:
            accepted.append(QueryImage(name, data))
    return UploadCheck(tuple(accepted), tuple(messages))


@dataclass(frozen=True)
class Feedback:
    """Gallery images a user marked 👍 (more like this) or 👎 (less like this), at most
    five of each; marking one kind removes the other."""

    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.positives or self.negatives)

    def mark(self, path: str, kind: str) -> Feedback:
        """Toggle ``path`` as ``"positive"`` or ``"negative"``; a sixth of a kind is ignored.

        Example:
            >>> Feedback().mark("a.jpg", "negative").mark("a.jpg", "positive")
            Feedback(positives=('a.jpg',), negatives=())
        """
        pos = [p for p in self.positives if p != path]
        neg = [p for p in self.negatives if p != path]
        target = pos if kind == "positive" else neg
        current = self.positives if kind == "positive" else self.negatives
        if path not in current and len(target) < MAX_QUERIES:
            target.append(path)
        return Feedback(tuple(pos), tuple(neg))

    def state(self, path: str) -> str | None:
        return ("positive" if path in self.positives else "negative" if path in self.negatives
                else None)


def refine_queries(qs: QuerySet, feedback: Feedback) -> list[Any]:
    """The positive examples of a refined search: the current queries, then the images
    marked 👍 (at most five in all, duplicates dropped)."""
    out: list[Any] = []
    seen: set[str] = set()
    if qs.stored:
        for p in qs.stored:
            out.append(Stored(p))
            seen.add(p)
    else:
        out.extend(u.as_file() for u in qs.uploads)
    for p in feedback.positives:
        if p not in seen:
            out.append(Stored(p))
            seen.add(p)
    return out[:MAX_QUERIES]


def filter_hits_by_label(index: Index, hits: Sequence[Hit], text: str) -> list[Hit]:
    """The hits whose stored top-5 ImageNet labels include a class matching ``text``
    (see :func:`imgrec.insights.labels.match_classes`), ranks unchanged. Without labels in the
    index, or without matching classes, nothing passes."""
    from imgrec.insights.labels import match_classes

    classes = np.asarray(match_classes(text), dtype=np.int64)
    if not hits or index.labels_top5 is None or not len(classes):
        return []
    rows = np.asarray([h.row for h in hits], dtype=np.int64)
    top5 = np.asarray(index.labels_top5[np.sort(rows)]).astype(np.int64)
    ok = dict(zip(np.sort(rows).tolist(), np.isin(top5, classes).any(1).tolist(), strict=True))
    return [h for h in hits if ok[h.row]]


def label_hint(text: str) -> str | None:
    """Why a label filter matches nothing (the hint a label search gives), or None.

    Example:
        >>> label_hint("cat") is None
        True
    """
    from imgrec.insights.labels import GROUPS, match_classes

    if match_classes(text):
        return None
    return (f"no ImageNet class matches {text.strip()!r}; try a broader word "
            f"(e.g. {', '.join(sorted(GROUPS)[:6])}, ...)")
