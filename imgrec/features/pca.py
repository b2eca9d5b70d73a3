"""PCA fitted by streaming over a (memory-mapped) matrix, saved as plain arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 32768
DEFAULT_COMPONENTS = 75


@dataclass(frozen=True)
class PCAModel:
    """A fitted PCA: ``transform(x) = (x - mean) @ components.T``.

    Component signs are fixed (largest-magnitude loading positive) so a refit on the same
    data gives the same projection.
    """

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (c, d)
    explained_variance: np.ndarray  # (c,)
    explained_variance_ratio: np.ndarray  # (c,)

    @property
    def n_components(self) -> int:
        return len(self.components)

    def transform(self, x: np.ndarray, n_components: int | None = None) -> np.ndarray:
        """Project rows of ``x`` on the first ``n_components`` components (float32)."""
        comp = self.components[: n_components or self.n_components]
        out = np.empty((len(x), len(comp)), dtype=np.float32)
        for s in range(0, len(x), CHUNK):
            block = np.asarray(x[s:s + CHUNK], dtype=np.float64) - self.mean
            out[s:s + CHUNK] = block @ comp.T
        return out

    def save(self, path: str | Path) -> None:
        np.savez(path, mean=self.mean, components=self.components,
                 explained_variance=self.explained_variance,
                 explained_variance_ratio=self.explained_variance_ratio)

    @classmethod
    def load(cls, path: str | Path) -> PCAModel:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["components"], z["explained_variance"],
                       z["explained_variance_ratio"])


def fit_pca(x: np.ndarray, n_components: int = DEFAULT_COMPONENTS) -> PCAModel:
    """Fit a PCA (see :func:`_fit`); small inputs use one BLAS thread, which is faster."""
    from threadpoolctl import threadpool_limits

    if len(x) * x.shape[1] < 50_000_000:
        with threadpool_limits(1):
            return _fit(x, n_components)
    return _fit(x, n_components)


def _fit(x: np.ndarray, n_components: int) -> PCAModel:
    """Fit a PCA on the rows of ``x`` without loading it whole.

    The number of components is clipped to what the data allows (``min(n - 1, d)``, at
    least 1). Accumulates the covariance block by block in float64, then takes its
    eigendecomposition: exact, and memory O(d^2) whatever the number of rows.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fit_pca(rng.random((50, 8)), 3).components.shape
        (3, 8)
    """
    n, d = x.shape
    if n == 0:
        raise ValueError("cannot fit a PCA on an empty matrix")
    c = max(1, min(int(n_components), d, n - 1 if n > 1 else 1))
    total = np.zeros(d)
    for s in range(0, n, CHUNK):
        total += np.asarray(x[s:s + CHUNK], dtype=np.float64).sum(0)
    mean = total / n
    cov = np.zeros((d, d))
    for s in range(0, n, CHUNK):
        block = np.asarray(x[s:s + CHUNK], dtype=np.float64) - mean
        cov += block.T @ block
    cov /= max(n - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    idx = np.argsort(vals)[::-1][:c]
    vals, vecs = np.maximum(vals[idx], 0.0), vecs[:, idx].T
    signs = np.sign(vecs[np.arange(c), np.abs(vecs).argmax(1)])
    vecs *= np.where(signs == 0, 1, signs)[:, None]
    total_var = max(float(np.trace(cov)), 1e-300)
    return PCAModel(mean, vecs, vals, vals / total_var)
