"""The catalog's integrity checks: the cheap one run on every open and the thorough audit.

Split from :mod:`imgrec.index.catalog` (which holds every other statement) so that the
catalog module reads as the format and its queries; both open the file only through
:func:`imgrec.index.catalog.connect`, read-only and under its time budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgrec.errors import IndexFormatError
from imgrec.index.catalog import connect


def header_problem(path: Path) -> str | None:
    """Cheap truncation check: file length against the page count in the header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
        size = os.stat(path).st_size
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return f"{path} is damaged (not an SQLite database)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96] and pages > 0  # the header's page count is current
    if valid and size != page * pages:
        return (f"{path} is damaged ({size} bytes, its header says {pages} pages of {page} = "
                f"{page * pages} bytes: truncated or appended to)")
    return None


def check(path: Path, count: int) -> None:
    """The check run on open: an SQLite file of the right length whose b-trees are sound
    (``PRAGMA quick_check``: ~0.3 s for 400,000 rows), with the expected schema, and
    whose indexed rows are exactly ``0..count-1``.

    Raises:
        IndexFormatError: naming the file and what is wrong with it.
    """
    if not Path(path).is_file():
        raise IndexFormatError(f"{path} is missing")
    problem = header_problem(path)
    if problem:
        raise IndexFormatError(problem)
    with connect(path) as con:
        quick = [r[0] for r in con.execute("PRAGMA quick_check")]
        if quick != ["ok"]:
            raise IndexFormatError(f"{path} is damaged (SQLite: "
                                   f"{' '.join(quick[0].split())[:200]})")
        got = con.one("SELECT count(*), min(row), max(row) FROM images "
                      "WHERE row IS NOT NULL")
    want = (count, 0, count - 1) if count else (0, None, None)
    if tuple(got) != want:
        raise IndexFormatError(f"{path} indexes {got[0]} rows ({got[1]}..{got[2]}); the manifest "
                               f"says {count} rows (0..{count - 1})")


@dataclass(frozen=True)
class Audit:
    """What the thorough check counts in a catalog (see :func:`audit`)."""

    integrity: list[str]
    rows: int
    distinct: int
    lo: int | None
    hi: int | None
    skipped: int
    no_reason: int
    with_error: int
    paths: list[Any]


def audit(path: Path) -> Audit:
    """SQLite's full integrity check and the row counts the thorough check compares.

    Raises:
        IndexFormatError: the file cannot be read as a catalog.
    """
    with connect(path) as con:
        integrity = [r[0] for r in con.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            return Audit(integrity, 0, 0, None, None, 0, 0, 0, [])
        rows, distinct, lo, hi = con.one(
            "SELECT count(row), count(DISTINCT row), min(row), max(row) FROM images")
        skipped_n = con.one("SELECT count(*) FROM images WHERE row IS NULL")[0]
        no_reason = con.one("SELECT count(*) FROM images WHERE row IS NULL AND "
                            "(error IS NULL OR error = '')")[0]
        with_error = con.one("SELECT count(*) FROM images WHERE row IS NOT NULL AND "
                             "error IS NOT NULL")[0]
        paths = [p for (p,) in con.execute("SELECT path FROM images")]
    return Audit(integrity, rows, distinct, lo, hi, skipped_n, no_reason, with_error, paths)
