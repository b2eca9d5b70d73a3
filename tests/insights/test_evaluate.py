"""imgrec.insights.evaluate: hand-computed metrics, exactness against the search, labels, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from imgrec import Index, Stored
from imgrec.app.evaluation import figure
from imgrec.cli.evaluate import add_arguments, render, run
from imgrec.cli.main import main as cli_main
from imgrec.errors import ImgrecError, QueryError
from imgrec.features.color import DIM
from imgrec.insights.evaluate import evaluate, parse_method, per_query_metrics
from imgrec.insights.evaluate_labels import folder_labels, load_labels
from imgrec.insights.evaluate_rank import exact_topk

# Unit vectors at these angles: cosine order = angular distance order (no ties, by design).
ANGLES = {"a/1.jpg": 0, "a/2.jpg": 10, "a/3.jpg": 100, "b/1.jpg": 22, "b/2.jpg": 90,
          "b/3.jpg": 205, "u.jpg": 48, "c/1.jpg": 300}


def _hist(n: int, seed: int = 0) -> np.ndarray:
    h = np.random.default_rng(seed).gamma(0.5, size=(n, DIM)).astype(np.float32)
    return h / h.reshape(n, 3, -1).sum(2).repeat(DIM // 3, axis=1)


@pytest.fixture()
def circle(tmp_path) -> Index:
    paths = list(ANGLES)
    rad = np.deg2rad(list(ANGLES.values()))
    emb = np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)
    return Index.from_arrays(tmp_path / "idx", paths, emb, _hist(len(paths)), model="circle",
                             pca_components=4)


def test_hand_computed_precision_recall_map(circle):
    # Ranked relevance (by angle; R = 2 for every query of a and b):
    #   a/1 1000010  a/2 1000010  a/3 0001100  b/1 0001001  b/2 0010010  b/3 0010001
    rep = evaluate(circle, labels="folder", ks=(2, 5), methods=["embedding:cosine"],
                   bootstrap=0)
    m = "embedding:cosine"
    assert (rep.n_images, rep.n_queries, rep.n_unlabelled, rep.n_singletons) == (8, 6, 1, 1)
    assert rep.value(m, "precision", 2) == pytest.approx(1 / 6)
    assert rep.value(m, "recall", 2) == pytest.approx(1 / 6)
    assert rep.value(m, "mAP", 2) == pytest.approx(1 / 6)
    assert rep.value(m, "first_hit") == pytest.approx(2 / 6)
    assert rep.value(m, "precision", 5) == pytest.approx(1.4 / 6)
    assert rep.value(m, "recall", 5) == pytest.approx(3.5 / 6)
    # AP@5: a/1, a/2 1/2; a/3 (1/4 + 2/5)/2; b/1 (1/4)/2; b/2, b/3 (1/3)/2
    assert rep.value(m, "mAP", 5) == pytest.approx((0.5 + 0.5 + 0.325 + 0.125 + 1 / 3) / 6)


def test_per_query_metrics_by_hand():
    out = per_query_metrics(np.array([[0, 1, 1, 0], [1, 1, 0, 0]]), np.array([3, 2]), [2, 4])
    assert out["precision", 2].tolist() == [0.5, 1.0]
    assert out["recall", 4].tolist() == pytest.approx([2 / 3, 1.0])
    assert out["mAP", 4].tolist() == pytest.approx([(1 / 2 + 2 / 3) / 3, 1.0])
    assert out["first_hit", 1].tolist() == [0.0, 1.0]


def test_bootstrap_interval_brackets_the_mean_and_best_is_named(circle):
    rep = evaluate(circle, labels="folder", ks=(2,), methods=["embedding:cosine", "color"],
                   bootstrap=200, seed=1)
    for r in rep.rows:
        assert r["low"] <= r["value"] + 1e-12 <= r["high"] + 2e-12
    assert rep.best in rep.methods and rep.best_by == "mAP@2"
    frame = rep.to_frame()
    assert list(frame.columns) == ["method", "metric", "k", "value", "low", "high"]
    assert len(frame) == 2 * (3 + 1)
    assert len(figure(rep).data) == 4


@pytest.mark.parametrize("spec", ["embedding:cosine", "embedding:euclidean",
                                  "embedding:manhattan", "color", "pca", "pca:3"])
def test_lists_equal_the_search_with_the_query_left_out(tmp_path, spec):
    rng = np.random.default_rng(3)
    n = 60
    emb = np.abs(rng.standard_normal((n, 16))).astype(np.float32)
    emb[7] = emb[3]  # an exact tie: broken by row number, as the search does
    paths = [f"g{i % 4}/{i:03d}.jpg" for i in range(n)]
    idx = Index.from_arrays(tmp_path / "idx", paths, emb, _hist(n, 4), model="rand",
                            pca_components=6)
    method, metric, comps = parse_method(spec)
    k = 7
    if method == "pca":
        c = comps or 6
        data = np.ascontiguousarray(idx.pca_histograms[:, :c])
        norms = np.linalg.norm(data.astype(np.float64), axis=1).astype(np.float32)
    else:
        data = idx.embeddings if method == "embedding" else idx.histograms
        norms = idx.embedding_norms if method == "embedding" else None
    kernel = {"color": "chi2", "pca": "cosine"}.get(method, metric)
    rows, _ = exact_topk(kernel, data, np.asarray(data), k, norms, self_rows=np.arange(n))
    for i in range(n):
        res = idx.search(Stored(paths[i]), method=method, metric=metric, k=k + 1,
                         pca_components=comps)
        expect = [h.row for h in res.per_query[0] if h.row != i][:k]
        assert rows[i].tolist() == expect


def test_folder_and_depth_labels():
    paths = ["x/y/z/a.jpg", "x/b.jpg", "c.jpg", "x/y/d.png"]
    assert folder_labels(paths) == [("x/y/z",), ("x",), (), ("x/y",)]
    assert folder_labels(paths, 1) == [("x",), ("x",), (), ("x",)]
    assert folder_labels(paths, 2) == [("x/y",), ("x",), (), ("x/y",)]
    with pytest.raises(ImgrecError, match="depth"):
        load_labels("depth:0", paths)
    with pytest.raises(ImgrecError, match="folder"):
        load_labels("no-such-file.csv", paths)


def test_csv_labels_multi_label_and_unknown_paths(circle, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n"
                   "a/1.jpg,red,round\n"
                   "a/2.jpg,red\n"
                   "b/1.jpg,round\n"
                   "b/1.jpg,blue\n"
                   "gone/x.jpg,red\n"
                   f"{circle.root.resolve() / 'u.jpg'},blue\n")
    lab = load_labels(str(csv), circle.all_paths(), circle.root)
    got = dict(zip(circle.all_paths(), lab.per_image, strict=True))
    assert got["a/1.jpg"] == ("red", "round") and got["b/1.jpg"] == ("blue", "round")
    assert got["u.jpg"] == ("blue",) and got["a/3.jpg"] == ()
    assert lab.unknown_paths == ["gone/x.jpg"]
    rep = evaluate(circle, labels=str(csv), ks=(1,), methods=["embedding:cosine"], bootstrap=0)
    # queries a/1, a/2, b/1, u (a/1 shares 'red' with a/2 and 'round' with b/1)
    assert rep.n_queries == 4 and rep.n_unlabelled == 4 and rep.unknown_paths == ["gone/x.jpg"]
    # nearest: a/1 -> a/2 (red: hit), a/2 -> a/1 (hit), b/1 -> a/2 (no), u -> b/1 (blue: hit)
    assert rep.value("embedding:cosine", "precision", 1) == pytest.approx(3 / 4)


def test_bad_requests_are_one_line_errors(circle, tmp_path):
    with pytest.raises(QueryError, match="unknown method"):
        evaluate(circle, methods=["colour"])
    with pytest.raises(QueryError, match="unknown metric"):
        evaluate(circle, methods=["embedding:all"])
    with pytest.raises(QueryError, match="nothing to evaluate"):
        evaluate(circle, labels=_flat_csv(tmp_path))
    empty = tmp_path / "none.csv"
    empty.write_text("elsewhere.jpg,x\n")
    with pytest.raises(ImgrecError, match="names none"):
        evaluate(circle, labels=str(empty))


def _flat_csv(tmp_path) -> str:
    f = tmp_path / "singletons.csv"
    f.write_text("a/1.jpg,p\na/2.jpg,q\n")
    return str(f)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_cli_run_prints_table_and_json(circle, capsys):
    assert run(_args("--index", str(circle.index_dir), "-k", "2,5", "--methods",
                     "embedding:cosine,pca", "--bootstrap", "50")) == 0
    out = capsys.readouterr().out
    assert "6 queries of 8 images" in out and "best:" in out and "P@5" in out
    assert run(_args("--index", str(circle.index_dir), "--json", "--methods", "color")) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["methods"] == ["color"] and got["ks"] == [5, 7]
    assert "clipped" in got["notes"][0]


def test_cli_errors(circle, tmp_path, capsys):
    assert cli_main(["evaluate", "--index", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("imgrec: no index")
    assert cli_main(["evaluate", "--index", str(circle.index_dir), "--methods", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown method" in err
    with pytest.raises(SystemExit):
        _args("-k", "5,x")


@pytest.mark.slow
def test_demo_families_real_cnn(demo_index):
    """The demo families (near-copies of one photo each) with the real EfficientNet-Lite0."""
    rep = evaluate(demo_index, labels="depth:1", ks=(5,), bootstrap=100)
    assert rep.n_queries == len(demo_index) and rep.n_unlabelled == 0
    cos = rep.value("embedding:cosine", "precision", 5)
    assert cos >= 0.95, render(rep)
    assert rep.value("embedding:cosine", "first_hit") == 1.0
    # colour alone is weaker than the CNN on families that include grey and tone variants
    assert rep.value("color", "mAP", 5) < rep.value("embedding:cosine", "mAP", 5)


def test_public_api_exports_evaluate_lazily():
    import subprocess
    import sys

    code = ("import sys, imgrec; assert 'imgrec.insights.evaluate' not in sys.modules; "
            "from imgrec import evaluate, EvaluationReport, find_duplicates, verify; "
            "print(evaluate.__module__, EvaluationReport.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["imgrec.insights.evaluate", "EvaluationReport"]
