"""K-means clusters: the demo gallery's photos, determinism, representatives, mini-batches."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from support import run_cli

from imgrec.demo import family_of
from imgrec.insights import clusters as clusters_mod
from imgrec.insights.clusters import _finish, clusters


def _check(res, data: np.ndarray) -> None:
    n = len(data)
    k = res.k
    assert res.labels.shape == (n,) and res.centroids.shape == (k, data.shape[1])
    assert res.sizes.sum() == n and (np.bincount(res.labels, minlength=k) == res.sizes).all()
    assert list(res.sizes) == sorted(res.sizes, reverse=True)  # cluster 0 is the largest
    reps = res.representatives.tolist()
    assert len(set(reps)) == k  # no image represents two clusters
    x = np.asarray(data, np.float64)
    for c in range(k):
        members = res.members(c)
        assert res.labels[reps[c]] == c and members[0] == reps[c]
        d = ((x[members] - res.centroids[c].astype(np.float64)) ** 2).sum(1)
        assert d[0] <= d.min() + 1e-6  # the representative is the member nearest the centroid


def test_demo_clusters_are_the_photos(demo_index):
    res = clusters(demo_index, k=14, seed=0)
    _check(res, demo_index.embeddings)
    paths = demo_index.all_paths()
    families = [Counter(family_of(paths[r]) for r in res.members(c)) for c in range(14)]
    assert all(len(f) == 1 for f in families)  # each cluster is one photo's variants
    assert len({next(iter(f)) for f in families}) == 14


def test_clusters_are_deterministic_with_a_seed_and_default_k(demo_index):
    a, b = clusters(demo_index, seed=3), clusters(demo_index, seed=3)
    assert a.k == 30
    for x, y in ((a.labels, b.labels), (a.representatives, b.representatives),
                 (a.sizes, b.sizes), (a.centroids, b.centroids)):
        np.testing.assert_array_equal(x, y)
    _check(a, demo_index.embeddings)


def test_k_is_clipped_and_errors():
    x = np.eye(5, dtype=np.float32)
    res = clusters(x, k=30)
    assert res.k == 5 and sorted(res.representatives.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="empty"):
        clusters(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="at least 1"):
        clusters(x, k=0)


def test_minibatch_path_for_large_galleries(demo_index, monkeypatch):
    monkeypatch.setattr(clusters_mod, "FULL_KMEANS_MAX", 10)
    a, b = clusters(demo_index, k=14, seed=0), clusters(demo_index, k=14, seed=0)
    np.testing.assert_array_equal(a.labels, b.labels)
    _check(a, demo_index.embeddings)


def test_an_empty_cluster_gets_an_unused_representative():
    data = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5]], np.float32)
    centroids = np.array([[0, 0], [5, 5], [0.05, 0]], np.float32)  # the third wins nothing
    labels = np.array([0, 0, 1, 1], np.int32)
    dist = np.array([0, 0.01, 0, 0.01])
    res = _finish(data, labels, dist, centroids)
    assert res.sizes.tolist() == [2, 2, 0]
    assert len(set(res.representatives.tolist())) == 3
    assert res.representatives[2] == 1  # nearest to the empty centroid once row 0 is taken


def test_cli_clusters(demo_cli, cli_env):
    out = run_cli("clusters", "--index", demo_cli.index, "-k", "14", "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["k"] == 14 and sum(c["size"] for c in got["clusters"]) == 170
    assert len({c["representative"] for c in got["clusters"]}) == 14
    bad = run_cli("clusters", "--index", demo_cli.index, "-k", "0", env=cli_env)
    assert bad.returncode == 2


def test_auto_k_finds_the_demo_photos(demo_index):
    """The data's own k: the demo gallery is 14 photos, each with its variants."""
    from imgrec.insights.clusters import auto_k

    chosen = auto_k(demo_index)
    assert chosen.k == 14 and chosen.sample == len(demo_index)
    assert chosen.silhouettes[14] == max(chosen.silhouettes.values())
    assert set(chosen.silhouettes) >= set(range(2, 21))
    assert auto_k(demo_index) == chosen  # fixed seed: the same choice every time
    assert auto_k(demo_index.embeddings[:2]).k == 2 and auto_k(demo_index.embeddings[:1]).k == 1


def test_cli_chooses_k_as_the_dashboard_does(demo_cli, cli_env, demo_index):
    """Without -k the CLI clusters with auto_k's choice (14 on the 14 demo families)."""
    from imgrec.insights.clusters import auto_k

    out = run_cli("clusters", "--index", demo_cli.index, "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["k"] == auto_k(demo_index).k == 14
