"""imgrec.search.kernels: fast float32 kernels within their error bounds, float64 references exact."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from imgrec.search import kernels as K


def chi2_loop(a: np.ndarray, b: np.ndarray) -> float:
    """0.5 * sum((a-b)^2 / (a+b)) over bins where a+b > 0, one pair, plain Python floats."""
    total = 0.0
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        if x + y > 0:
            total += (x - y) ** 2 / (x + y)
    return 0.5 * total


def sparse_histograms(rng: np.random.Generator, n: int, d: int = 768) -> np.ndarray:
    """Non-negative rows with many empty bins, each 256-bin channel summing to 1."""
    h = rng.random((n, d)) * (rng.random((n, d)) < 0.3)
    h[:, 0] += 1e-3  # no channel is completely empty
    h = h.reshape(n, -1, 256)
    h[:, :, 0] += 1e-3
    h /= h.sum(-1, keepdims=True)
    return h.reshape(n, d).astype(np.float32)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(1234)


# ---- float64 references agree with scipy ------------------------------------------------

def test_exact_references_match_scipy(rng):
    data = rng.normal(size=(200, 40)).astype(np.float32)
    q = rng.normal(size=(4, 40)).astype(np.float32)
    d64, q64 = data.astype(np.float64), q.astype(np.float64)
    np.testing.assert_allclose(K.cosine_exact(data, q), 1 - cdist(q64, d64, "cosine"), atol=1e-13)
    np.testing.assert_allclose(K.euclidean_exact(data, q), cdist(q64, d64, "euclidean"), rtol=1e-13)
    np.testing.assert_allclose(K.manhattan_exact(data, q), cdist(q64, d64, "cityblock"), rtol=1e-13)
    one = K.cosine_exact(data, q[0])  # a single query vector works too
    assert one.shape == (1, 200)


def test_chi2_reference_skips_empty_bins(rng):
    data = sparse_histograms(rng, 30)
    q = sparse_histograms(rng, 3)
    data[0] = q[0]  # distance 0
    got = K.chi2_exact(data, q)
    ref = cdist(q.astype(np.float64), data.astype(np.float64), chi2_loop)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert got[0, 0] == 0.0
    assert np.all(np.isfinite(got))
    # both all-zero: every bin skipped
    assert K.chi2_exact(np.zeros((1, 5)), np.zeros(5))[0, 0] == 0.0
    # disjoint support: each bin contributes its full mass
    a, b = np.array([[0.5, 0.5, 0, 0]]), np.array([0, 0, 0.25, 0.75])
    assert K.chi2_exact(a, b)[0, 0] == pytest.approx(1.0)


def test_cosine_reference_zero_rows_are_zero():
    data = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    np.testing.assert_array_equal(K.cosine_exact(data, np.array([1.0, 0, 0])), [[0.0, 1.0]])
    np.testing.assert_array_equal(K.cosine_exact(data, np.zeros(3)), [[0.0, 0.0]])


# ---- fast kernels: close to the references and within the bounds the search relies on ----

def test_dot_scores_in_blocks(rng, monkeypatch):
    data = rng.normal(size=(103, 33)).astype(np.float32)
    q = rng.normal(size=(3, 33)).astype(np.float32)
    ref = q.astype(np.float64) @ data.astype(np.float64).T
    whole = K.dot_scores(data, q)
    monkeypatch.setattr(K, "CHUNK", 10)  # several blocks, the last one partial
    blocks = K.dot_scores(data, q)
    assert whole.dtype == np.float32 and whole.shape == (3, 103)
    np.testing.assert_allclose(whole, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(blocks, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("d", [1, 17, 768, 2048])
def test_manhattan_fast_within_bound(rng, d):
    # values spanning several orders of magnitude make rounding visible
    data = (rng.normal(size=(300, d)) * 10.0 ** rng.integers(-3, 3, size=(300, d))).astype(np.float32)
    q = (rng.normal(size=(3, d)) * 10.0 ** rng.integers(-3, 3, size=(3, d))).astype(np.float32)
    fast = K.manhattan_fast(data, q).astype(np.float64)
    ref = cdist(q.astype(np.float64), data.astype(np.float64), "cityblock")
    g = K.gamma(d + 2)
    assert np.all(np.abs(fast - ref) <= fast * g / (1 - g) + 1e-30)
    np.testing.assert_allclose(fast, ref, rtol=1e-4)


@pytest.mark.parametrize("d", [768, 5])
def test_chi2_fast_within_bound(rng, d):
    data = sparse_histograms(rng, 250) if d == 768 else rng.random((250, d)).astype(np.float32)
    q = sparse_histograms(rng, 2) if d == 768 else rng.random((2, d)).astype(np.float32)
    fast = K.chi2_fast(data, q).astype(np.float64)
    ref = K.chi2_exact(data, q)
    g = K.gamma(d + 8)
    assert np.all(np.abs(fast - ref) <= fast * g / (1 - g) + 1e-30)


def test_fast_kernels_accept_read_only_memory_maps(rng, tmp_path):
    data = sparse_histograms(rng, 40)
    np.save(tmp_path / "h.npy", data)
    mm = np.load(tmp_path / "h.npy", mmap_mode="r", allow_pickle=False)
    q = data[:2]
    np.testing.assert_array_equal(K.chi2_fast(mm, q), K.chi2_fast(data, q))
    np.testing.assert_array_equal(K.manhattan_fast(mm, q), K.manhattan_fast(data, q))
    np.testing.assert_array_equal(K.dot_scores(mm, q), K.dot_scores(data, q))


def test_gamma():
    u = np.finfo(np.float32).eps / 2
    assert K.gamma(1) == pytest.approx(u / (1 - u))
    assert K.gamma(1000) == pytest.approx(1000 * u / (1 - 1000 * u))
    assert K.gamma(10) < K.gamma(100)
