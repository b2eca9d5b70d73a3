"""imgrec.search.rerank: alpha query expansion, by hand on a tiny index and on real images."""

from __future__ import annotations

import numpy as np
import pytest

from imgrec import Index, Stored
from imgrec.cli.main import main as cli_main
from imgrec.errors import QueryError
from imgrec.features.color import DIM
from imgrec.insights.evaluate import evaluate
from imgrec.insights.evaluate_rank import reranked_loo
from imgrec.search.rerank import Rerank, parse

# Unit vectors on a circle, at these angles (degrees): from a, b is nearest, then d, c, e.
ANGLES = {"a.jpg": 0, "b.jpg": 20, "c.jpg": 32, "d.jpg": -26, "e.jpg": -45, "f.jpg": 120}


@pytest.fixture()
def circle(tmp_path) -> Index:
    paths = list(ANGLES)
    rad = np.deg2rad(list(ANGLES.values()))
    emb = np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)
    hist = np.full((len(paths), DIM), 1 / 256, np.float32)
    return Index.from_arrays(tmp_path / "idx", paths, emb, hist, model="circle")


def test_expanded_ranking_equals_a_hand_computed_one(circle):
    plain = [h.path for h in circle.search(Stored("a.jpg"), k=6).per_query[0]]
    assert plain == ["a.jpg", "b.jpg", "d.jpg", "c.jpg", "e.jpg", "f.jpg"]
    res = circle.search(Stored("a.jpg"), k=6, rerank="aqe:n=2,alpha=1")
    # by hand: the two neighbours of a are a itself (cos 1) and b (cos 20 deg); the
    # expanded query is a + a + w b, w = cos 20 deg, at atan2(w sin 20, 2 + w cos 20)
    w = np.cos(np.deg2rad(20))
    at = np.rad2deg(np.arctan2(w * np.sin(np.deg2rad(20)), 2 + w * np.cos(np.deg2rad(20))))
    assert at == pytest.approx(6.36, abs=0.01)
    want = sorted(ANGLES, key=lambda p: abs(ANGLES[p] - at))
    assert want == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]  # c now before d
    assert [h.path for h in res.per_query[0]] == want
    for h in res.per_query[0]:  # the better of the plain and the expanded cosine
        plain_cos = np.cos(np.deg2rad(ANGLES[h.path]))
        assert h.score == pytest.approx(max(plain_cos, np.cos(np.deg2rad(ANGLES[h.path] - at))),
                                        abs=1e-6)
    assert res.per_query[0][0].score == pytest.approx(1.0)
    assert any("alpha query expansion" in n for n in res.notes)


def test_combined_ranking_is_the_mean_of_the_reranked_scores(circle):
    res = circle.search([Stored("a.jpg"), Stored("e.jpg")], k=6, rerank="aqe:n=2,alpha=1")
    vec = {p: np.array([np.cos(np.deg2rad(t)), np.sin(np.deg2rad(t))]) for p, t in ANGLES.items()}
    # a's two neighbours: a, b; e's: e, d (each with weight its cosine)
    fused = {}
    for p in ANGLES:
        total = 0.0
        for q, other in (("a.jpg", "b.jpg"), ("e.jpg", "d.jpg")):
            q2 = 2 * vec[q] + (vec[q] @ vec[other]) * vec[other]
            total += max(vec[q] @ vec[p], q2 @ vec[p] / np.linalg.norm(q2))
        fused[p] = total / 2
    want = sorted(ANGLES, key=lambda p: -fused[p])
    assert [h.path for h in res.combined] == want
    for h in res.combined:
        assert h.score == pytest.approx(fused[h.path], abs=1e-6)
    assert res.per_query[1][0].path == "e.jpg"


def test_only_the_neighbours_asked_for_count(circle):
    # one neighbour: a's only neighbour is a itself, so nothing changes
    res = circle.search(Stored("a.jpg"), k=6, rerank=Rerank("aqe", 1, 3.0))
    assert [h.path for h in res.per_query[0]] == ["a.jpg", "b.jpg", "d.jpg", "c.jpg",
                                                  "e.jpg", "f.jpg"]


LABELS = {"a.jpg": "x", "b.jpg": "x", "c.jpg": "x", "d.jpg": "y", "e.jpg": "y"}  # f: none


def test_leave_one_out_never_expands_a_query_with_itself(circle):
    from imgrec.insights.evaluate_labels import Labels

    lab = Labels("hand", [(LABELS[p],) if p in LABELS else () for p in ANGLES], [])
    rep = evaluate(circle, labels=lab, ks=(2,), methods=("embedding:cosine",),
                   bootstrap=0, rerank="aqe:n=1,alpha=1")
    assert rep.methods == ["embedding:cosine", "embedding:cosine+aqe:n=1,alpha=1"]
    assert rep.value("embedding:cosine", "precision", 2) == pytest.approx(_hand_p2(False))
    got = rep.value("embedding:cosine+aqe:n=1,alpha=1", "precision", 2)
    # a query that expanded itself (its own nearest row) would rank as the plain search
    assert got == pytest.approx(_hand_p2(True)) == pytest.approx(0.8)
    assert _hand_p2(False) == pytest.approx(0.7)


