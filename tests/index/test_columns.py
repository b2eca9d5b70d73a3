"""The catalog's filter columns: date taken (EXIF or mtime), camera, orientation, decoder;
catalogs written before them still open, answer, and are migrated by the next build."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from imgrec import Index, build_index
from imgrec.errors import QueryError
from imgrec.index import catalog, columns
from imgrec.index import format as F
from imgrec.index.writer import current_version

FIXTURES = Path(__file__).parent / "fixtures"


def _jpeg(path: Path, size: tuple[int, int], date: str | None = None, make: str = "",
          model: str = "", colour=(200, 40, 40)) -> None:
    ex = Image.Exif()
    if make:
        ex[0x010F], ex[0x0110] = make, model
    if date:
        ex.get_ifd(0x8769)[0x9003] = date
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", exif=ex.tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def test_derived_columns() -> None:
    assert columns.exif_date("2019:07:14 18:02:11") == "2019-07-14T18:02:11"
    assert columns.exif_date("0000:00:00 00:00:00") == columns.exif_date(7) == ""
    got = columns.derive('{"DateTimeOriginal": "2019:07:14 18:02:11", "Make": " Canon\\u0000"}',
                         0, 30, 40)
    assert got == {"taken": "2019-07-14T18:02:11", "taken_from": "exif", "camera_make": "Canon",
                   "camera_model": "", "orientation": "portrait"}
    t = 1_600_000_000
    got = columns.derive("not json", t * 10**9, 5, 5)
    assert got["taken"] == datetime.fromtimestamp(t).isoformat() and got["taken_from"] == "mtime"
    assert got["orientation"] == "square"
    assert columns.derive(None, -1, 0, 0)["taken_from"] == ""


def test_build_records_the_columns(tmp_path: Path, tiny_embedder) -> None:
    g = tmp_path / "g"
    _jpeg(g / "a.jpg", (90, 60), "2019:07:14 18:02:11", "Canon", "EOS 5D")
    _jpeg(g / "b.jpg", (60, 90), colour=(10, 200, 10))
    os.utime(g / "b.jpg", ns=(1_500_000_000 * 10**9,) * 2)
    build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    e = {x.path: x for x in Index.open(tmp_path / "ix", embedder=tiny_embedder).entries()}
    a, b = e["a.jpg"], e["b.jpg"]
    assert (a.taken, a.taken_from, a.camera_make, a.camera_model, a.orientation, a.decoder) == (
        "2019-07-14T18:02:11", "exif", "Canon", "EOS 5D", "landscape", "pillow")
    assert (b.taken, b.taken_from, b.orientation) == (
        datetime.fromtimestamp(1_500_000_000).isoformat(), "mtime", "portrait")
    # moved: the new path keeps the decoder and gets its own mtime date
    (g / "sub").mkdir()
    shutil.move(g / "b.jpg", g / "sub" / "b.jpg")
    r = build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert r.moved == 1 and r.computed == 0
    e = {x.path: x for x in Index.open(tmp_path / "ix", embedder=tiny_embedder).entries()}
    assert (e["sub/b.jpg"].decoder, e["sub/b.jpg"].taken_from) == ("pillow", "mtime")


def _make_legacy(index_dir: Path) -> None:
    """Rewrite the published catalog with the previous release's columns (checksums redone)."""
    v = current_version(index_dir)
    cat = v / F.CATALOG
    con = sqlite3.connect(cat)
    con.executescript("CREATE TABLE old AS SELECT " + ",".join(catalog.LEGACY_COLUMNS)
                      + " FROM images; DROP TABLE images; ALTER TABLE old RENAME TO images;"
                      " VACUUM;")
    con.close()
    m = F.Manifest.read(v)
    m = F.with_checksums(F.Manifest(**{**m.to_json(), "checksums": {}}), v)
    (v / F.MANIFEST).write_text(json.dumps(m.to_json()))


def test_a_legacy_catalog_answers_and_the_next_build_migrates_it(tmp_path: Path,
                                                                  tiny_embedder) -> None:
    g = tmp_path / "g"
    _jpeg(g / "a.jpg", (90, 60), "2019:07:14 18:02:11", "Canon", "EOS 5D")
    _jpeg(g / "b.jpg", (60, 90), colour=(10, 200, 10))
    build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    _make_legacy(tmp_path / "ix")
    idx = Index.open(tmp_path / "ix", embedder=tiny_embedder)
    a = {x.path: x for x in idx.entries()}["a.jpg"]
    assert (a.taken, a.camera_make, a.orientation, a.decoder) == (
        "2019-07-14T18:02:11", "Canon", "landscape", "pillow")  # derived on reading
    assert idx.rows_matching(orientation="portrait").tolist() == [1]
    assert idx.facts().decoders == {}
    with pytest.raises(QueryError, match="sync it"):
        idx.rows_matching(after="2019-01-01")
    del idx
    r = build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert r.unchanged == 2 and r.computed == 0  # nothing decoded again
    idx = Index.open(tmp_path / "ix", embedder=tiny_embedder)
    assert idx.rows_matching(after="2019-07-14", before="2019-07-15").tolist() == [0]
    assert idx.facts().decoders == {"pillow": 2}
    with catalog.connect(idx.dir / F.CATALOG) as con:
        assert not con.legacy


def test_the_previous_release_fixture_reads_as_legacy(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "v1-index", tmp_path / "v1")
    idx = Index.open(tmp_path / "v1")
    assert len(idx.rows_matching()) == len(idx)
    assert all(e.decoder in ("", "pillow") for e in idx.entries())
