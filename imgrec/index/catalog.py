"""The SQLite catalog: one row per gallery file, indexed or skipped with its reason.

Every SQL statement on ``catalog.sqlite`` lives here. A published catalog is opened
read-only; its schema must be a real table ``images`` with the expected columns (a view
or a missing column is damage), and every statement runs under a time budget, so a
crafted file cannot make a search or a check run forever.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import Any

from imgrec.errors import IndexFormatError, QueryError
from imgrec.index import columns

SCHEMA = """
CREATE TABLE images (
    path     TEXT PRIMARY KEY,   -- relative to the gallery root, '/'-separated
    row      INTEGER UNIQUE,     -- row in the .npy matrices; NULL when the file was skipped
    size     INTEGER,            -- bytes
    mtime_ns INTEGER,
    sha256   TEXT,               -- content hash (hex)
    format   TEXT, mode TEXT, width INTEGER, height INTEGER,
    exif     TEXT,               -- JSON object of selected EXIF tags
    error    TEXT,               -- why the file was skipped; NULL when indexed
    decoder  TEXT,               -- pillow | heif | raw-preview | raw-demosaic
    taken    TEXT,               -- date taken, ISO 'YYYY-MM-DDTHH:MM:SS' (see columns.py)
    taken_from TEXT,             -- 'exif' (DateTimeOriginal) or 'mtime'
    camera_make TEXT, camera_model TEXT,
    orientation TEXT             -- landscape | portrait | square
);
CREATE INDEX images_sha256 ON images(sha256);
"""
#: The columns of catalogs written before the filter columns existed (still read: their
#: filter columns are derived on reading, and the next build writes them).
LEGACY_COLUMNS = ["path", "row", "size", "mtime_ns", "sha256", "format", "mode", "width",
                  "height", "exif", "error"]
#: seconds one statement may run before the catalog is refused as damaged (a sound
#: catalog of 400,000 rows answers its slowest statement, the integrity check, in ~2 s)
BUDGET_S = 60.0
_STEPS = 10_000  # virtual machine steps between two looks at the clock
_IN_CHUNK = 900  # bound parameters per ``IN (...)`` (SQLite allows 999)


@dataclass
class Entry:
    """One catalog row."""

    path: str
    row: int | None = None
    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""
    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    exif: str = "{}"
    error: str | None = None
    decoder: str = ""
    taken: str = ""
    taken_from: str = ""
    camera_make: str = ""
    camera_model: str = ""
    orientation: str = ""


COLUMNS = [f.name for f in fields(Entry)]


def _complete(e: Entry) -> tuple:
    """The row written for ``e``: its filter columns derived from EXIF, mtime and size."""
    return astuple(replace(e, **columns.derive(e.exif, e.mtime_ns, e.width, e.height)))


def write(path: Path, entries: Iterable[Entry]) -> None:
    """Create a new catalog file holding ``entries`` (their :data:`columns.DERIVED`
    columns are computed from their EXIF JSON, mtime and size)."""
    con = sqlite3.connect(path)
    try:
        con.executescript(SCHEMA)
        con.executemany(f"INSERT INTO images VALUES ({','.join('?' * len(COLUMNS))})",
                        (_complete(e) for e in entries))
        con.commit()
    finally:
        con.close()


class Connection:
    """A read-only connection to a published catalog whose schema has been checked.

    Each statement is bounded by ``budget_s`` seconds and returns all its rows; SQLite
    errors (and an exceeded budget) leave as :class:`IndexFormatError` naming the file.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path, budget_s: float = BUDGET_S) -> None:
        self.path, self.budget_s = Path(path), budget_s
        if not self.path.is_file():
            raise IndexFormatError(f"{self.path} is missing")
        self._deadline = 0.0
        #: whether the catalog predates the filter columns (:data:`LEGACY_COLUMNS`)
        self.legacy = False
        try:
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
        except sqlite3.Error as exc:
            raise IndexFormatError(f"{self.path} is damaged ({exc})") from None
        self._con.set_progress_handler(self._over, _STEPS)
        try:
            _check_schema(self)
        except BaseException:
            self.close()
            raise

    def _over(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement within the budget; returns every row."""
        self._deadline = time.monotonic() + self.budget_s
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc):
                raise IndexFormatError(f"{self.path} is damaged (a query ran over "
                                       f"{self.budget_s:g} s: a crafted or corrupt "
                                       "catalog)") from None
            raise IndexFormatError(f"{self.path} is damaged ({exc})") from None
        except sqlite3.Error as exc:
            raise IndexFormatError(f"{self.path} is damaged ({exc})") from None

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple:
        """The first row of a statement that returns one."""
        return self.execute(sql, args)[0]

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(path: Path, budget_s: float = BUDGET_S) -> Connection:
    """Open a published catalog read-only (see :class:`Connection`)."""
    return Connection(path, budget_s)


def _check_schema(con: Connection) -> None:
    path = con.path
    kinds = [k for (k,) in con.execute("SELECT type FROM sqlite_master WHERE name = 'images'")]
    if kinds != ["table"]:
        found = f"a {kinds[0]}" if kinds else "none"
        raise IndexFormatError(f"{path} has no images table (found {found})")
    cols = [r[1] for r in con.execute("PRAGMA table_info(images)")]
    con.legacy = cols == LEGACY_COLUMNS
    if cols != COLUMNS and not con.legacy:
        raise IndexFormatError(f"{path} has no images table with the expected columns "
                               f"(found {cols or 'none'})")


def _all(path: Path, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
    with connect(path) as con:
        return con.execute(sql, args)


def read_all(path: Path) -> Iterator[Entry]:
    """Every row (indexed and skipped), by path; a legacy catalog's rows come with their
    filter columns derived (and the decoder its formats imply)."""
    with connect(path) as con:
        legacy = con.legacy
        rows = con.execute(f"SELECT {','.join(LEGACY_COLUMNS if legacy else COLUMNS)} "
                           "FROM images ORDER BY path")
    out = [Entry(*rec) for rec in rows]
    if legacy:
        out = [replace(e, decoder=columns.legacy_decoder(e.format) if e.row is not None else "",
                       **columns.derive(e.exif, e.mtime_ns, e.width, e.height)) for e in out]
    return iter(out)


def paths_of_rows(path: Path, rows: Sequence[int]) -> dict[int, str]:
    """row -> path for the given matrix rows (absent rows are left out)."""
    found: dict[int, str] = {}
    with connect(path) as con:
        for s in range(0, len(rows), _IN_CHUNK):
            part = [int(r) for r in rows[s:s + _IN_CHUNK]]
            found.update(con.execute(f"SELECT row, path FROM images WHERE row IN "
                                     f"({','.join('?' * len(part))})", part))
    return found


def sha256_of(path: Path, paths: Sequence[str]) -> dict[str, str]:
    """path -> content hash for the given indexed paths (absent or skipped ones left out)."""
    found: dict[str, str] = {}
    with connect(path) as con:
        for s in range(0, len(paths), _IN_CHUNK):
            part = list(paths[s:s + _IN_CHUNK])
            found.update(con.execute(f"SELECT path, sha256 FROM images WHERE row IS NOT NULL "
                                     f"AND path IN ({','.join('?' * len(part))})", part))
    return found


def file_stats(path: Path) -> dict[str, tuple[int, int, bool]]:
    """path -> (size, mtime_ns, indexed) of every catalogued file."""
    return {p: (int(size or 0), int(mtime or 0), row is not None) for p, size, mtime, row in
            _all(path, "SELECT path, size, mtime_ns, row FROM images")}


def all_paths(path: Path) -> list[str]:
    """Every indexed path, in row order."""
    return [p for (p,) in _all(path, "SELECT path FROM images WHERE row IS NOT NULL "
                                     "ORDER BY row")]


def entry_of(path: Path, image_path: str) -> Entry | None:
    """The catalog row of one gallery path (filter columns derived for a legacy catalog)."""
    with connect(path) as con:
        legacy = con.legacy
        got = con.execute(f"SELECT {','.join(LEGACY_COLUMNS if legacy else COLUMNS)} FROM "
                          "images WHERE path = ?", (str(image_path),))
    if not got:
        return None
    e = Entry(*got[0])
    if legacy:
        e = replace(e, decoder=columns.legacy_decoder(e.format) if e.row is not None else "",
                    **columns.derive(e.exif, e.mtime_ns, e.width, e.height))
    return e


def row_of(path: Path, image_path: str) -> int | None:
    """The matrix row of a gallery path; None when it is not listed or was skipped."""
    got = _all(path, "SELECT row FROM images WHERE path = ?", (str(image_path),))
    return None if not got or got[0][0] is None else int(got[0][0])


def skipped(path: Path) -> list[tuple[str, str]]:
    """(path, reason) of every gallery file that could not be indexed, by path."""
    return [(p, e) for p, e in _all(path, "SELECT path, error FROM images WHERE row IS NULL "
                                          "ORDER BY path")]


def image_meta(path: Path, count: int) -> list[tuple[int, int, int, str]]:
    """(width, height, size, sha256) of every indexed row, in row order."""
    out: list[tuple[int, int, int, str]] = [(0, 0, 0, "")] * count
    for row, w, h, size, sha in _all(path, "SELECT row, width, height, size, sha256 FROM "
                                           "images WHERE row IS NOT NULL"):
        if 0 <= int(row) < count:
            out[int(row)] = (int(w or 0), int(h or 0), int(size or 0), str(sha or ""))
    return out


def rows_matching(path: Path, *, prefixes: Sequence[str] = (), after: str | None = None,
                  before: str | None = None, min_width: int = 0, min_height: int = 0,
                  formats: Sequence[str] = (), orientation: str | None = None) -> list[int]:
    """Indexed rows that pass every given condition, in row order (one statement).

    Args:
        prefixes: folder prefixes (``"Holidays/"``, ending in ``/``): a row passes when
            its path lies under any of them.
        after, before: ISO date texts: taken at or after ``after`` and before ``before``.
        min_width, min_height: the upright size at least this.
        formats: stored format names (``JPEG``, ``HEIF``, ...): any of them.
        orientation: ``landscape``, ``portrait`` or ``square``.

    Raises:
        QueryError: a date condition on a catalog that predates the date column.
    """
    sql, args = ["row IS NOT NULL"], []
    if prefixes:  # a range of the primary key per prefix: '/' + 1 is '0'
        sql.append("(" + " OR ".join("(path >= ? AND path < ?)" for _ in prefixes) + ")")
        for p in prefixes:
            args += [p, p[:-1] + "0"]
    if min_width:
        sql.append("width >= ?")
        args.append(int(min_width))
    if min_height:
        sql.append("height >= ?")
        args.append(int(min_height))
    if formats:
        sql.append(f"UPPER(format) IN ({','.join('?' * len(formats))})")
        args += [f.upper() for f in formats]
    if orientation:
        sql.append({"landscape": "width > height", "portrait": "height > width",
                    "square": "width = height AND width > 0"}[orientation])
    with connect(path) as con:
        if (after or before) and con.legacy:
            raise QueryError("this index was built before dates taken were recorded: sync "
                             "it (`imgrec index GALLERY --index DIR`) to filter by date")
        if after:
            sql.append("taken >= ?")
            args.append(after)
        if before:
            sql.append("taken < ? AND taken != ''")
            args.append(before)
        return [r for (r,) in con.execute(f"SELECT row FROM images WHERE {' AND '.join(sql)} "
                                          "ORDER BY row", args)]


def decoder_counts(path: Path) -> dict[str, int]:
    """Indexed images per decoder (``pillow``, ``heif``, ...), most common first; empty
    for a catalog that predates the column."""
    with connect(path) as con:
        if con.legacy:
            return {}
        return dict(con.execute("SELECT COALESCE(NULLIF(decoder, ''), '?'), COUNT(*) FROM "
                                "images WHERE row IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"))


def format_counts(path: Path) -> dict[str, int]:
    """Indexed images per file format ('?' where none is recorded), most common first."""
    return dict(_all(path, "SELECT COALESCE(NULLIF(format, ''), '?'), COUNT(*) FROM images "
                           "WHERE row IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"))
