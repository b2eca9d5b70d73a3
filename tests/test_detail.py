"""imgrec.insights.detail: one image's catalog facts, duplicate tier and neighbours; the
original is served only from under the gallery root."""

from __future__ import annotations

import io
import os
import shutil

import pytest
from PIL import Image

from imgrec import Index, build_index
from imgrec.errors import QueryError
from imgrec.insights.detail import image_detail, original
from imgrec.insights.duplicates import find_duplicates
from imgrec.search.query import Stored


@pytest.fixture()
def idx(write_gallery, tiny_embedder, tmp_path):
    g = write_gallery(tmp_path / "g", variants=4)
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = "Canon", "EOS 5D"
    ex.get_ifd(0x8769)[0x9003] = "2019:07:14 18:02:11"
    buf = io.BytesIO()
    Image.open(g / "coffee/coffee_orig.jpg").save(buf, "JPEG", exif=ex.tobytes())
    (g / "dated.jpg").write_bytes(buf.getvalue())
    shutil.copy(g / "chelsea/chelsea_orig.jpg", g / "copy.jpg")  # an exact duplicate
    (tmp_path / "secret.jpg").write_bytes((g / "dated.jpg").read_bytes())
    os.symlink(tmp_path / "secret.jpg", g / "outside.jpg")  # never indexed: leads out
    build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    return Index.open(tmp_path / "ix", embedder=tiny_embedder)


def test_detail_of_one_image(idx):
    d = image_detail(idx, "dated.jpg")
    w, h = Image.open(idx.root / "dated.jpg").size
    assert (d.format, d.decoder, d.width, d.height) == ("JPEG", "pillow", w, h)
    assert (d.taken, d.taken_from, d.camera) == ("2019-07-14T18:02:11", "exif", "Canon EOS 5D")
    assert d.orientation == "landscape" and d.size_bytes == (idx.root / "dated.jpg").stat().st_size
    assert d.labels == [] and d.duplicate is None  # no classifier; no report given
    want = [h.path for h in idx.search(Stored("dated.jpg"), k=11).per_query[0]
            if h.path != "dated.jpg"][:10]
    assert [h.path for h in d.neighbours] == want and len(want) == 10
    assert d.file == idx.root / "dated.jpg"


def test_duplicate_tier_from_a_report(idx):
    report = find_duplicates(idx)
    d = image_detail(idx, "copy.jpg", neighbours=0, duplicates=report)
    group = next(g for g in report.groups if any(m.path == "copy.jpg" for m in g.members))
    assert d.duplicate is not None and d.duplicate[:2] == (group.tier, group.members[0].path)
    assert group.members[0].path in ("copy.jpg", "chelsea/chelsea_orig.jpg")
    assert d.duplicate[2] and d.neighbours == []
    assert d.duplicate_group == tuple(m.path for m in group.members)
    exact = find_duplicates(idx, near=False)  # copy.jpg and its original only
    assert image_detail(idx, "dated.jpg", neighbours=0, duplicates=exact).duplicate_group == ()


def test_the_original_is_served_only_from_the_gallery(idx):
    assert original(idx, "dated.jpg") == idx.root / "dated.jpg"
    for bad in ("../secret.jpg", "outside.jpg", str(idx.root / "dated.jpg"), "nope.jpg"):
        with pytest.raises(QueryError):
            original(idx, bad)
    with pytest.raises(QueryError):
        image_detail(idx, "outside.jpg")
