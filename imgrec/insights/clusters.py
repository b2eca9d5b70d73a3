"""K-means clusters of the embeddings, each with its size and representative image.

The original study clustered the collection into 30 groups and drew the image nearest
each centroid; this does the same on the CNN embeddings (unit vectors, so euclidean
K-means groups by cosine similarity). Up to :data:`FULL_KMEANS_MAX` images use
scikit-learn's ``KMeans``; larger galleries ``MiniBatchKMeans`` (a pass over mini-batches
of the memory-mapped matrix instead of full Lloyd iterations). Both are seeded, so the
same index, ``k`` and ``seed`` give the same clusters.

Example:
    >>> res = clusters(idx, k=30)
    >>> res.sizes[:3], idx.paths(res.representatives[:3])
    (array([6, 3, 2]), ['astronaut/astronaut_orig.jpg', 'chelsea/chelsea_orig.jpg', 'coffee/...'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imgrec.index.index import Index

DEFAULT_K = 30
FULL_KMEANS_MAX = 20_000
CHUNK = 32768
#: :func:`auto_k`: the cluster counts it tries, and the images it measures them on.
AUTO_CANDIDATES = (*range(2, 21), 24, 28, 32, 40)
AUTO_SAMPLE = 2000


@dataclass(frozen=True)
class ClusterResult:
    """K-means clusters, numbered by decreasing size (ties: lower representative row).

    Attributes:
        labels: (n,) int32 cluster of each indexed image (matrix row).
        centroids: (k, d) float32 cluster centres.
        representatives: (k,) int64 row of the image nearest each centroid, chosen among
            the cluster's members (so no image represents two clusters); an empty cluster
            (possible with mini-batches) gets the nearest image not representing another.
        sizes: (k,) int64 members per cluster.
        distances: (n,) float64 squared euclidean distance of each image to its centroid.
    """

    labels: np.ndarray
    centroids: np.ndarray
    representatives: np.ndarray
    sizes: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centroids)

    def members(self, cluster: int) -> np.ndarray:
        """Rows of one cluster, nearest to its centroid first (ties: lower row)."""
        rows = np.flatnonzero(self.labels == cluster)
        return rows[np.lexsort((rows, self.distances[rows]))]


def clusters(index: Index | np.ndarray, k: int = DEFAULT_K, seed: int = 0) -> ClusterResult:
    """K-means on the embeddings of ``index`` (or on an (n, d) matrix).

    Args:
        index: an opened :class:`~imgrec.index.index.Index`, or a matrix of row vectors.
        k: clusters wanted, clipped to the number of images (default 30).
        seed: random seed (k-means++ initialisation, mini-batch sampling).

    Returns:
        A :class:`ClusterResult`; cluster 0 is the largest.

    Raises:
        ValueError: no rows, or ``k`` < 1.

    Example:
        >>> res = clusters(np.eye(4, dtype=np.float32), k=2, seed=0)
        >>> int(res.sizes.sum()), len(set(res.representatives.tolist()))
        (4, 2)
    """
    data = index.embeddings if hasattr(index, "embeddings") else np.asarray(index)
    n = len(data)
    if n == 0:
        raise ValueError("cannot cluster an empty index")
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(int(k), n)
    if n <= FULL_KMEANS_MAX:
        from sklearn.cluster import KMeans

        x = np.asarray(data, dtype=np.float32)
        km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=100).fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
    else:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=1,
                             max_iter=20, max_no_improvement=5, init_size=min(n, 30 * k + 3000))
        km.fit(data)
        centroids = km.cluster_centers_.astype(np.float32)
    labels, dist = assign(data, centroids)
    return _finish(data, labels, dist, centroids)


@dataclass(frozen=True)
class AutoK:
    """The cluster count :func:`auto_k` chose and the silhouette of each it tried."""

    k: int
    silhouettes: dict[int, float]
    sample: int


def auto_k(index: Index | np.ndarray, sample: int = AUTO_SAMPLE, seed: int = 0,
           candidates: tuple[int, ...] = AUTO_CANDIDATES) -> AutoK:
    """Choose k from the data: the best mean silhouette (cosine on the embeddings) among
    ``candidates``, each clustered by :func:`clusters` on one fixed-seed sample.

    Ties go to the smaller k. A gallery of fewer than three images gets one cluster per
    image (the silhouette needs 2 <= k < n).

    Example:
        >>> x = np.repeat(np.eye(3, 8, dtype=np.float32), 10, axis=0)
        >>> x += np.random.default_rng(0).normal(0, 0.05, x.shape).astype(np.float32)
        >>> auto_k(x).k
        3
    """
    from sklearn.metrics import silhouette_score

    data = index.embeddings if hasattr(index, "embeddings") else np.asarray(index)
    n = len(data)
    if n < 3:
        return AutoK(max(1, n), {}, n)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, int(sample)),
                                                      replace=False))
    x = np.asarray(data[rows], dtype=np.float32)
    scores: dict[int, float] = {}
    for k in candidates:
        if not 2 <= k < len(x):
            continue
        labels = clusters(x, k, seed=seed).labels
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(x, labels, metric="cosine"))
    if not scores:
        return AutoK(1, {}, len(x))
    best = max(scores, key=lambda k: (round(scores[k], 4), -k))
    return AutoK(best, scores, len(x))


def assign(data: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row and the squared distance to it (chunked; a shard
    assigns its rows to a sample's centroids with it)."""
    c64 = centroids.astype(np.float64)
    csq = (c64 ** 2).sum(1)
    labels = np.empty(len(data), np.int32)
    dist = np.empty(len(data))
    for s in range(0, len(data), CHUNK):
        x = np.asarray(data[s:s + CHUNK], dtype=np.float64)
        d2 = (x ** 2).sum(1)[:, None] - 2 * x @ c64.T + csq[None, :]
        labels[s:s + CHUNK] = d2.argmin(1)
        dist[s:s + CHUNK] = np.maximum(d2[np.arange(len(x)), labels[s:s + CHUNK]], 0.0)
    return labels, dist


def _finish(data: np.ndarray, labels: np.ndarray, dist: np.ndarray,
            centroids: np.ndarray) -> ClusterResult:
    k = len(centroids)
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    rep = np.full(k, -1, np.int64)
    # nearest member of each cluster: sort rows by (cluster, distance, row)
    o = np.lexsort((np.arange(len(labels)), dist, labels))
    first = np.searchsorted(labels[o], np.arange(k))
    has = sizes > 0
    rep[has] = o[first[has]]
    taken = set(rep[has].tolist())
    for c in np.flatnonzero(~has):  # empty cluster: nearest image not yet representing one
        _, d = assign(data, centroids[c:c + 1])
        for r in np.lexsort((np.arange(len(d)), d)):
            if int(r) not in taken:
                rep[c] = int(r)
                taken.add(int(r))
                break
    # renumber: largest cluster first, ties by representative row
    order = np.lexsort((rep, -sizes))
    remap = np.empty(k, np.int32)
    remap[order] = np.arange(k, dtype=np.int32)
    return ClusterResult(remap[labels], centroids[order], rep[order], sizes[order], dist)
