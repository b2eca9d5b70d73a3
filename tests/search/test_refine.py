"""Refined search ("more like this / less like this"): exact over the gallery, moves a
negative-like image down, validated, and reachable from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import run_cli

from imgrec import Index, Stored
from imgrec.errors import QueryError
from imgrec.search.refine import MAX_NEGATIVE_WEIGHT, rank_refined


def _reference(emb: np.ndarray, pos: list[int], neg: list[int], w: float) -> np.ndarray:
    u = emb.astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    score = (u @ u[pos].T).mean(1)
    if neg:
        score -= w * (u @ u[neg].T).mean(1)
    return score


def _rank_of(hits, path: str) -> int:
    return next(h.rank for h in hits if h.path == path)


def test_a_negative_moves_look_alikes_down(demo_index):
    n = len(demo_index)
    q = Stored("chelsea/chelsea_orig.jpg")
    plain = demo_index.search(q, k=n).combined
    # the non-cat image most similar to the cat photo, and another photo of its family
    intruder = next(h.path for h in plain if not h.path.startswith("chelsea/"))
    family = intruder.split("/")[0]
    negative = Stored(f"{family}/{family}_orig.jpg")
    assert negative.path != intruder
    res = demo_index.search(q, k=n, negatives=[negative], negative_weight=1.0)
    refined = res.combined
    assert _rank_of(refined, intruder) > _rank_of(plain, intruder)
    family_ranks = [h.rank for h in refined if h.path.startswith(f"{family}/")]
    assert min(family_ranks) > n - 20  # the whole family sinks to the bottom
    assert {h.path.split("/")[0] for h in refined[:12]} == {"chelsea"}  # positives stay on top
    assert res.negatives == [negative.path] and res.negative_weight == 1.0
    assert res.per_query[0] == plain  # per-query lists are the plain rankings
    d = json.loads(json.dumps(res.to_dict()))
    assert d["negatives"] == [negative.path] and d["negative_weight"] == 1.0
    assert res.to_rows()[-1]["query"] == "combined"


def test_refined_ranking_equals_brute_force(demo_index):
    emb = np.asarray(demo_index.embeddings)
    paths = demo_index.all_paths()
    rng = np.random.default_rng(0)
    for trial in range(4):
        pos = rng.choice(len(paths), 1 + trial, replace=False).tolist()
        neg = rng.choice(len(paths), 5 - trial, replace=False).tolist()
        w = float(rng.uniform(0, 2))
        res = demo_index.search([Stored(paths[r]) for r in pos], k=25,
                                negatives=[Stored(paths[r]) for r in neg], negative_weight=w)
        ref = _reference(emb, pos, neg, w)
        order = np.lexsort((np.arange(len(ref)), -ref))[:25]
        assert [h.row for h in res.combined] == order.tolist()
        np.testing.assert_allclose([h.score for h in res.combined], ref[order], atol=1e-12)
    # weight 0: the plain mean-cosine ranking
    one = demo_index.search(Stored(paths[0]), k=10, negatives=[Stored(paths[50])],
                            negative_weight=0)
    plain = demo_index.search(Stored(paths[0]), k=10)
    assert [h.path for h in one.combined] == [h.path for h in plain.combined]


def test_a_query_file_as_negative(demo_index_cached, demo_gallery):
    res = demo_index_cached.search(Stored("coffee/coffee_orig.jpg"), k=5,
                                   negatives=demo_gallery / "chelsea" / "chelsea_orig.jpg")
    assert res.negatives == ["chelsea_orig.jpg"]
    assert res.combined[0].path.startswith("coffee/")


def test_refine_is_validated(demo_index):
    q, neg = Stored("coffee/coffee_orig.jpg"), Stored("chelsea/chelsea_orig.jpg")
    for kwargs in ({"method": "color"}, {"method": "pca"}, {"metric": "euclidean"},
                   {"metric": "all"}):
        with pytest.raises(QueryError, match=r"embedding.*cosine"):
            demo_index.search(q, negatives=[neg], **kwargs)
    for w in (-0.1, float("nan"), float("inf"), "heavy"):
        with pytest.raises(QueryError, match="negative_weight"):
            demo_index.search(q, negatives=[neg], negative_weight=w)
    with pytest.raises(QueryError, match="at most 5 negative"):
        demo_index.search(q, negatives=[neg] * 6)
    with pytest.raises(QueryError, match="not an indexed image"):
        demo_index.search(q, negatives=[Stored("nope.jpg")])
    assert demo_index.search(q, negatives=[]).negatives == []  # none: a plain search


def test_rank_refined_small_cases():
    data = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [2, 0]], np.float32)
    norms = np.linalg.norm(data, axis=1).astype(np.float32)
    rows, vals = rank_refined(data, norms, data[:1], data[1:2], 0.5, 5)
    assert rows.tolist() == [0, 4, 2, 3, 1]  # ties (rows 0 and 4) by row number
    np.testing.assert_allclose(vals, [1, 1, 0.5 * np.sqrt(0.5), 0, -0.5])
    rows, _ = rank_refined(data, norms, data[:1], np.zeros((0, 2)), 0.5, 2)
    assert rows.tolist() == [0, 4]
    with pytest.raises(QueryError):
        rank_refined(data, norms, np.zeros((0, 2)), data[:1], 0.5, 2)


def test_cli_negative(demo_cli, cli_env):
    out = run_cli("search", "@chelsea/chelsea_orig.jpg", "--negative", "@coffee/coffee_orig.jpg",
                  "--negative-weight", "0.8", "--index", demo_cli.index, "-k", "3", "--json",
                  env=cli_env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["negatives"] == ["coffee/coffee_orig.jpg"] and got["negative_weight"] == 0.8
    assert all(h["path"].startswith("chelsea/") for h in got["combined"])
    bad = run_cli("search", "@chelsea/chelsea_orig.jpg", "--negative", "@coffee/coffee_orig.jpg",
                  "--method", "color", "--index", demo_cli.index, env=cli_env)
    assert bad.returncode == 2 and "cosine" in bad.stderr


def test_index_from_arrays_refine(tmp_path):
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(500, 32)).astype(np.float32)
    idx = Index.from_arrays(tmp_path / "ix", [f"{i}.jpg" for i in range(500)], emb,
                            rng.random((500, 768)), model="m")
    res = idx.search([Stored("1.jpg"), Stored("2.jpg")], k=500, negatives=[Stored("3.jpg")],
                     negative_weight=0.7)
    ref = _reference(emb, [1, 2], [3], 0.7)
    assert [h.row for h in res.combined] == np.lexsort((np.arange(500), -ref)).tolist()


def test_refined_scores_are_float64_and_unclamped(demo_index):
    """Heavy negative weights: every score is the float64 definition, far below -1 where
    the negatives dominate, and the combined list says it is refined, not cosine."""
    emb = np.asarray(demo_index.embeddings)
    paths = demo_index.all_paths()
    pos, neg = [0], [40, 80, 120]
    for w in (5.0, 37.5, MAX_NEGATIVE_WEIGHT):
        res = demo_index.search(Stored(paths[0]), k=len(paths),
                                negatives=[Stored(paths[r]) for r in neg], negative_weight=w)
        ref = _reference(emb, pos, neg, w)
        order = np.lexsort((np.arange(len(ref)), -ref))
        assert [h.row for h in res.combined] == order.tolist()
        scores = np.array([h.score for h in res.combined])
        np.testing.assert_allclose(scores, ref[order], rtol=1e-12, atol=1e-12 * (1 + w))
        assert scores.min() < -1 and -1 - w <= scores.min() and scores.max() <= 1 + w
        assert [h.distance for h in res.combined] == pytest.approx(1 - scores, abs=1e-12)
        assert res.metric == "cosine" and res.combined_metric == "refined"
        assert all(-1 <= h.score <= 1 for h in res.per_query[0])  # plain cosine lists
        d = json.loads(json.dumps(res.to_dict()))
        assert d["metric"] == "cosine" and d["combined_metric"] == "refined"
        assert d["combined"][-1]["score"] == pytest.approx(ref[order[-1]], abs=1e-9)
        rows = res.to_rows()
        assert {r["metric"] for r in rows if r["query"] == "combined"} == {"refined"}
        assert {r["metric"] for r in rows if r["query"] != "combined"} == {"cosine"}
    plain = demo_index.search(Stored(paths[0]), k=3)
    assert plain.combined_metric is None and "combined_metric" not in plain.to_dict()


@pytest.mark.parametrize("w", [1e308, 1000, 100.5, float("-inf"), True, "0.5", None, [1.0]])
def test_weights_beyond_the_bound_are_refused(demo_index, w):
    q, neg = Stored("coffee/coffee_orig.jpg"), Stored("chelsea/chelsea_orig.jpg")
    with pytest.raises(QueryError, match=r"negative_weight must be a finite number in \[0, 100\]"):
        demo_index.search(q, negatives=[neg], negative_weight=w)


def test_rank_refined_heavy_weights_on_a_large_gallery():
    """The refined scan's query is a unit vector however large the weight, and the
    candidate bound grows with it: exact against brute force at every allowed weight."""
    rng = np.random.default_rng(8)
    data = rng.normal(size=(6000, 24)).astype(np.float32)
    data[3000:3100] = data[7]  # ties
    norms = np.linalg.norm(data.astype(np.float64), axis=1).astype(np.float32)
    for w in (0.0, 1.0, 42.0, MAX_NEGATIVE_WEIGHT):
        rows, vals = rank_refined(data, norms, data[[7, 9]], data[[11, 12, 13]], w, 50)
        ref = _reference(data, [7, 9], [11, 12, 13], w)
        order = np.lexsort((np.arange(len(ref)), -ref))[:50]
        assert rows.tolist() == order.tolist()
        np.testing.assert_allclose(vals, ref[order], rtol=1e-12, atol=1e-12 * (1 + w))
    with pytest.raises(QueryError, match="negative_weight"):
        rank_refined(data, norms, data[:1], data[1:2], 1e308, 5)


def test_cli_refuses_a_huge_negative_weight(demo_cli, cli_env):
    for w in ("1e308", "1000"):
        out = run_cli("search", "@chelsea/chelsea_orig.jpg", "--negative",
                      "@coffee/coffee_orig.jpg", "--negative-weight", w, "--index",
                      demo_cli.index, "--json", env=cli_env)
        assert out.returncode == 2 and out.stdout == ""
        assert "negative_weight must be a finite number in [0, 100]" in out.stderr
        assert "Traceback" not in out.stderr
