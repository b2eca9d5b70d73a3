"""The catalog: every query, the schema it requires, and the time budget of a statement."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from imgrec import Index
from imgrec.errors import IndexFormatError
from imgrec.index import catalog, integrity
from imgrec.index.verify import verify

ENTRIES = [
    catalog.Entry("b.png", 1, 20, 5, "bb", "PNG", "RGB", 30, 40),
    catalog.Entry("a.jpg", 0, 10, 4, "aa", "JPEG", "RGB", 300, 200),
    catalog.Entry("c.gif", None, 7, 3, error="not an image"),
    catalog.Entry("d.jpg", 2, 12, 6, "dd", "JPEG", "L", 1, 2),
    catalog.Entry("e", 3, 1, 1, "ee", ""),
]
RECURSIVE_VIEW = """
ALTER TABLE images RENAME TO old_images;
CREATE VIEW images(path, row, size, mtime_ns, sha256, format, mode, width, height, exif,
                   error) AS
    WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c)
    SELECT 'p' || x, x, 0, 0, '', '', '', 0, 0, '{}', NULL FROM c;
"""


@pytest.fixture
def cat(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.sqlite"
    catalog.write(path, ENTRIES)
    return path


def test_queries(cat: Path) -> None:
    assert [e.path for e in catalog.read_all(cat)] == ["a.jpg", "b.png", "c.gif", "d.jpg", "e"]
    assert catalog.paths_of_rows(cat, [2, 0, 9]) == {2: "d.jpg", 0: "a.jpg"}
    assert catalog.all_paths(cat) == ["a.jpg", "b.png", "d.jpg", "e"]
    assert (catalog.row_of(cat, "d.jpg"), catalog.row_of(cat, "c.gif"),
            catalog.row_of(cat, "nope")) == (2, None, None)
    assert catalog.skipped(cat) == [("c.gif", "not an image")]
    assert catalog.image_meta(cat, 4) == [(300, 200, 10, "aa"), (30, 40, 20, "bb"),
                                          (1, 2, 12, "dd"), (0, 0, 1, "ee")]
    assert catalog.format_counts(cat) == {"JPEG": 2, "?": 1, "PNG": 1}
    integrity.check(cat, 4)
    with pytest.raises(IndexFormatError, match="indexes 4 rows"):
        integrity.check(cat, 5)


def test_many_rows_are_looked_up_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    catalog.write(path, [catalog.Entry(f"{i:05d}.jpg", i) for i in range(2500)])
    rows = list(range(2499, -1, -3))
    assert catalog.paths_of_rows(path, rows) == {r: f"{r:05d}.jpg" for r in rows}


def _edit(path: Path, script: str) -> None:
    con = sqlite3.connect(path)
    con.executescript(script)
    con.commit()
    con.close()


@pytest.mark.parametrize(("script", "message"), [
    ("ALTER TABLE images RENAME TO x; CREATE VIEW images AS SELECT * FROM x;", "found a view"),
    ("ALTER TABLE images DROP COLUMN exif;", "expected columns"),
    ("DROP TABLE images;", "found none"),
    (RECURSIVE_VIEW, "found a view"),
])
def test_schema_is_checked(cat: Path, script: str, message: str) -> None:
    _edit(cat, script)
    with pytest.raises(IndexFormatError, match=message):
        catalog.all_paths(cat)
    with pytest.raises(IndexFormatError, match=message):
        integrity.check(cat, 4)


def test_a_statement_over_budget_is_refused(cat: Path) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    with catalog.connect(cat, budget_s=0.2) as con, \
            pytest.raises(IndexFormatError, match=r"ran over 0\.2 s"):
        con.execute(endless)
    with catalog.connect(cat) as con:  # the budget restarts with each statement
        assert con.one("SELECT count(*) FROM images") == (5,)


def test_missing_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="is missing"):
        catalog.all_paths(tmp_path / "none.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"garbage" * 700)
    with pytest.raises(IndexFormatError, match="damaged"):
        catalog.all_paths(tmp_path / "junk.sqlite")


def test_recursive_view_neither_hangs_search_nor_verify(ix: Path) -> None:
    """A crafted catalog whose ``images`` is an endless view: refused, in a real process."""
    version = ix / (ix / "CURRENT").read_text().strip()
    _edit(version / "catalog.sqlite", RECURSIVE_VIEW)
    for args in (["search", "@a/img_00.jpg"], ["info", "--verify"]):  # first: a hang fails
        run = subprocess.run([sys.executable, "-m", "imgrec", *args, "--index", str(ix)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "no images table" in run.stdout + run.stderr
        assert "Traceback" not in run.stderr
    with pytest.raises(IndexFormatError, match="no images table"):
        Index.open(ix)
    assert any("no images table" in p for p in verify(ix))
