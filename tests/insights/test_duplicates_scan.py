"""The all-pairs scan's bound cascade against float64 brute force: rows drawn with the
statistics of the demo gallery's real embeddings (clustered, with planted copies), plain
Gaussian rows, pairs placed within the float32 rounding of the threshold, the top-m cap,
memory-mapped input and the progress callback."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imgrec.insights.duplicates import _cap, near_pairs
from imgrec.insights.duplicates.scan import slack, stages


def _brute(x: np.ndarray, t: float, m: int = 0):
    x64 = x.astype(np.float64)
    n = np.linalg.norm(x64, axis=1)
    s = (x64 @ x64.T) / np.outer(n, n)
    i, j = np.nonzero(np.triu(s >= t, 1))
    out = i, j, s[i, j]
    if m:
        ci, cj, cs = _cap(*out, m)
        o = np.lexsort((cj, ci))
        out = ci[o], cj[o], cs[o]
    return out


def _same(got, want) -> None:
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def gallery_like(demo_index) -> np.ndarray:
    """1,500 rows: clusters around real demo embeddings (spread with the gallery's own
    covariance), plus near and exact copies of some of them."""
    rng = np.random.default_rng(7)
    emb = np.asarray(demo_index.embeddings, np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    vals, vecs = np.linalg.eigh(np.cov(emb, rowvar=False))
    scale = np.sqrt(np.maximum(vals, 0))
    centres = emb[rng.choice(len(emb), 40, replace=False)]
    spread = rng.uniform(0.3, 1.5, (1300, 1))
    x = centres[rng.integers(0, 40, 1300)] + spread * (
        (rng.standard_normal((1300, len(vals))) * scale) @ vecs.T)
    src = rng.choice(1300, 180, replace=False)
    copies = x[src[:150]] + rng.uniform(0.05, 0.6, (150, 1)) * (
        (rng.standard_normal((150, len(vals))) * scale) @ vecs.T)
    return np.concatenate([x, copies, x[src[150:]]]).astype(np.float32)


def test_cascade_equals_brute_force_on_gallery_like_rows(gallery_like):
    x = gallery_like
    dims = stages(64, x.shape[1])
    assert dims == (64, 128, 256, 512)  # the full cascade runs on 1,280-d rows
    for t in (0.65, 0.8, 0.95, 0.999):
        st: dict = {}
        _same(near_pairs(x, None, t, max_neighbours=0, row_block=193, col_block=401,
                         stats=st), _brute(x, t))
        past = st["stages"]
        assert st["pairs"] > past[0] and all(a >= b for a, b in itertools.pairwise(past))
        assert past[-1] >= st["found"]  # every pair found went through the exact check
    for m in (1, 3, 16):
        st = {}
        _same(near_pairs(x, None, 0.65, max_neighbours=m, row_block=128, col_block=256,
                         stats=st), _brute(x, 0.65, m))
    assert st["stages"][1] < st["stages"][0]  # the top-m test drops pairs of its own


def test_cascade_equals_brute_force_on_gaussian_rows():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(900, 300)).astype(np.float32)
    x = np.concatenate([x, x[:120] + rng.uniform(0.1, 1.0, (120, 1)).astype(np.float32)
                        * rng.normal(size=(120, 300)).astype(np.float32), x[:5]])
    assert stages(64, 300) == (64, 128, 256, 300)
    for t in (0.3, 0.65, 0.9):
        for m in (0, 4):
            _same(near_pairs(x, None, t, max_neighbours=m, row_block=64, col_block=300),
                  _brute(x, t, m))


def test_pairs_at_the_threshold_are_decided_exactly(gallery_like):
    """Pairs whose float64 cosine lies within 1e-5 of T (far inside the float32 bounds):
    each is kept exactly when brute force keeps it."""
    rng = np.random.default_rng(9)
    t = 0.8
    base = gallery_like[:400].astype(np.float64)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    rows = []
    for k, a in enumerate(base[:150]):
        w = gallery_like[400 + k].astype(np.float64)
        w -= (w @ a) * a
        w /= np.linalg.norm(w)
        c = t + rng.uniform(-1e-5, 1e-5) if k % 3 else t
        rows += [a, c * a + np.sqrt(1 - c * c) * w]
    x = np.concatenate([np.array(rows), base[150:]]).astype(np.float32)
    want = _brute(x, t)
    near = np.abs(want[2] - t) < 1e-5
    assert near.sum() >= 40  # many kept pairs sit right at the threshold ...
    s64 = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    pair = (s64[0::2][:150] * s64[1::2][:150]).sum(1)
    assert ((pair < t) & (pair > t - 1e-5)).sum() >= 40  # ... and many dropped ones
    assert slack(stages(64, x.shape[1])) > 1e-5  # all of them inside the rounding bound
    for m in (0, 16):
        _same(near_pairs(x, None, t, max_neighbours=m), _brute(x, t, m))


def test_memory_mapped_rows_and_progress_from_the_calling_thread(gallery_like, tmp_path):
    import threading

    path = tmp_path / "rows.npy"
    np.save(path, gallery_like)
    x = np.load(path, mmap_mode="r")
    seen: list[tuple[int, int, str]] = []
    got = near_pairs(x, None, 0.9, row_block=100, col_block=300,
                     progress=lambda done, n: seen.append((done, n,
                                                           threading.current_thread().name)))
    _same(got, _brute(gallery_like, 0.9, 16))
    done = [s[0] for s in seen]
    assert done == sorted(done) and done[-1] == len(x) and len(seen) == -(-len(x) // 100)
    assert {s[2] for s in seen} == {threading.current_thread().name}


def test_fewer_rows_than_the_later_stages_dimensions(gallery_like):
    x = gallery_like[::10]  # 148 rows of 1,280 dimensions: a basis has at most 148 directions
    assert stages(64, x.shape[1], len(x)) == (64, 128, 148, 148)
    for m in (0, 16):
        _same(near_pairs(x, None, 0.65, max_neighbours=m), _brute(x, 0.65, m))
