"""The float16 first pass: exact widening, proven per-row bounds, index files and checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgrec import Index, Stored
from imgrec.errors import IndexFormatError
from imgrec.index import format as F
from imgrec.index import half as H
from imgrec.index.verify import verify
from imgrec.search import kernels as K


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(4321)


def all_halves() -> np.ndarray:
    """Every finite float16 value, as a column."""
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    return h[np.isfinite(h)][:, None]


# ---- the kernels widen float16 exactly ------------------------------------------------------

def test_every_float16_value_is_widened_exactly():
    """One-term sums: the kernels' output is exactly the value they read, for all 63,488
    finite float16 numbers (subnormals and signed zeros included)."""
    h = all_halves()
    want = h[:, 0].astype(np.float32)
    one = np.ones((1, 1), np.float32)
    np.testing.assert_array_equal(K.dot_scores(h, one)[0], want)
    for nq in (2, 5):  # the five-query kernel too
        got = K.dot_scores(h, np.ones((nq, 1), np.float32))
        assert (got == want).all()
    np.testing.assert_array_equal(K.manhattan_fast(h, np.zeros((1, 1), np.float32))[0],
                                  np.abs(want))


@pytest.mark.parametrize("nq", [1, 3, 5])
@pytest.mark.parametrize("d", [1, 7, 1280, 2048])
def test_float16_kernels_within_float32_accumulation_bound(rng, nq, d):
    data = rng.normal(size=(301, d)).astype(np.float16)
    q = rng.normal(size=(nq, d)).astype(np.float32)
    wide = data.astype(np.float64)
    dots = K.dot_scores(data, q)
    exact = q.astype(np.float64) @ wide.T
    bound = K.gamma(d) * (np.abs(q.astype(np.float64)) @ np.abs(wide).T)
    assert (np.abs(dots - exact) <= bound).all()
    man = K.manhattan_fast(data, q)
    exact = np.abs(wide[None] - q.astype(np.float64)[:, None]).sum(-1)
    assert (np.abs(man - exact) <= K.gamma(d + 2) * exact + 1e-30).all()


def test_float16_rows_must_be_contiguous(rng):
    data = rng.normal(size=(10, 8)).astype(np.float16)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.dot_scores(data[:, ::2], np.ones((1, 4), np.float32))


# ---- encode(): the stored bounds hold and are tight ---------------------------------------

def test_encode_bounds_hold_and_are_tight(rng):
    x = rng.normal(size=(500, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[0] = 0  # a zero row: no error
    x[1, :8] = [1e-7, -3e-6, 6.1e-5, 5.9e-5, 2.0 ** -24, 2.0 ** -26, 1e-30, 0.5]  # subnormals
    x[2] = np.float16(0.25)  # representable: no error
    h, e = H.encode(x)
    assert h.dtype == np.float16 and e.dtype == np.float32 and e.shape == (500, 2)
    np.testing.assert_array_equal(h, x.astype(np.float16))
    delta = np.abs(h.astype(np.float64) - x.astype(np.float64))
    l2, l1 = np.sqrt((delta ** 2).sum(1)), delta.sum(1)
    assert (e[:, 0] >= l2).all() and (e[:, 1] >= l1).all()
    assert (e[:, 0] <= l2 * (1 + 1e-6) + 1e-45).all() and (e[:, 1] <= l1 * (1 + 1e-6) + 1e-45).all()
    assert e[0].tolist() == [0.0, 0.0] and e[2].tolist() == [0.0, 0.0]
    assert e[1, 0] > 0 and (delta[1, :7] <= 2.0 ** -25).all()  # subnormal spacing 2**-24
    # unit rows: relative error of float16 rounding, at most 2**-11 per coordinate
    assert (e[3:, 0] <= 2.0 ** -11 * 1.0001).all()
    assert H.check(h, e, x).all()


def test_encode_refuses_values_float16_cannot_hold():
    for bad in (np.inf, np.nan, 70000.0):
        with pytest.raises(ValueError, match="float16"):
            H.encode(np.array([[1.0, bad]], np.float32))


def test_round_up32_never_rounds_down(rng):
    x = rng.random(10000) * 10.0 ** rng.integers(-30, 30, 10000)
    y = H.round_up32(x)
    assert y.dtype == np.float32 and (y.astype(np.float64) >= x).all()
    assert (np.nextafter(y, np.float32(0)).astype(np.float64) < x).all()  # the smallest such


# ---- the index stores, checks and uses the copy ------------------------------------------

N, DIM = 400, 48


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    rng = np.random.default_rng(77)
    emb = rng.normal(size=(N, DIM)).astype(np.float32)
    # near-duplicates closer than float16 can tell apart: the rescoring must order them
    emb[300:340] = emb[3] + 1e-5 * rng.normal(size=(40, DIM)).astype(np.float32)
    hist = rng.random((N, 768)).astype(np.float32)
    hist /= hist.reshape(N, 3, 256).sum(-1).repeat(256, 1)
    paths = [f"img_{i:03d}.jpg" for i in range(N)]
    d = tmp_path_factory.mktemp("half") / "index"
    Index.from_arrays(d, paths, emb, hist, model="random-48")
    return d, paths


def test_index_holds_a_checked_float16_copy(built):
    d, _ = built
    idx = Index.open(d)
    assert idx.first_pass == "float16"
    copy = idx.embeddings_f16
    assert copy is not None and isinstance(copy.data, np.memmap)
    assert copy.data.shape == (N, DIM) and copy.errors.shape == (N, 2)
    np.testing.assert_array_equal(copy.data, np.asarray(idx.embeddings).astype(np.float16))
    assert H.check(copy.data, copy.errors, np.asarray(idx.embeddings)).all()
    assert verify(d) == []


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan", "all"])
def test_both_first_passes_return_identical_results(built, metric):
    d, paths = built
    fast, slow = Index.open(d), Index.open(d, first_pass="float32")
    assert (fast.first_pass, slow.first_pass) == ("float16", "float32")
    for rows in ([3], [305, 3], [1, 2, 3, 4, 320]):
        q = [Stored(paths[r]) for r in rows]
        for k in (1, 10, 45):
            a, b = fast.search(q, metric=metric, k=k), slow.search(q, metric=metric, k=k)
            assert a.to_dict() == b.to_dict()
    near = fast.search([Stored(paths[3])], k=41).per_query[0]
    assert {h.row for h in near} == {3, *range(300, 340)}
    refined = [x.search([Stored(paths[3])], negatives=[Stored(paths[310])], k=12).to_dict()
               for x in (fast, slow)]
    assert refined[0] == refined[1]


def test_index_without_the_copy_still_searches(built, tmp_path):
    """An index written before the float16 copy existed: float32 first pass, same results."""
    d, paths = built
    old = tmp_path / "old"
    shutil.copytree(d, old)
    version = next(old.glob("v-*"))
    for name in (F.HALF_DATA, F.HALF_ERROR):
        (version / name).unlink()
    with pytest.raises(IndexFormatError, match="the manifest lists it"):
        Index.open(old)  # files the manifest records are never silently dropped
    manifest = json.loads((version / "manifest.json").read_text())
    del manifest["checksums"]  # an older imgrec recorded no checksums either
    (version / "manifest.json").write_text(json.dumps(manifest))
    idx = Index.open(old)
    assert idx.first_pass == "float32" and idx.embeddings_f16 is None
    q = [Stored(paths[7]), Stored(paths[8])]
    assert idx.search(q, k=9).to_dict() == Index.open(d).search(q, k=9).to_dict()
    assert verify(old) == []
    with pytest.raises(ValueError, match="no float16 copy"):
        Index.open(old, first_pass="float16")
    with pytest.raises(ValueError, match="first_pass"):
        Index.open(d, first_pass="bfloat16")


def _copy_version(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return next(dst.glob("v-*"))


def test_damaged_copy_is_named(built, tmp_path):
    d, _ = built
    # one of the two files missing: refused on open, named by verify
    version = _copy_version(d, tmp_path / "a")
    (version / F.HALF_ERROR).unlink()
    with pytest.raises(IndexFormatError, match=r"embeddings_f16_error\.npy is missing"):
        Index.open(tmp_path / "a")
    assert any("embeddings_f16_error.npy is missing" in p for p in verify(tmp_path / "a"))
    # a changed float16 value: opens (cheap checks), verify names the row
    version = _copy_version(d, tmp_path / "b")
    data = np.load(version / F.HALF_DATA, mmap_mode="r+")
    data[17, 5] = np.float16(data[17, 5]) + np.float16(0.25)
    data.flush()
    del data
    problems = verify(tmp_path / "b")
    assert len(problems) == 1 and "1 row" in problems[0] and "row 17" in problems[0]
    # an error bound below the true rounding error: the search would no longer be exact
    version = _copy_version(d, tmp_path / "c")
    err = np.load(version / F.HALF_ERROR, mmap_mode="r+")
    err[42, 0] *= 0.5
    err.flush()
    del err
    problems = verify(tmp_path / "c")
    assert len(problems) == 1 and "row 42" in problems[0]
    # wrong shape: refused on open
    version = _copy_version(d, tmp_path / "e")
    np.save(version / F.HALF_ERROR, np.zeros((N, 3), np.float32))
    with pytest.raises(IndexFormatError, match="shape"):
        Index.open(tmp_path / "e")
