"""Restricted search: a :class:`Where` filter becomes a row subset of the index, and the
ranking runs on those rows only, so the answer is the exact top-k among the rows that pass.

The rows come from one catalog statement (folders, dates, size, formats, orientation) and
the stored labels (``label``). A selective filter (under :data:`GATHER_BELOW` of the
rows) gathers its rows into a small matrix and scans only that; a broad one scans every
row and drops the others from the candidates (a row mask in the top-k selection), so
neither reads more than the unfiltered search does.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from imgrec.errors import QueryError
from imgrec.index.columns import ORIENTATIONS
from imgrec.index.half import HalfCopy
from imgrec.search.methods import Scan
from imgrec.search.rank import rank

if TYPE_CHECKING:
    from imgrec.index.index import Index

#: below this share of the rows a filter's rows are gathered and scanned alone
GATHER_BELOW = 0.25
#: a scan of fewer values than this runs its kernels on the calling thread only: waking
#: the other threads costs more than the scan (several ms each on a busy machine)
ONE_THREAD_BELOW = 8_000_000
#: format names a user may give, as the catalog stores them (others are upper-cased)
FORMAT_ALIASES = {"JPG": "JPEG", "JPE": "JPEG", "TIF": "TIFF", "HEIC": "HEIF", "JP2": "JPEG2000",
                  "J2K": "JPEG2000", "JPX": "JPEG2000", "JPEG-2000": "JPEG2000"}
_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")


def parse_date(text: Any, what: str = "date") -> str:
    """A date as the catalog's ISO text: ``2019``, ``2019-07``, ``2019-07-14`` or an ISO
    date and time (``2019-07-14T18:00``) mean the start of that year, month, day, minute.

    Example:
        >>> parse_date("2019-7"), parse_date("2019-07-14 18:05")
        ('2019-07-01T00:00:00', '2019-07-14T18:05:00')
    """
    if isinstance(text, datetime | date):
        text = text.isoformat()
    m = _DATE.fullmatch(text.strip()) if isinstance(text, str) else None
    try:
        if m:
            y, mo, d = (int(g) if g else 1 for g in m.groups())
            return datetime(y, mo, d).isoformat(timespec="seconds")
        if isinstance(text, str):
            return datetime.fromisoformat(text.strip()).replace(tzinfo=None).isoformat(
                timespec="seconds")
    except ValueError:
        pass
    raise QueryError(f"{what} must be a date like 2019, 2019-07 or 2019-07-14, got {text!r}")


def _texts(value: Any, what: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value or ())
    if not all(isinstance(v, str) and v.strip() for v in items):
        raise QueryError(f"{what} must be text (or a list of texts), got {value!r}")
    return tuple(v.strip() for v in items)


def _folder(text: str) -> str:
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise QueryError(f"folder {text!r} must lie inside the gallery (no '..')")
    return "/".join(parts) + "/" if parts else ""


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise QueryError(f"{what} must be a whole number of pixels >= 0, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Where:
    """Which rows a search ranks; every given condition must hold.

    Attributes:
        folders: gallery folders (``"Holidays"``, ``"2019/Rome"``); a row passes when it
            lies under any of them.
        after, before: date taken at or after ``after`` and before ``before``
            (see :func:`parse_date`; ``taken`` is EXIF DateTimeOriginal, else the mtime).
        min_width, min_height: the upright image at least this large, in pixels.
        formats: file formats, any of them (``jpeg``, ``png``, ``heic``, ``dng``, ...).
        orientation: ``landscape``, ``portrait`` or ``square``.
        label: ImageNet label text (``"dog"``, ``"lakeside"``): a matching class among
            the image's top-5 labels (see :func:`imgrec.insights.labels.match_classes`).

    Example:
        >>> Where.of({"folders": "Holidays/", "after": "2019"}).after
        '2019-01-01T00:00:00'
    """

    folders: tuple[str, ...] = ()
    after: str | None = None
    before: str | None = None
    min_width: int = 0
    min_height: int = 0
    formats: tuple[str, ...] = ()
    orientation: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__  # normalise in place: the object is frozen
        put(self, "folders", tuple(_folder(f) for f in _texts(self.folders, "folders")))
        for name in ("after", "before"):
            if getattr(self, name) is not None:
                put(self, name, parse_date(getattr(self, name), name))
        put(self, "min_width", _size(self.min_width, "min_width"))
        put(self, "min_height", _size(self.min_height, "min_height"))
        fmts = tuple(f.upper().lstrip(".") for f in _texts(self.formats, "formats"))
        put(self, "formats", tuple(FORMAT_ALIASES.get(f, f) for f in fmts))
        if self.orientation is not None and self.orientation not in ORIENTATIONS:
            raise QueryError(f"orientation must be one of {', '.join(ORIENTATIONS)}, "
                             f"got {self.orientation!r}")
        if self.label is not None and (not isinstance(self.label, str)
                                       or not self.label.strip()):
            raise QueryError(f"label must be some text, got {self.label!r}")

    @classmethod
    def of(cls, value: Where | Mapping[str, Any] | None) -> Where | None:
        """A :class:`Where` from itself, a dict of its fields, or None (no filter)."""
        if value is None or isinstance(value, Where):
            return value
        if not isinstance(value, Mapping):
            raise QueryError(f"where must be a Where or a dict, not {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise QueryError(f"unknown filter {', '.join(unknown)}; use "
                             f"{', '.join(sorted(known))}")
        return cls(**dict(value))

    def rows(self, index: Index) -> np.ndarray | None:
        """The sorted rows that pass (None: every row passes)."""
        catalog_part = {"prefixes": tuple(f for f in self.folders if f), "after": self.after,
                        "before": self.before, "min_width": self.min_width,
                        "min_height": self.min_height, "formats": self.formats,
                        "orientation": self.orientation}
        if "" in self.folders:
            catalog_part["prefixes"] = ()  # the gallery root: everything
        rows = None
        if any(catalog_part.values()):
            rows = index.rows_matching(**catalog_part)
        if self.label is not None:
            lab = label_rows(index, self.label)
            rows = lab if rows is None else np.intersect1d(rows, lab, assume_unique=True)
        return rows


#: each filter's name on the command line (error messages name the option a value came from)
CLI_OPTIONS = {"folders": "--in", "after": "--after", "before": "--before",
               "min_size": "--min-size", "formats": "--format", "orientation": "--orientation",
               "label": "--has-label"}
#: each filter's parameter in the HTTP API (``in`` and ``format`` repeat)
API_OPTIONS = {"folders": "in", "after": "after", "before": "before", "min_size": "min_size",
               "formats": "format", "orientation": "orientation", "label": "has_label"}
_MIN_SIZE = re.compile(r"\s*(\d{1,9})\s*[xX×]\s*(\d{1,9})\s*")


def from_options(folders: Any = (), after: str | None = None, before: str | None = None,
                 min_size: str | None = None, formats: Any = (), orientation: str | None = None,
                 label: str | None = None, names: Mapping[str, str] = CLI_OPTIONS
                 ) -> Where | None:
    """The filter of a search's options as a user types them (the command line's flags, the
    HTTP API's parameters), or None when none is given. ``min_size`` is ``WIDTHxHEIGHT``.

    Raises:
        QueryError: a value is not valid; the one-line message starts with its option's
            name in ``names``.

    Example:
        >>> from_options(folders=["2019"], min_size="1920x1080").min_width
        1920
        >>> from_options(min_size="big")
        Traceback (most recent call last):
        imgrec.errors.QueryError: --min-size must be WIDTHxHEIGHT in pixels, e.g. 1920x1080, not 'big'
    """
    w = h = 0
    if min_size is not None and str(min_size).strip():
        m = _MIN_SIZE.fullmatch(str(min_size))
        if m is None:
            raise QueryError(f"{names['min_size']} must be WIDTHxHEIGHT in pixels, e.g. "
                             f"1920x1080, not {str(min_size)[:40]!r}")
        w, h = int(m.group(1)), int(m.group(2))
    given = {"folders": tuple(folders or ()), "after": after or None,
             "before": before or None, "formats": tuple(formats or ()),
             "orientation": orientation or None, "label": label or None}
    if not any(given.values()) and not (w or h):
        return None
    for key, value in given.items():
        try:
            Where(**{key: value})
        except QueryError as exc:
            raise QueryError(f"{names[key]}: {exc}") from None
    return Where(min_width=w, min_height=h, **given)


def label_rows(index: Index, text: str) -> np.ndarray:
    """Rows with an ImageNet class matching ``text`` among their top-5 labels."""
    from imgrec.insights.labels import label_scores, match_classes

    if not index.has_labels:
        raise QueryError("this index holds no ImageNet labels (its backbone has no classifier, "
                         "or it was built before labels were kept): rebuild it with --full")
    classes = match_classes(text)
    if not classes:
        raise QueryError(f"no ImageNet class matches the label filter {text.strip()!r}")
    return np.flatnonzero(label_scores(index, classes) > 0)


@dataclass(frozen=True)
class Restricted:
    """A :class:`Scan` restricted to some rows: what to rank, and how to map back.

    Attributes:
        scan: the matrix to rank (the gathered rows, or the whole one).
        mask: (n,) bool for a broad filter over the whole matrix, else None.
        back: positions of ``scan`` -> rows of the index (None: the same).
    """

    scan: Scan
    mask: np.ndarray | None = None
    back: np.ndarray | None = None

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """Index rows of positions in :attr:`scan`."""
        return positions if self.back is None else self.back[positions]


def restrict(scan: Scan, rows: np.ndarray | None) -> Restricted:
    """``scan`` limited to ``rows`` (sorted; None: all): gathered when few, masked when many.

    Gathered rows keep their order, so ties are still broken by row number.
    """
    n = len(scan.data)
    if rows is None or len(rows) == n:
        return Restricted(scan)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # one run (a folder: rows are
        lo, hi = int(rows[0]), int(rows[-1]) + 1           # numbered in path order): a view
        half = scan.half
        return Restricted(Scan(scan.data[lo:hi], None if scan.norms is None else
                               scan.norms[lo:hi],
                               None if half is None else HalfCopy(half.data[lo:hi],
                                                                  half.errors[lo:hi])),
                          None, rows)
    if len(rows) < GATHER_BELOW * n:
        # (a plain-array view of the memory map gathers about 3x faster than the map)
        norms = None if scan.norms is None else np.asarray(scan.norms)[rows]
        data = np.ascontiguousarray(np.asarray(scan.data)[rows])
        return Restricted(Scan(data, norms, None), None, rows)
    mask = np.zeros(n, bool)
    mask[rows] = True
    return Restricted(scan, mask)


def ranked(metric: str, r: Restricted, q: np.ndarray, k: int
           ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """:func:`~imgrec.search.rank.rank` over a restricted scan, in index rows."""
    with _threads_for(r.scan.data):
        per, comb = rank(metric, r.scan.data, q, k, r.scan.norms, r.scan.half, r.mask)
    return [(r.rows(a), v) for a, v in per], (r.rows(comb[0]), comb[1])


@contextlib.contextmanager
def _threads_for(data: np.ndarray) -> Iterator[None]:
    """One kernel thread (for this calling thread only) while a small matrix is ranked."""
    if data.size >= ONE_THREAD_BELOW:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)  # thread-local: other searches keep their threads
    try:
        yield
    finally:
        numba.set_num_threads(before)
