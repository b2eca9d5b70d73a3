"""imgrec.thumbcache: thumbnails on disk beside the index, keyed by content and size,
bounded by total bytes (least recently used evicted), never inside the gallery."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from imgrec import Index, build_index, thumbcache
from imgrec.thumbcache import ThumbCache


@pytest.fixture()
def built(write_gallery, tiny_embedder, tmp_path):
    g = write_gallery(tmp_path / "g")
    build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    return g, Index.open(tmp_path / "ix", embedder=tiny_embedder)


def test_cached_beside_the_index_and_reused(built, monkeypatch):
    g, idx = built
    cache = ThumbCache.for_index(idx)
    assert cache.folder == idx.index_dir / "thumbs"
    first = cache.thumbnail(idx, "chelsea/chelsea_orig.jpg")
    im = Image.open(io.BytesIO(first))
    assert (im.format, im.size) == ("JPEG", (256, 256))
    sha = idx.sha256_of(["chelsea/chelsea_orig.jpg"])["chelsea/chelsea_orig.jpg"]
    assert cache.path_of(sha, 256).read_bytes() == first
    assert not any(p.name.endswith(".jpg") and "thumbs" in str(p) for p in g.rglob("*"))

    def no_render(*a, **k):
        raise AssertionError("rendered again")

    monkeypatch.setattr(thumbcache, "render", no_render)
    assert ThumbCache.for_index(idx).thumbnail(idx, "chelsea/chelsea_orig.jpg") == first
    assert cache.thumbnail(idx, "../outside.jpg") is None  # refused, nothing rendered
    # the version folder holds no thumbnail, and the index still verifies
    assert not (idx.dir / "thumbs").exists()


def test_keyed_by_content_and_size(built, tiny_embedder):
    g, idx = built
    cache = ThumbCache.for_index(idx)
    a = cache.thumbnail(idx, "coffee/coffee_orig.jpg")
    small = cache.thumbnail(idx, "coffee/coffee_orig.jpg", 64)
    assert Image.open(io.BytesIO(small)).size == (64, 64) and small != a
    shutil.copy(g / "coffee/coffee_orig.jpg", g / "copy.jpg")  # same content elsewhere
    build_index(g, idx.index_dir, embedder=tiny_embedder, workers=0)
    idx2 = Index.open(idx.index_dir, embedder=tiny_embedder)
    before = cache.total_bytes()
    assert cache.thumbnail(idx2, "copy.jpg") == a and cache.total_bytes() == before
    Image.new("RGB", (300, 200), (250, 0, 0)).save(g / "coffee/coffee_orig.jpg")  # changed
    build_index(g, idx.index_dir, embedder=tiny_embedder, workers=0)
    idx3 = Index.open(idx.index_dir, embedder=tiny_embedder)
    assert cache.thumbnail(idx3, "coffee/coffee_orig.jpg") != a


def test_bounded_by_total_bytes_least_recently_used_first(built):
    _, idx = built
    paths = idx.all_paths()[:4]
    sizes = [len(ThumbCache(None).thumbnail(idx, p)) for p in paths]
    cache = ThumbCache(idx.index_dir / "small-cache", max_bytes=sum(sizes) - 1)
    where = [cache.path_of(idx.sha256_of([p])[p], 256) for p in paths]
    for p in paths[:3]:
        cache.thumbnail(idx, p)
    os.utime(where[0], (1, 1))  # long unused
    os.utime(where[1], (2, 2))
    cache.thumbnail(idx, paths[1])  # used again now: no longer the oldest
    assert cache.total_bytes() == sum(sizes[:3])
    cache.thumbnail(idx, paths[3])  # over the bound: the least recently used goes
    assert not where[0].exists() and where[1].exists() and where[3].exists()
    assert cache.total_bytes() <= cache.max_bytes


def test_never_inside_the_gallery(tmp_path, monkeypatch):
    g = tmp_path / "g"
    g.mkdir()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(g / "a.jpg")
    rng = np.random.default_rng(0)
    idx = Index.from_arrays(g / "ix", ["a.jpg"], rng.normal(size=(1, 8)),
                            np.full((1, 768), 1 / 256, np.float32), model="m", gallery_root=g)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = ThumbCache.for_index(idx)
    assert cache.folder is not None and (tmp_path / "cache") in cache.folder.parents


def test_the_http_api_thumbnails_come_from_the_disk_cache(built, tiny_embedder):
    from imgrec.server.state import ServerState

    _, idx = built
    state = ServerState(idx.index_dir, embedder=tiny_embedder)
    data = state.thumbnail(state.index(), "coffee/coffee_orig.jpg", 128)
    assert max(Image.open(io.BytesIO(data)).size) == 128  # its longer side, not a square
    sha = idx.sha256_of(["coffee/coffee_orig.jpg"])["coffee/coffee_orig.jpg"]
    assert ThumbCache.for_index(idx).path_of(sha, 128, square=False).read_bytes() == data
