"""The SQLite catalog: one row per gallery file, indexed or skipped with its reason."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path

SCHEMA = """
CREATE TABLE images (
    path     TEXT PRIMARY KEY,   -- relative to the gallery root, '/'-separated
    row      INTEGER UNIQUE,     -- row in the .npy matrices; NULL when the file was skipped
    size     INTEGER,            -- bytes
    mtime_ns INTEGER,
    sha256   TEXT,               -- content hash (hex)
    format   TEXT, mode TEXT, width INTEGER, height INTEGER,
    exif     TEXT,               -- JSON object of selected EXIF tags
    error    TEXT                -- why the file was skipped; NULL when indexed
);
CREATE INDEX images_sha256 ON images(sha256);
"""


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


COLUMNS = [f.name for f in fields(Entry)]


def write(path: Path, entries: Iterable[Entry]) -> None:
    """Create a new catalog file holding ``entries``."""
    con = sqlite3.connect(path)
    try:
        con.executescript(SCHEMA)
        con.executemany(f"INSERT INTO images VALUES ({','.join('?' * len(COLUMNS))})",
                        (astuple(e) for e in entries))
        con.commit()
    finally:
        con.close()


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection (published catalogs never change)."""
    if not path.is_file():
        raise FileNotFoundError(path)
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)


def read_all(path: Path) -> Iterator[Entry]:
    con = connect(path)
    try:
        for rec in con.execute(f"SELECT {','.join(COLUMNS)} FROM images ORDER BY path"):
            yield Entry(*rec)
    finally:
        con.close()
