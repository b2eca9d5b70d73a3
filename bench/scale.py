"""Beyond one machine: the Ray indexing path vs the local build, and sharded exact search
over Ray actors vs the unsharded index, each pair measured in the same run.

The machine may be shared with other work: absolute numbers are noisy; compare the
numbers of one run with each other.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .machine import machine

NODES = (1, 4, 16, 64)


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def indexing(corpus: Path, work: Path, repeat: int) -> dict:
    """images/s of the local build and of the Ray path (1 and 2 CNN actors), alternated."""
    import ray

    from imgrec import CNNEmbedder, build_index
    from imgrec.build.builder import Build
    from imgrec.build.ray_producer import RayFeatures
    from imgrec.shard.cluster import session

    runs: dict[str, list[float]] = {"local": [], "ray-1-actor": [], "ray-2-actors": []}
    t = time.perf_counter()
    with session(None):
        startup = time.perf_counter() - t
        for _ in range(repeat):
            r = build_index(corpus, work / "idx-local", full=True)
            runs["local"].append(r.rate)
            for actors, key in ((1, "ray-1-actor"), (2, "ray-2-actors")):
                r = Build(corpus, work / f"idx-ray{actors}", embedder=CNNEmbedder(), full=True,
                          producer=RayFeatures(actors=actors)).run()
                runs[key].append(r.rate)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        gpus = int(ray.cluster_resources().get("GPU", 0))
    rate = {k: round(statistics.median(v), 2) for k, v in runs.items()}
    best = max(rate["ray-1-actor"], rate["ray-2-actors"])
    return {
        "corpus_images": r.indexed, "repeat": repeat, "images_per_s": rate,
        "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "ray_overhead_pct": round(100 * (1 - best / rate["local"]), 1),
        "per_actor_images_per_s": {"1 actor": rate["ray-1-actor"],
                                   "2 actors": round(rate["ray-2-actors"] / 2, 2)},
        "ray_startup_s": round(startup, 2), "ray_cpus": cpus, "ray_gpus": gpus,
        "projection": {
            "what": "a projection, not a measurement: N nodes like this one, each at the "
                    "Ray path's rate measured here, assuming the shared filesystem and the "
                    "driver keep up",
            "images_per_s": {f"{n} nodes": round(n * best, 1) for n in NODES},
            "hours_for_10M": {f"{n} nodes": round(1e7 / (n * best) / 3600, 1) for n in NODES}},
    }


def synthetic(like: Path, work: Path, n: int) -> Path:
    """An index of ``n`` rows drawn from a Gaussian with the per-dimension mean and spread
    of a real index's embeddings; histograms resampled from its rows with noise."""
    from imgrec import Index

    d = work / f"scale-{n}"
    if (d / "CURRENT").exists():
        return d
    real = Index.open(like)
    emb = np.asarray(real.embeddings, np.float64)
    mu, sd = emb.mean(0), emb.std(0)
    rh = np.asarray(real.histograms).reshape(len(real), 3, 256)
    rng = np.random.default_rng(0)
    e = np.empty((n, emb.shape[1]), np.float32)
    h = np.empty((n, 768), np.float32)
    for s in range(0, n, 50_000):
        m = min(50_000, n - s)
        e[s:s + m] = mu + sd * rng.standard_normal((m, emb.shape[1]))
        x = rh[rng.integers(0, len(rh), m)] * rng.gamma(4.0, 0.25, (m, 3, 256))
        h[s:s + m] = (x / np.maximum(x.sum(-1, keepdims=True), 1e-12)).reshape(m, 768)
    Index.from_arrays(d, [f"img/{i:07d}.jpg" for i in range(n)], e, h, model=real.model)
    return d


