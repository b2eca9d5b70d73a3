"""The k-nearest-neighbour graph of a sample of images: Louvain communities and a 2-D layout.

Each sampled image links to its ``k`` most similar sampled images whose embedding cosine
similarity reaches ``threshold`` (links are undirected, weighted by the similarity).
Communities come from networkx's Louvain method (seeded); the layout is a force-directed
(Fruchterman-Reingold) layout compiled with numba, started from the 2-D PCA projection of
the embeddings, so a 3,000-node graph is ready in about a second rather than the minutes
of ``networkx.spring_layout`` or the quarter hour the original study's browser graph took.
The result is plain arrays, ready for a plotly ``Scattergl`` (nodes) and one line trace
(:meth:`NeighbourGraph.edge_xy`).

Example:
    >>> g = neighbour_graph(idx, sample=3000)
    >>> g.x.shape, int(g.community.max()) + 1, len(g.edges)
    ((38,), 3, 138)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

from imgrec._numba_cache import CACHE
from imgrec.features.recipe import DEFAULT_RECIPE, RECIPES, recipe_of
from imgrec.search.kernels import _PARALLEL

if TYPE_CHECKING:
    from imgrec.index.index import Index

DEFAULT_K = 5
#: link threshold in an index built now; every index has its recipe's own
#: (:attr:`~imgrec.features.recipe.Recipe.graph_threshold`: 0.5 for v1, 0.62 for v2, 0.69 for v3)
DEFAULT_THRESHOLD = RECIPES[DEFAULT_RECIPE].graph_threshold
DEFAULT_SAMPLE = 3000
MAX_SAMPLE = 10_000
LAYOUT_ITERATIONS = 60


@dataclass(frozen=True)
class NeighbourGraph:
    """A kNN graph over sampled images (node ``i`` is index row ``rows[i]``).

    Attributes:
        rows: (m,) int64 index rows of the nodes, ascending.
        x, y: (m,) float32 layout coordinates, within [-1, 1].
        community: (m,) int32 Louvain community of each node, 0 the largest.
        edges: (e, 2) int32 node pairs ``i < j``.
        weights: (e,) float32 cosine similarity of each edge.
        modularity: of the communities (networkx's definition, weighted).
        seconds: time taken to build it.
        representatives: (c,) int64 node of each community whose embedding is most similar
            (cosine) to the mean of its community's.
        threshold: the cosine a link needed.
    """

    rows: np.ndarray
    x: np.ndarray
    y: np.ndarray
    community: np.ndarray
    edges: np.ndarray
    weights: np.ndarray
    modularity: float
    seconds: float = 0.0
    representatives: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    threshold: float = DEFAULT_THRESHOLD

    @property
    def n_communities(self) -> int:
        return int(self.community.max()) + 1 if len(self.community) else 0

    def community_sizes(self) -> np.ndarray:
        return np.bincount(self.community, minlength=self.n_communities)

    def edge_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of every edge as ``x0, x1, nan, ...``: one plotly line trace draws all."""
        e = self.edges
        xs = np.full(3 * len(e), np.nan, np.float32)
        ys = np.full(3 * len(e), np.nan, np.float32)
        xs[0::3], xs[1::3] = self.x[e[:, 0]], self.x[e[:, 1]]
        ys[0::3], ys[1::3] = self.y[e[:, 0]], self.y[e[:, 1]]
        return xs, ys

    def neighbours(self, node: int) -> np.ndarray:
        """Nodes linked to ``node``."""
        e = self.edges
        return np.sort(np.concatenate([e[e[:, 0] == node, 1], e[e[:, 1] == node, 0]]))


def sample_rows(n: int, sample: int, seed: int = 0) -> np.ndarray:
    """``sample`` distinct rows of ``n`` drawn with ``seed`` (all rows when n <= sample), sorted."""
    if n <= sample:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False)).astype(np.int64)