def _hand_p2(expanded: bool) -> float:
    """Leave-one-out P@2 on the circle by plain loops, with or without alpha-QE (n=1,
    alpha=1: the query plus its nearest other image times their cosine; each image scored
    by the better of its cosines to the query and to the expanded query)."""
    vec = {p: np.array([np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))]) for p, a in ANGLES.items()}
    total = 0.0
    for q in LABELS:
        others = [p for p in ANGLES if p != q]
        qq = vec[q]
        if expanded:
            nearest = max(others, key=lambda p: vec[q] @ vec[p])
            qq = vec[q] + (vec[q] @ vec[nearest]) * vec[nearest]
            qq = qq / np.linalg.norm(qq)
        top = sorted(others, key=lambda p: -max(vec[q] @ vec[p], qq @ vec[p]))[:2]
        total += sum(LABELS.get(p) == LABELS[q] for p in top) / 2
    return total / len(LABELS)


@pytest.mark.parametrize("spec", ["qe", "aqe:n=0", "aqe:n=x", "aqe:alpha=-1", "aqe:m=3", 7])
def test_bad_specs_are_refused(spec):
    with pytest.raises(QueryError):
        parse(spec)


def test_rerank_needs_embedding_cosine(circle):
    with pytest.raises(QueryError, match="embedding, metric cosine"):
        circle.search(Stored("a.jpg"), method="color", rerank="aqe")
    with pytest.raises(QueryError, match="embedding, metric cosine"):
        circle.search(Stored("a.jpg"), metric="manhattan", rerank="aqe")
    with pytest.raises(QueryError, match="add it to the methods"):
        evaluate(circle, labels="folder", methods=("color",), rerank="aqe")


def test_every_demo_image_still_finds_itself_first(demo_index):
    """Real images (Lite0, recipe v2): each gallery image used as a query is first."""
    paths = demo_index.all_paths()
    for p in paths:
        res = demo_index.search(Stored(p), k=3, rerank="aqe")
        assert res.per_query[0][0].path == p


def test_leave_one_out_rerank_equals_brute_force_on_real_images(demo_index):
    """The leave-one-out re-ranked lists on the demo (Lite0, recipe v2) and evaluate's P@5
    equal a float64 brute force."""
    rep = evaluate(demo_index, labels="depth:1", ks=(5,), methods=("embedding:cosine",),
                   bootstrap=0, rerank="aqe:n=3,alpha=3")
    x = np.asarray(demo_index.embeddings, np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    top = np.array([p.split("/")[0] for p in demo_index.all_paths()])
    cos = x @ x.T
    np.fill_diagonal(cos, -np.inf)  # leave one out
    near = np.argsort(-cos, axis=1, kind="stable")[:, :3]
    w = np.take_along_axis(cos, near, 1) ** 3
    q2 = x + (w[:, :, None] * x[near]).sum(1)
    q2 = np.asarray(q2 / np.linalg.norm(q2, axis=1, keepdims=True), np.float32).astype(np.float64)
    score = np.maximum(cos, q2 @ x.T / np.linalg.norm(q2, axis=1)[:, None])
    np.fill_diagonal(score, -np.inf)
    hits = np.argsort(-score, axis=1, kind="stable")[:, :5]
    rows = reranked_loo("cosine", demo_index.embeddings, demo_index.embedding_norms,
                         np.arange(len(x)), 5, Rerank("aqe", 3, 3.0))
    assert (rows == hits).mean() > 0.99  # float32 near-ties may swap; the P@5 must agree
    plain = np.argsort(-cos, axis=1, kind="stable")[:, :5]
    assert (rows != plain).any()  # the re-ranking changed some lists
    want = float((top[hits] == top[:, None]).mean())
    assert rep.value("embedding:cosine+aqe:n=3,alpha=3", "precision", 5) == pytest.approx(want)


def test_cli_search_and_evaluate_take_rerank(demo_cli, capsys):
    idx = str(demo_cli.index)
    first = sorted(p.relative_to(demo_cli.gallery).as_posix()
                   for p in demo_cli.gallery.rglob("*.jpg"))[0]
    assert cli_main(["search", "--index", idx, f"@{first}", "-k", "2",
                     "--rerank", "aqe:n=3"]) == 0
    out = capsys.readouterr()
    rank1 = [line.split() for line in out.out.splitlines() if line.split()[:1] == ["1"]]
    assert rank1 and rank1[0][-1] == first
    assert "alpha query expansion" in out.err
    assert cli_main(["evaluate", "--index", idx, "--labels", "depth:1", "-k", "5",
                     "--methods", "embedding:cosine", "--bootstrap", "0",
                     "--rerank", "aqe"]) == 0
    assert "embedding:cosine+aqe:n=3,alpha=3" in capsys.readouterr().out
    assert cli_main(["search", "--index", idx, f"@{first}", "--rerank", "bogus"]) == 2
    assert "unknown rerank" in capsys.readouterr().err
