"""Beyond search at scale: duplicate finding, the neighbour graph, clusters and refined
search on a synthetic index (`python -m bench beyond --n 100000`).

The synthetic embeddings have structure, so every stage has real work: ``clusters``
groups of images scattered around a centre (cosine ~0.55 between members of a group,
~0 between groups), plus planted near-duplicates (1 % of the images get a perturbed copy
at cosine ~0.93). Duplicate finding scans all n^2/2 pairs blockwise (no N x N matrix).
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import numpy as np

from imgrec import Index, Stored

from .machine import machine


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(work: Path, n: int, dim: int, groups: int, dup_frac: float) -> tuple[Path, int]:
    """A cached synthetic index with grouped embeddings and planted near-duplicates."""
    planted = int(n * dup_frac)
    d = work / f"beyond-{n}-{dim}-{groups}-{planted}"
    if (d / "CURRENT").exists():
        return d, planted
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((groups, dim), dtype=np.float32))
    emb = np.empty((n, dim), np.float32)
    hist = np.empty((n, 768), np.float32)
    base = n - planted
    for s in range(0, base, 50_000):
        m = min(50_000, base - s)
        g = rng.integers(0, groups, m)
        emb[s:s + m] = _unit(centres[g] + 0.9 * _unit(rng.standard_normal((m, dim), dtype=np.float32)))
    src = rng.choice(base, planted, replace=False)
    noise = _unit(rng.standard_normal((planted, dim), dtype=np.float32))
    emb[base:] = _unit(emb[src] + 0.4 * noise)
    for s in range(0, n, 50_000):
        m = min(50_000, n - s)
        h = rng.gamma(0.3, size=(m, 3, 256)).astype(np.float32) + 1e-6
        hist[s:s + m] = (h / h.sum(-1, keepdims=True)).reshape(m, 768)
    Index.from_arrays(d, [f"img/{i:07d}.jpg" for i in range(n)], emb, hist, model="synthetic")
    return d, planted


def run(args) -> dict:
    from imgrec.insights.clusters import clusters
    from imgrec.insights.duplicates import default_threshold, find_duplicates
    from imgrec.insights.graph import neighbour_graph

    t = time.perf_counter()
    d, planted = synthetic(args.work, args.n, args.dim, args.groups, 0.01)
    setup = time.perf_counter() - t
    ix = Index.open(d)
    out: dict = {"benchmark": "beyond", "machine": machine(), "n": args.n, "dim": args.dim,
                 "setup_s": round(setup, 1)}

    t = time.perf_counter()
    g = neighbour_graph(ix, sample=args.sample)
    first = time.perf_counter() - t
    times = []
    for seed in range(1, 4):
        t = time.perf_counter()
        g = neighbour_graph(ix, sample=args.sample, seed=seed)
        times.append(time.perf_counter() - t)
    out["graph"] = {"sample": len(g.rows), "k": 5, "threshold": 0.5, "edges": len(g.edges),
                    "communities": g.n_communities, "modularity": round(g.modularity, 3),
                    "first_call_s": round(first, 3),
                    "median_s": round(statistics.median(times), 3)}

    t = time.perf_counter()
    res = clusters(ix, 30, seed=0)
    out["clusters"] = {"k": 30, "method": "MiniBatchKMeans" if args.n > 20_000 else "KMeans",
                       "seconds": round(time.perf_counter() - t, 2),
                       "largest": int(res.sizes[0]), "smallest": int(res.sizes[-1])}

    paths = ix.paths([0, 1, 2])
    pos, neg = [Stored(paths[0]), Stored(paths[1])], [Stored(paths[2])]
    ix.search(pos, k=10, negatives=neg)
    rt = []
    for _ in range(5):
        t = time.perf_counter()
        ix.search(pos, k=10, negatives=neg)
        rt.append(time.perf_counter() - t)
    out["refine_search_s"] = round(statistics.median(rt), 4)

    if not args.skip_duplicates:
        t = time.perf_counter()
        t_dup = default_threshold(ix)  # arrays without a recipe: v1's, 0.65
        rep = find_duplicates(ix, t_dup)
        secs = time.perf_counter() - t
        out["duplicates"] = {"threshold": t_dup, "seconds": round(secs, 1),
                             "pairs_scanned": args.n * (args.n - 1) // 2,
                             "groups": len(rep.groups), "planted": planted,
                             "in_groups": sum(len(gr.members) for gr in rep.groups),
                             "extrapolated_400k_s": round(secs * (400_000 / args.n) ** 2)}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["peak_rss_gb"] = round(rss / 1e9, 3)
    out["json"] = ("graph: kNN + Louvain + layout on a random sample, first call includes "
                   "imports and numba compilation; duplicates: exact blockwise scan, float32 "
                   "BLAS, pairs near the threshold rescored in float64")
    return out
