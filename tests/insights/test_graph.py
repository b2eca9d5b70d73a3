"""The neighbour graph: communities of the demo gallery, plotly-ready arrays, sampling,
determinism, and 3,000 nodes in well under 10 s."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import run_cli

from imgrec.demo import family_of
from imgrec.insights.graph import knn_edges, neighbour_graph, sample_rows


def test_demo_graph_communities_are_the_photos(demo_index):
    g = neighbour_graph(demo_index)
    m = len(demo_index)
    assert g.rows.tolist() == list(range(m))
    for a in (g.x, g.y):
        assert a.shape == (m,) and np.isfinite(a).all() and np.abs(a).max() <= 1 + 1e-6
    e = g.edges
    assert e.ndim == 2 and e.shape[1] == 2 and (e[:, 0] < e[:, 1]).all()
    assert len(np.unique(e, axis=0)) == len(e)
    # the link threshold calibrated for the index's recipe (v3: 0.69, as many clip-art
    # links as v1's 0.5)
    assert g.threshold == demo_index.recipe.graph_threshold == 0.69
    assert (g.weights >= 0.69).all() and len(g.weights) == len(e)
    # each node links to at most 5 by its own choice: at most 5 * m undirected edges
    assert m <= len(e) <= 5 * m
    paths = demo_index.all_paths()
    fams = np.array([family_of(p) for p in paths])
    assert g.n_communities == 14 and g.modularity > 0.8
    for c in range(g.n_communities):
        assert len(set(fams[g.community == c])) == 1
    assert (g.community_sizes() >= 12).all()
    xs, ys = g.edge_xy()
    assert xs.shape == ys.shape == (3 * len(e),) and np.isnan(xs[2::3]).all()
    assert xs[0] == g.x[e[0, 0]] and ys[1] == g.y[e[0, 1]]
    assert set(g.neighbours(0).tolist()) <= set(np.flatnonzero(fams == fams[0]).tolist())


def test_demo_graph_links_show_and_each_community_has_a_representative(demo_index):
    """Each community is spread about its centre so its links are longer than its nodes
    are wide (the force layout packed them into knots a third as wide), the communities
    stay apart, and each has a representative: its member nearest the community's mean."""
    g = neighbour_graph(demo_index)
    e = g.edges
    assert np.median(np.hypot(g.x[e[:, 0]] - g.x[e[:, 1]], g.y[e[:, 0]] - g.y[e[:, 1]])) > 0.08
    c = g.community
    centres = np.stack([[g.x[c == k].mean(), g.y[c == k].mean()] for k in range(g.n_communities)])
    radius = np.array([np.hypot(g.x[c == k] - cx, g.y[c == k] - cy).max()
                       for k, (cx, cy) in enumerate(centres)])
    apart = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    np.fill_diagonal(apart, np.inf)
    assert ((radius[:, None] + radius[None]) < apart).all()  # no two communities meet
    assert g.representatives.shape == (g.n_communities,)
    emb = np.asarray(demo_index.embeddings, np.float64)
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for k, node in enumerate(g.representatives):
        members = np.flatnonzero(c == k)
        assert c[node] == k
        sims = u[g.rows[members]] @ u[g.rows[members]].mean(0)
        assert sims.max() == pytest.approx(u[g.rows[node]] @ u[g.rows[members]].mean(0))


def test_spread_enlarges_tight_communities_only():
    from imgrec.insights.graph import spread

    rng = np.random.default_rng(0)
    tight = np.concatenate([c + 0.01 * rng.normal(size=(10, 2)) for c in ((0, 0), (1, 0))])
    wide = np.concatenate([c + 0.3 * rng.normal(size=(10, 2)) for c in ((0, 0), (1, 0))])
    comm = np.repeat([0, 1], 10)
    out = spread(tight, comm)
    np.testing.assert_allclose(out[:10].mean(0), tight[:10].mean(0), atol=1e-12)
    assert np.ptp(out[:10], axis=0).max() > 3 * np.ptp(tight[:10], axis=0).max()
    np.testing.assert_allclose(spread(wide, comm), wide, atol=1e-12)  # already wide: unchanged
    np.testing.assert_array_equal(spread(tight, np.zeros(20, int)), tight)  # one community


def test_graph_is_deterministic_and_samples(demo_index):
    a, b = neighbour_graph(demo_index, seed=1), neighbour_graph(demo_index, seed=1)
    for x, y in ((a.x, b.x), (a.y, b.y), (a.community, b.community), (a.edges, b.edges)):
        np.testing.assert_array_equal(x, y)
    s = neighbour_graph(demo_index, sample=40, seed=2)
    assert len(s.rows) == 40 and (np.diff(s.rows) > 0).all() and s.rows.max() < 170
    np.testing.assert_array_equal(s.rows, sample_rows(170, 40, 2))
    assert len(neighbour_graph(demo_index, threshold=0.99).edges) < len(a.edges)
    for bad in ({"k": 0}, {"sample": 0}, {"threshold": 2.0}):
        with pytest.raises(ValueError):
            neighbour_graph(demo_index, **bad)


def test_knn_edges_on_a_small_example():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], np.float32)
    e, w = knn_edges(x, 1, 0.5)
    assert e.tolist() == [[0, 1], [2, 3]]
    np.testing.assert_allclose(w, [0.99388373, 0.99388373], rtol=1e-6)
    assert len(knn_edges(x[:1], 5, 0.0)[0]) == 0


def test_three_thousand_nodes_find_the_planted_communities():
    """Its speed is measured by ``python -m bench beyond`` (the neighbour graph row)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, 256))
    x = (centres[rng.integers(0, 60, 3000)] + 0.8 * rng.normal(size=(3000, 256))).astype(np.float32)
    g = neighbour_graph(x, threshold=0.3)
    assert len(g.rows) == 3000 and len(g.edges) > 3000
    assert 40 <= g.n_communities <= 80  # the 60 planted groups, give or take


def test_cli_graph(demo_cli, cli_env):
    out = run_cli("graph", "--index", demo_cli.index, "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert len(got["nodes"]) == 170 and got["communities"] == 14
    assert {"path", "x", "y", "community"} == set(got["nodes"][0])
    table = run_cli("graph", "--index", demo_cli.index, "--sample", "50", env=cli_env)
    assert table.returncode == 0 and table.stdout.startswith("50 images")
