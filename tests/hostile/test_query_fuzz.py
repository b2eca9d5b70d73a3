"""The query API on anything a caller may pass: a SearchResult or an ImgrecError, nothing else.

Hypothesis passes :meth:`Index.search` arbitrary Python objects as queries and negatives
(None, numbers, text, bytes, arrays, dicts, streams that cannot seek, text-mode files,
PIL images of any mode and size, stored paths that exist or not, real image files and
damaged copies) and arbitrary values for ``method``, ``metric``, ``k``,
``pca_components`` and ``negative_weight``, on a small index built from real photos.
A result must be sane: at most ``k`` hits per list, each an indexed path with a finite
score. ``HYPOTHESIS_PROFILE=fuzz`` runs many more examples.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from support import TinyEmbedder

from imgrec import Index, Stored, build_index
from imgrec.errors import ImgrecError
from imgrec.search.results import SearchResult

METHODS = ["embedding", "color", "pca"]
METRICS = ["cosine", "euclidean", "manhattan", "all"]


@pytest.fixture(scope="module")
def small(photos, tmp_path_factory) -> tuple[Index, Path]:
    """An index of five real photos (TinyEmbedder embeddings) and its gallery folder."""
    base = tmp_path_factory.mktemp("query-fuzz")
    gallery = base / "gallery"
    gallery.mkdir()
    for name in ["chelsea", "astronaut", "coffee", "rocket", "china"]:
        photos[name].resize((96, 72)).save(gallery / f"{name}.jpg")
    build_index(gallery, base / "index", embedder=TinyEmbedder(), workers=0, pca_components=4)
    (base / "damaged.jpg").write_bytes((gallery / "coffee.jpg").read_bytes()[:700])
    idx = Index.open(base / "index", embedder=TinyEmbedder())  # embeds image queries too
    idx.search(Stored("coffee.jpg"), metric="all")  # compiles the kernels
    idx.search(Stored("coffee.jpg"), negatives=Stored("rocket.jpg"))
    return idx, base


class Sized:
    """An object that claims to be a sequence but is none (its len and items fail)."""

    def __len__(self) -> int:
        raise TypeError("no length")

    def __getitem__(self, i: int) -> object:
        raise IndexError(i)


class BadPath(os.PathLike):
    """A path-like object whose __fspath__ fails or returns something odd."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __fspath__(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def _pipe(data: bytes) -> io.BufferedReader:
    """A stream that cannot seek (the read end of a pipe holding ``data``)."""
    r, w = os.pipe()
    os.write(w, data[:60_000])  # stays within the pipe's buffer: no writer thread needed
    os.close(w)
    return open(r, "rb")


def objects(base: Path) -> st.SearchStrategy:
    """Anything a caller might pass as a query."""
    real = [base / "gallery" / "chelsea.jpg", base / "damaged.jpg", base / "gallery",
            base / "missing.jpg", Path("/dev/null")]
    real_bytes = (base / "gallery" / "rocket.jpg").read_bytes()
    scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.complex_numbers(),
                       st.text(max_size=20), st.binary(max_size=200))
    images = st.builds(lambda mode, w, h: Image.new(mode, (w, h)),
                       st.sampled_from(["RGB", "L", "RGBA", "P", "1", "I", "F", "CMYK", "LA"]),
                       st.integers(0, 40), st.integers(0, 40))
    leaf = st.one_of(
        scalar,
        st.sampled_from(real), st.sampled_from([str(p) for p in real]),
        st.builds(Stored, st.one_of(st.sampled_from(["chelsea.jpg", "china.jpg"]), st.text(
            max_size=12))),
        st.builds(io.BytesIO, st.one_of(st.binary(max_size=300), st.just(real_bytes))),
        st.builds(_pipe, st.one_of(st.binary(max_size=300), st.just(real_bytes))),
        st.builds(io.StringIO, st.text(max_size=30)),
        st.builds(lambda b: memoryview(b), st.binary(max_size=50)),
        arrays(st.sampled_from([np.uint8, np.float32, np.int64]),
               st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(1, 4))),
        images,
        st.builds(BadPath, st.one_of(st.none(), st.integers(), st.just(str(real[0])),
                                      st.just(ValueError("bad")), st.just(b"x.jpg"))),
        st.builds(Sized), st.just(object()), st.just(len), st.just(Ellipsis),
    )
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=7), st.tuples(inner, inner), st.sets(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=8)


