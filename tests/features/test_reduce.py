"""imgrec.features.pca: the streaming PCA equals scikit-learn's PCA (up to component signs)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from imgrec.features import pca as reduce
from imgrec.features.color import histogram
from imgrec.features.pca import PCAModel, fit_pca
from imgrec.images import prepare


@pytest.fixture(scope="module")
def photo_histograms(photos) -> np.ndarray:
    """Colour histograms of real photos and their crops / colour-shifted variants."""
    rows = []
    rng = np.random.default_rng(0)
    for img in photos.values():
        w, h = img.size
        for _ in range(12):
            x, y = rng.integers(0, w // 3), rng.integers(0, h // 3)
            crop = img.crop((x, y, x + w // 2, y + h // 2))
            gain = rng.uniform(0.7, 1.2, 3)
            arr = np.clip(np.asarray(crop, np.float64) * gain, 0, 255).astype(np.uint8)
            from PIL import Image

            rows.append(histogram(prepare(Image.fromarray(arr))))
    return np.stack(rows)


def _compare(ours: PCAModel, theirs: PCA, x: np.ndarray) -> None:
    c = ours.n_components
    assert c == theirs.n_components_
    np.testing.assert_allclose(ours.mean, theirs.mean_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.explained_variance, theirs.explained_variance_,
                               rtol=1e-6, atol=1e-12 * theirs.explained_variance_[0])
    np.testing.assert_allclose(ours.explained_variance_ratio, theirs.explained_variance_ratio_,
                               rtol=1e-6, atol=1e-12)
    # the same subspace: equal projectors onto the span of the components
    p_ours = ours.components.T @ ours.components
    p_theirs = theirs.components_.T @ theirs.components_
    np.testing.assert_allclose(p_ours, p_theirs, atol=1e-6)
    # and the same components up to sign where eigenvalues are well separated
    ev = theirs.explained_variance_
    gaps = np.abs(np.diff(ev)) / ev[0]
    for i in range(c):
        separated = (i == 0 or gaps[i - 1] > 1e-4) and (i == c - 1 or gaps[i] > 1e-4)
        if separated:
            dot = float(ours.components[i] @ theirs.components_[i])
            assert abs(abs(dot) - 1.0) < 1e-5, (i, dot)
    # projections equal up to the sign of each column
    ref = theirs.transform(x)
    got = ours.transform(x).astype(np.float64)
    signs = np.sign(np.sum(got * ref, axis=0))
    np.testing.assert_allclose(got * signs, ref, atol=1e-5 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("c", [1, 5, 40])
def test_matches_sklearn_on_real_histograms(photo_histograms, c):
    x = photo_histograms
    _compare(fit_pca(x, c), PCA(n_components=c, svd_solver="full").fit(x.astype(np.float64)), x)


@pytest.mark.parametrize("n, d, c", [(500, 30, 10), (40, 60, 39), (1000, 8, 8)])
def test_matches_sklearn_on_random_data(n, d, c):
    rng = np.random.default_rng(n + d)
    scales = np.linspace(5, 0.1, d)  # distinct variances: a well-defined basis
    x = (rng.normal(size=(n, d)) * scales + rng.normal(size=d) * 3).astype(np.float32)
    _compare(fit_pca(x, c), PCA(n_components=c, svd_solver="full").fit(x.astype(np.float64)), x)


def test_streaming_in_chunks_gives_the_same_model(photo_histograms, monkeypatch):
    whole = fit_pca(photo_histograms, 20)
    monkeypatch.setattr(reduce, "CHUNK", 7)  # many blocks, the last one partial
    chunked = fit_pca(photo_histograms, 20)
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(chunked.components, whole.components, atol=1e-8)
    np.testing.assert_allclose(chunked.transform(photo_histograms), whole.transform(photo_histograms),
                               atol=1e-6)


def test_components_are_clipped_to_what_the_data_allows():
    rng = np.random.default_rng(1)
    assert fit_pca(rng.random((10, 768)), 75).n_components == 9  # n - 1
    assert fit_pca(rng.random((500, 6)), 75).n_components == 6  # d
    assert fit_pca(rng.random((1, 4)), 75).n_components == 1
    assert fit_pca(rng.random((2, 4)), 0).n_components == 1  # at least 1
    with pytest.raises(ValueError, match="empty"):
        fit_pca(np.zeros((0, 4)), 3)


def test_signs_are_fixed_and_refits_are_identical(photo_histograms):
    a = fit_pca(photo_histograms, 12)
    b = fit_pca(photo_histograms.copy(), 12)
    np.testing.assert_array_equal(a.components, b.components)
    biggest = a.components[np.arange(12), np.abs(a.components).argmax(1)]
    assert np.all(biggest > 0)
    np.testing.assert_allclose(a.components @ a.components.T, np.eye(12), atol=1e-10)
    assert np.all(np.diff(a.explained_variance) <= 0)
    assert 0 < a.explained_variance_ratio.sum() <= 1 + 1e-12


def test_transform_prefix_and_dtype(photo_histograms):
    m = fit_pca(photo_histograms, 10)
    full = m.transform(photo_histograms)
    assert full.dtype == np.float32 and full.shape == (len(photo_histograms), 10)
    np.testing.assert_array_equal(m.transform(photo_histograms, 4), full[:, :4])
    ref = (photo_histograms.astype(np.float64) - m.mean) @ m.components.T
    np.testing.assert_allclose(full, ref, atol=1e-6)


def test_save_and_load_without_pickle(photo_histograms, tmp_path):
    m = fit_pca(photo_histograms, 8)
    m.save(tmp_path / "pca.npz")
    with np.load(tmp_path / "pca.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["components", "explained_variance",
                                   "explained_variance_ratio", "mean"]
        assert all(z[f].dtype != object for f in z.files)
    back = PCAModel.load(tmp_path / "pca.npz")
    for f in ("mean", "components", "explained_variance", "explained_variance_ratio"):
        np.testing.assert_array_equal(getattr(back, f), getattr(m, f))
    np.testing.assert_array_equal(back.transform(photo_histograms), m.transform(photo_histograms))