def knn_edges(x: np.ndarray, k: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges linking each row of ``x`` (m, d) to its ``k`` most similar other rows
    (cosine) at or above ``threshold``; returns ``(edges (e, 2) i < j, cosine (e,))``."""
    m = len(x)
    x = np.asarray(x, dtype=np.float32)
    nrm = np.linalg.norm(x.astype(np.float64), axis=1)
    u = (x / np.where(nrm > 0, nrm, 1.0)[:, None]).astype(np.float32)
    src, dst = [], []
    kk = min(int(k), m - 1)
    if kk < 1:
        return np.zeros((0, 2), np.int32), np.zeros(0, np.float32)
    for s in range(0, m, 2048):
        sims = u[s:s + 2048] @ u.T
        sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(sims, top, 1)
        ok = vals >= threshold
        src.append(np.repeat(np.arange(s, s + len(sims)), kk)[ok.ravel()])
        dst.append(top.ravel()[ok.ravel()])
    a, b = np.concatenate(src), np.concatenate(dst)
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int32), np.zeros(0, np.float32)
    w = (u[pairs[:, 0]].astype(np.float64) * u[pairs[:, 1]]).sum(1)
    return pairs.astype(np.int32), w.astype(np.float32)


def neighbour_graph(index: Index | np.ndarray, k: int = DEFAULT_K,
                    threshold: float | None = None, sample: int = DEFAULT_SAMPLE,
                    seed: int = 0, iterations: int = LAYOUT_ITERATIONS) -> NeighbourGraph:
    """Build the kNN graph of (a sample of) the gallery with communities and a layout.

    Args:
        index: an opened :class:`~imgrec.index.index.Index`, or an (n, d) matrix of vectors.
        k: neighbours linked per image (default 5).
        threshold: cosine similarity a link needs (None: the one calibrated for the
            index's embedding recipe, 0.5 for v1, 0.62 for v2, 0.69 for v3; a matrix: the default
            recipe's).
        sample: images drawn at random (with ``seed``) when the gallery is larger; at
            most :data:`MAX_SAMPLE`. Neighbours are searched within the sample.
        seed: for the sample, Louvain and the layout: same inputs, same graph.
        iterations: force-directed layout iterations (0: the PCA projection as is).

    Returns:
        A :class:`NeighbourGraph`.

    Raises:
        ValueError: bad ``k``, ``sample`` or ``threshold``.

    Example:
        >>> g = neighbour_graph(np.eye(6, dtype=np.float32) + 0.5, k=2, threshold=0.1)
        >>> len(g.rows), g.x.shape
        (6, (6,))
    """
    import networkx as nx

    t0 = time.perf_counter()
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not 1 <= int(sample) <= MAX_SAMPLE:
        raise ValueError(f"sample must lie in 1..{MAX_SAMPLE}, got {sample}")
    if threshold is None:
        threshold = recipe_of(index).graph_threshold
    if not -1 <= float(threshold) <= 1:
        raise ValueError(f"threshold must lie in [-1, 1], got {threshold}")
    data = index.embeddings if hasattr(index, "embeddings") else np.asarray(index)
    rows = sample_rows(len(data), int(sample), seed)
    x = np.asarray(data[rows], dtype=np.float32)
    m = len(rows)
    edges, weights = knn_edges(x, int(k), float(threshold))
    g = nx.Graph()
    g.add_nodes_from(range(m))
    g.add_weighted_edges_from((int(a), int(b), float(w)) for (a, b), w in zip(edges, weights,
                                                                              strict=True))
    comms = nx.community.louvain_communities(g, weight="weight", seed=seed) if m else []
    comms = sorted(comms, key=lambda c: (-len(c), min(c)))
    community = np.zeros(m, np.int32)
    for c, nodes in enumerate(comms):
        community[list(nodes)] = c
    modularity = float(nx.community.modularity(g, comms, weight="weight")) if g.number_of_edges() else 0.0
    pos = _normalise(spread(layout(x, edges, weights, iterations, seed), community))
    return NeighbourGraph(rows, pos[:, 0].astype(np.float32), pos[:, 1].astype(np.float32),
                          community, edges, weights, modularity, time.perf_counter() - t0,
                          representatives(x, community), float(threshold))


def representatives(x: np.ndarray, community: np.ndarray) -> np.ndarray:
    """The node of each community whose row of ``x`` is most similar (cosine) to the mean
    of its community's unit rows (the lowest node on ties).

    Example:
        >>> representatives(np.array([[1, 0], [1, 0.2], [1, 0.5], [0, 1]], np.float32),
        ...                 np.array([0, 0, 0, 1])).tolist()
        [1, 3]
    """
    community = np.asarray(community)
    n_c = int(community.max()) + 1 if len(community) else 0
    nrm = np.linalg.norm(np.asarray(x, np.float64), axis=1)
    u = np.asarray(x, np.float64) / np.where(nrm > 0, nrm, 1.0)[:, None]
    out = np.zeros(n_c, np.int64)
    for c in range(n_c):
        members = np.flatnonzero(community == c)
        out[c] = members[int(np.argmax(u[members] @ u[members].mean(0)))]
    return out


def spread(pos: np.ndarray, community: np.ndarray, fill: float = 0.35, most: float = 4.0
           ) -> np.ndarray:
    """Enlarge each community about its centre until its radius is ``fill`` of the distance
    to the nearest other community's centre (at most ``most`` times; never shrunk).

    The force-directed layout packs a well-separated community into a tight knot whose links
    hide under its nodes; spreading it keeps the communities apart (two radii add up to at
    most ``2 * fill`` of the distance of their centres) while its links become visible.

    Example:
        >>> pos = np.array([[0, 0], [0.01, 0], [1, 0], [1.01, 0]], np.float64)
        >>> spread(pos, np.array([0, 0, 1, 1]))[:, 0].round(3).tolist()
        [-0.015, 0.025, 0.985, 1.025]
    """
    community = np.asarray(community)
    n_c = int(community.max()) + 1 if len(community) else 0
    if n_c < 2:
        return pos
    centres = np.stack([pos[community == c].mean(0) for c in range(n_c)])
    offsets = pos - centres[community]
    radius = np.zeros(n_c)
    np.maximum.at(radius, community, np.hypot(offsets[:, 0], offsets[:, 1]))
    d = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    scale = np.clip(fill * d.min(1) / np.where(radius > 0, radius, np.inf), 1.0, most)
    return centres[community] + scale[community, None] * offsets


def layout(x: np.ndarray, edges: np.ndarray, weights: np.ndarray,
           iterations: int = LAYOUT_ITERATIONS, seed: int = 0) -> np.ndarray:
    """(m, 2) float32 positions in [-1, 1]: PCA of ``x``, refined by Fruchterman-Reingold."""
    m = len(x)
    if m == 0:
        return np.zeros((0, 2), np.float32)
    rng = np.random.default_rng(seed)
    pos = _pca2(np.asarray(x, dtype=np.float64), rng) if m > 2 else np.zeros((m, 2))
    pos = pos + 1e-3 * (np.abs(pos).max() or 1.0) * rng.standard_normal(pos.shape)
    pos = _normalise(pos)
    if iterations > 0 and m > 1:
        both = np.concatenate([edges, edges[:, ::-1]]) if len(edges) else np.zeros((0, 2), np.int64)
        wb = np.concatenate([weights, weights]).astype(np.float64)
        o = np.argsort(both[:, 0], kind="stable")
        indptr = np.searchsorted(both[o, 0], np.arange(m + 1)).astype(np.int64)
        pos = (pos + 1.0) / 2.0  # FR works in the unit square
        with _PARALLEL:
            pos = _fruchterman_reingold(pos, indptr, both[o, 1].astype(np.int64), wb[o],
                                        int(iterations))
        pos = _normalise(pos)
    return pos.astype(np.float32)


def _pca2(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 2-D PCA projection of the rows of ``x`` by subspace iteration (a few matrix
    products instead of a full SVD: 20 ms rather than 1.4 s for 3,000 x 1,280)."""
    xc = x - x.mean(0)
    q = rng.standard_normal((x.shape[1], min(10, x.shape[1])))
    for _ in range(5):
        q, _ = np.linalg.qr(xc.T @ (xc @ q))
    u, sv, _ = np.linalg.svd(xc @ q, full_matrices=False)
    return u[:, :2] * sv[:2] if u.shape[1] >= 2 else np.zeros((len(x), 2))


def _normalise(pos: np.ndarray) -> np.ndarray:
    """Centre and scale to [-1, 1] (the larger extent)."""
    pos = pos - (pos.max(0) + pos.min(0)) / 2
    extent = np.abs(pos).max()
    return pos / extent if extent > 0 else pos


@njit(parallel=True, fastmath=True, cache=CACHE)
def _fruchterman_reingold(pos, indptr, nbr, w, iterations):  # pragma: no cover - compiled
    """networkx's Fruchterman-Reingold update (all-pairs repulsion k^2/d, attraction
    w * d^2 / k along edges, step capped by a linearly cooling temperature), in float32
    with the coordinates in two arrays so the all-pairs loop vectorises."""
    m = pos.shape[0]
    k2 = np.float32(1.0 / m)
    k = np.float32(np.sqrt(1.0 / m))
    t = np.float32(0.1)
    dt = t / np.float32(iterations + 1)
    px = pos[:, 0].astype(np.float32)
    py = pos[:, 1].astype(np.float32)
    dxs = np.zeros(m, np.float32)
    dys = np.zeros(m, np.float32)
    for _ in range(iterations):
        for i in prange(m):
            dx = np.float32(0.0)
            dy = np.float32(0.0)
            xi = px[i]
            yi = py[i]
            for j in range(m):  # j == i adds 0
                ddx = xi - px[j]
                ddy = yi - py[j]
                f = k2 / max(ddx * ddx + ddy * ddy, np.float32(1e-4))
                dx += ddx * f
                dy += ddy * f
            for e in range(indptr[i], indptr[i + 1]):
                j = nbr[e]
                ddx = xi - px[j]
                ddy = yi - py[j]
                f = np.float32(w[e]) * max(np.sqrt(ddx * ddx + ddy * ddy), np.float32(1e-2)) / k
                dx -= ddx * f
                dy -= ddy * f
            dxs[i] = dx
            dys[i] = dy
        for i in prange(m):
            step = t / max(np.sqrt(dxs[i] * dxs[i] + dys[i] * dys[i]), np.float32(0.01))
            px[i] += dxs[i] * step
            py[i] += dys[i] * step
        t -= dt
    out = np.empty((m, 2))
    out[:, 0] = px
    out[:, 1] = py
    return out