def good_queries(base: Path) -> st.SearchStrategy:
    """Queries that are valid: paths, stored paths, bytes, streams and images of photos."""
    path = base / "gallery" / "chelsea.jpg"
    data = (base / "gallery" / "china.jpg").read_bytes()
    one = st.one_of(st.just(path), st.just(str(path)), st.builds(Stored, st.sampled_from(
        ["astronaut.jpg", "rocket.jpg"])), st.just(data), st.builds(io.BytesIO, st.just(data)),
        st.builds(_pipe, st.just(data)),
        st.builds(lambda w, h: Image.new("RGB", (w, h), (200, 40, 10)), st.integers(1, 64),
                  st.integers(1, 64)))
    return st.one_of(one, st.lists(one, min_size=1, max_size=5))


ODD = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(),
                st.text(max_size=12), st.just(np.int64(3)), st.just(np.float32(2.0)),
                st.just([3]), st.builds(Sized),
                arrays(st.sampled_from([np.uint8, np.float32, np.int64]),
                       st.tuples(st.integers(0, 3), st.integers(1, 3))))
VALID = {"method": [*METHODS, *["embedding"] * 4], "metric": [*METRICS, *["cosine"] * 8],
         "k": [1, 3, 5, 50],
         "pca_components": [None, 1, 4, 99], "negative_weight": [0.0, 0.5, 2.0, 100.0]}


def params(odd: st.SearchStrategy = ODD, how_many: int = 1) -> st.SearchStrategy:
    """Valid search parameters with up to ``how_many`` of them replaced by anything."""
    valid = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in VALID.items()})
    changed = st.dictionaries(st.sampled_from(sorted(VALID)), odd, max_size=how_many)
    return st.builds(lambda a, b: {**a, **b}, valid, changed)


def _sane(res: SearchResult, idx: Index, k: object) -> None:
    paths = set(idx.all_paths())
    assert isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > 0
    for hits in [*res.per_query, res.combined]:
        assert len(hits) <= k
        for h in hits:
            assert h.path in paths and math.isfinite(h.score) and math.isfinite(h.distance)


def _search(idx: Index, queries: object, negatives: object, kw: dict) -> None:
    """One search: a sane SearchResult or a one-line ImgrecError; streams closed after."""
    try:
        res = idx.search(queries, negatives=negatives, **kw)
    except ImgrecError as exc:
        event(f"refused: {type(exc).__name__}")
        text = str(exc)
        assert text and "\n" not in text, f"not one line: {text!r}"
        return
    finally:
        for group in (queries, negatives):
            for q in group if isinstance(group, list) else [group]:
                if isinstance(q, io.BufferedReader):
                    q.close()
    assert isinstance(res, SearchResult)
    event(f"answered: {res.method}")
    _sane(res, idx, kw["k"])


def test_odd_query_objects(small):
    idx, base = small

    @given(queries=objects(base), negatives=st.one_of(st.none(), objects(base)),
           kw=params(how_many=0))
    def check(queries, negatives, kw):
        _search(idx, queries, negatives, kw)

    check()


def test_odd_parameter_values(small):
    idx, base = small

    @given(queries=good_queries(base), negatives=st.one_of(st.none(), good_queries(base)),
           kw=params(how_many=2))
    def check(queries, negatives, kw):
        _search(idx, queries, negatives, kw)

    check()


def test_anything_at_all(small):
    idx, base = small

    @given(queries=st.one_of(good_queries(base), objects(base)),
           negatives=st.one_of(st.none(), good_queries(base), objects(base)),
           kw=params(st.one_of(ODD, objects(base)), how_many=5))
    def check(queries, negatives, kw):
        _search(idx, queries, negatives, kw)

    check()


def test_valid_odd_queries_answer_like_the_file(small):
    """A pipe, a BytesIO and a PIL image of the same photo answer like its path."""
    idx, base = small
    path = base / "gallery" / "rocket.jpg"
    data = path.read_bytes()
    want = idx.search(path, method="color", k=3).combined
    with Image.open(path) as im:
        im.load()
        for q in (_pipe(data), io.BytesIO(data), im, data, str(path)):
            assert idx.search(q, method="color", k=3).combined == want