def search(like: Path, work: Path, n: int, shards: tuple[int, ...], repeat: int) -> dict:
    """Per-query latency of the unsharded index and of 2 and 4 shards over Ray actors."""
    import ray

    from imgrec import Index, Stored
    from imgrec.shard.cluster import start
    from imgrec.shard.sharded import ShardedIndex, _threads_per_shard, merge
    from imgrec.shard.split import split

    path = synthetic(like, work, n)
    full = Index.open(path)
    rng = np.random.default_rng(1)
    picks = [Stored(f"img/{i:07d}.jpg") for i in rng.integers(0, n, 5)]
    start(None)
    out: dict = {"rows": n, "dim": int(full.embeddings.shape[1]), "k": 10, "repeat": repeat}
    for nq in (1, 5):
        q = picks[:nq]
        out[f"unsharded_ms_{nq}q"] = _median_ms(lambda q=q: full.search(q, k=10), repeat)
    out["loadavg_unsharded"] = os.getloadavg()
    for s in shards:
        folder = work / f"scale-{n}-{s}shards"
        if not (folder / "sharded.json").exists():
            split(path, folder, s)
        idx = ShardedIndex.open(folder)
        idx_threads = _threads_per_shard(s)
        res: dict = {"round_trip_ms": _median_ms(
            lambda idx=idx: ray.get([a.ping.remote() for a in idx.actors]), repeat)}
        for nq in (1, 5):
            q = picks[:nq]
            a, b = idx.search(q, k=10).combined, full.search(q, k=10).combined
            assert [(h.row, h.path) for h in a] == [(h.row, h.path) for h in b]
            res[f"max_score_diff_{nq}q"] = max(abs(x.score - y.score) for x, y in zip(a, b, strict=True))
            # the unsharded search again, right before: the pair shares one load window
            res[f"unsharded_ms_{nq}q"] = _median_ms(lambda q=q: full.search(q, k=10), repeat)
            res[f"sharded_ms_{nq}q"] = _median_ms(lambda q=q, idx=idx: idx.search(q, k=10),
                                                  repeat)
            # the driver's first round: the stored queries' features from their shards
            res[f"stored_features_ms_{nq}q"] = _median_ms(
                lambda q=q, idx=idx: idx.query_features(q, True), repeat)
            feats = idx.query_features(q, True)
            qv = np.stack([f.embedding for f in feats])
            parts = idx._all("rank", "embedding", "cosine", qv, 10, None)
            res[f"shard_calls_ms_{nq}q"] = _median_ms(
                lambda qv=qv, idx=idx: idx._all("rank", "embedding", "cosine", qv, 10, None),
                repeat)
            # one shard's scan alone (the others idle): the time the cores owe each shard
            res[f"one_shard_alone_ms_{nq}q"] = _median_ms(lambda qv=qv, idx=idx: ray.get(
                idx.actors[0].rank.remote("embedding", "cosine", qv, 10, None)), repeat)
            res[f"driver_ms_{nq}q"] = round(
                res[f"sharded_ms_{nq}q"] - res[f"shard_calls_ms_{nq}q"], 2)
            merge_ms = _median_ms(lambda parts=parts, nq=nq, idx=idx: [
                idx.paths(merge([p[0][j] for p in parts], 10, True)[0])
                for j in range(nq)], repeat)
            res[f"merge_share_pct_{nq}q"] = round(100 * merge_ms / res[f"sharded_ms_{nq}q"], 2)
            res[f"over_unsharded_ms_{nq}q"] = round(
                res[f"sharded_ms_{nq}q"] - res[f"unsharded_ms_{nq}q"], 2)
        res["threads_per_shard"] = idx_threads
        res["loadavg"] = os.getloadavg()
        res["within_target"] = all(res[f"over_unsharded_ms_{nq}q"] <= 30 for nq in (1, 5))
        out[f"{s}_shards"] = res
        idx.close()
    return out


def run(args) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "note": "measured on a machine shared with other work: "
              "numbers are noisy; compare within this run", "loadavg_start": os.getloadavg()}
    if args.corpus:
        result["indexing"] = indexing(Path(args.corpus), work, args.repeat)
        print(json.dumps(result["indexing"]), file=sys.stderr, flush=True)  # kept if search fails
    if not args.skip_search:
        result["search"] = search(Path(args.like), work, args.n,
                                  tuple(int(s) for s in args.shards.split(",")), args.repeat_search)
    result["loadavg_end"] = os.getloadavg()
    return result
