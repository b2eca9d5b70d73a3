"""Insights of a sharded index: the sample drawn across the shards, and ``clusters``,
``graph``, ``export`` and ``evaluate`` on it equal to the unsharded index's answers."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest

from imgrec import Index
from imgrec.cli.main import main
from imgrec.insights.clusters import assign, clusters
from imgrec.insights.graph import sample_rows
from imgrec.shard.sample import SampleIndex
from imgrec.shard.sharded import ShardedIndex
from imgrec.shard.split import split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def halves(ray_cluster, demo_cli, tmp_path_factory):
    """(the demo index, its folder split in two shards, those shards served over Ray)."""
    out = split(demo_cli.index, tmp_path_factory.mktemp("halves") / "s", shards=2)
    sharded = ShardedIndex.open(out)
    yield Index.open(demo_cli.index), out, sharded
    sharded.close()


def _cli(capsys, *argv: str | Path) -> str:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_the_sample_holds_the_rows_the_unsharded_index_draws(halves):
    full, _, sharded = halves
    s = SampleIndex.draw(sharded, 60, seed=3)
    rows = sample_rows(len(full), 60, 3)
    assert s.rows.tolist() == rows.tolist() and len(s) == 60 and not s.whole
    assert np.array_equal(s.embeddings, np.asarray(full.embeddings[rows], np.float32))
    assert np.array_equal(s.labels_top5, full.labels_top5[rows])
    assert np.array_equal(s.labels_prob5, full.labels_prob5[rows])
    assert s.all_paths() == full.paths(rows) and s.paths([5, 0]) == full.paths(rows[[5, 0]])
    offset = sharded.manifest.shards[1].offset
    assert 20 <= int((s.rows < offset).sum()) <= 40  # both shards give rows
    assert s.describe() == "a sample of 60 of 170 images drawn across 2 shards"
    whole = sharded.sample()
    assert whole.whole and np.array_equal(whole.embeddings, np.asarray(full.embeddings))


def test_clusters_of_a_sample_count_every_image(halves):
    full, _, sharded = halves
    res = sharded.sample_clusters(5, seed=1, sample=60)
    rows = sample_rows(len(full), 60, 1)
    want = clusters(np.asarray(full.embeddings[rows]), 5, seed=1)
    near, _ = assign(np.asarray(full.embeddings), want.centroids)
    assert np.array_equal(res.centroids, want.centroids)
    assert np.array_equal(res.labels[rows], want.labels)
    rest = np.setdiff1d(np.arange(len(full)), rows)
    assert np.array_equal(res.labels[rest], near[rest])
    assert res.sizes.tolist() == np.bincount(res.labels, minlength=5).tolist()
    assert int(res.sizes.sum()) == 170
    assert res.representatives.tolist() == rows[want.representatives].tolist()
    whole = sharded.sample_clusters(6)  # the whole index fits the default sample
    same = clusters(full, 6)
    for a, b in ((whole.labels, same.labels), (whole.representatives, same.representatives),
                 (whole.sizes, same.sizes), (whole.distances, same.distances)):
        assert np.array_equal(a, b)


def test_clusters_and_graph_commands_equal_the_unsharded_ones(halves, ray_cluster, capsys,
                                                             monkeypatch):
    monkeypatch.delenv("IMGREC_RAY_ADDRESS", raising=False)
    full, out, _ = halves
    answers = {}
    for name, index, ray in (("full", full.index_dir, []),
                             ("sharded", out, ["--ray", ray_cluster.address])):
        cl = json.loads(_cli(capsys, "clusters", "--index", index, "--json", *ray))
        g = [json.loads(_cli(capsys, "graph", "--index", index, "--json", "--sample", n, *ray))
             for n in ("3000", "40")]
        for x in g:
            x.pop("seconds")
        answers[name] = cl, g
    cl, (g, g40) = answers["sharded"]
    assert cl.pop("sample") == {"images": 170, "of": 170, "note":
                                "a sample of 170 of 170 images drawn across 2 shards"}
    assert g.pop("sample")["images"] == 170 and g40.pop("sample")["images"] == 40
    assert (cl, [g, g40]) == answers["full"]
    assert len(g["nodes"]) == 170 and len(g40["nodes"]) == 40 and cl["k"] >= 2
    text = _cli(capsys, "clusters", "--index", out, "-k", "4")
    assert text.splitlines()[:2] == [
        "4 K-means clusters of 170 images (seed 0), largest first",
        "  K-means of a sample of 170 of 170 images drawn across 2 shards; the sizes count "
        "every image"]
    text = _cli(capsys, "graph", "--index", out, "--sample", "40")
    assert "  ran on a sample of 40 of 170 images drawn across 2 shards" in text.splitlines()


def test_exports_equal_the_unsharded_ones_byte_for_byte(halves, ray_cluster, capsys, tmp_path):
    full, out, _ = halves
    for name, index, ray in (("full", full.index_dir, []),
                             ("sharded", out, ["--ray", ray_cluster.address])):
        _cli(capsys, "export", "csv", tmp_path / f"{name}.csv", "--index", index,
             "--clusters", "7", *ray)
        for n in ("0", "50"):
            text = _cli(capsys, "export", "projector", tmp_path / f"{name}-{n}", "--index",
                        index, "--sample", n, "--clusters", "7", *ray)
            m = n if n != "0" else "170"
            assert f"wrote {m} of 170 images" in text
            if name == "sharded":
                assert text.splitlines()[1] == (f"  ran on a sample of {m} of 170 images "
                                                "drawn across 2 shards")
    csv = (tmp_path / "sharded.csv").read_bytes()
    assert csv == (tmp_path / "full.csv").read_bytes()
    assert csv.count(b"\n") == 1 + len(full.entries()) == 171  # header, every file
    for n in ("0", "50"):
        for f in ("tensors.tsv", "metadata.tsv", "sprite.png", "projector_config.json"):
            got = (tmp_path / f"sharded-{n}" / f).read_bytes()
            assert got == (tmp_path / f"full-{n}" / f).read_bytes(), (n, f)
    assert (tmp_path / "sharded-50" / "tensors.tsv").read_text().count("\n") == 50


def test_evaluate_through_the_shards_equals_the_unsharded_evaluation(halves, ray_cluster,
                                                                    capsys):
    full, out, sharded = halves
    reports = []
    for index, ray in ((full.index_dir, []), (out, ["--ray", ray_cluster.address])):
        r = json.loads(_cli(capsys, "evaluate", "--index", index, "--labels", "depth:1",
                            "-k", "5,100", "--bootstrap", "200", "--json", *ray))
        r.pop("seconds")
        reports.append(r)
    assert reports[0] == reports[1]
    assert reports[0]["ks"] == [5, 100] and reports[0]["n_queries"] == 170
    assert reports[0]["best"] == "embedding:cosine"
    # k larger than a shard: each shard's list is cut at its size, the merge is not
    qrows = np.arange(len(full))
    rows, name = sharded.leave_one_out("pca:8", qrows, 120)
    from imgrec.insights.evaluate import leave_one_out

    want, want_name = leave_one_out(full, "pca:8", qrows, 120)
    assert name == want_name == "pca:8" and np.array_equal(rows, want)
    assert not (rows == qrows[:, None]).any()  # never itself


def test_a_bad_sample_is_one_line(halves, capsys, monkeypatch):
    _, out, _ = halves
    monkeypatch.setattr("imgrec.shard.sample.SAMPLE", 100)  # a sharded index larger than it
    assert main(["export", "projector", "x", "--index", str(out), "--sample", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "imgrec: --sample 0: at most 100 images are exported from a sharded index (170 "
        "images); give --sample N")
    assert main(["export", "projector", "x", "--index", str(out), "--sample", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "imgrec: --sample must be 0 (all) or more, got -1"
    assert main(["graph", "--index", str(out), "--sample", "0"]) == 2
    assert capsys.readouterr().err.strip() == "imgrec: sample must lie in 1..10000, got 0"


def _insights() -> dict:
    """What the dashboard shows for $IMGREC_INDEX_DIR: the Insights page's cluster cards,
    the members of cluster 0, the neighbour graph's traces and images, the duplicates
    notes; the Dataset page's evaluation."""
    from streamlit.testing.v1 import AppTest
    from test_sharded_surfaces import CARD, _clean

    def cards(root) -> list[tuple[str, ...]]:
        return [(c[1], c[2] or "", c[3] or "", html.unescape((c[4] or "").replace("<wbr>", "")))
                for m in root.markdown if (c := CARD.fullmatch(m.value)) is not None]

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("imgrec/app/pages/insights.py").run()
    _clean(at)
    seen: dict = {}
    at.segmented_control(key="insights_section").set_value("clusters").run()
    _clean(at)
    seen["k"] = at.slider(key="insights_k").value
    seen["clusters"] = [c for c in cards(at.main) if c[0] == "cluster"]
    seen["caption"] = " ".join(c.value for c in at.main.caption)
    at.button(key="cluster-0").click().run()
    _clean(at)
    seen["members"] = [c[3] for c in cards(at) if c[0] == "pick"]
    at.segmented_control(key="insights_section").set_value("graph").run()
    _clean(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    seen["graph"] = spec["data"], spec["layout"].get("images")
    at.segmented_control(key="insights_section").set_value("duplicates").run()
    _clean(at)
    assert not at.error, [e.value for e in at.error]
    seen["info"] = [i.value for i in at.info]
    at.switch_page("imgrec/app/pages/dataset.py").run()  # its Evaluate section
    _clean(at)
    at.button(key="eval_run").click().run()
    _clean(at)
    seen["evaluate"] = [m.value for m in at.main.markdown if m.value.startswith("**Best here")]
    seen["evaluate_table"] = at.dataframe[0].value.to_dict()
    return seen


def test_the_dashboard_insights_of_a_sharded_index_equal_the_unsharded_ones(
        halves, monkeypatch, tmp_path, tmp_path_factory):
    full, out, _ = halves
    monkeypatch.setenv("IMGREC_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("IMGREC_RAY_ADDRESS", raising=False)
    seen = {}
    for name, index in (("full", full.index_dir), ("sharded", out)):
        monkeypatch.setenv("IMGREC_INDEX_DIR", str(index))
        seen[name] = _insights()
    a, b = seen["full"], seen["sharded"]
    res = clusters(full, a["k"])
    assert b["k"] == a["k"] and len(b["clusters"]) == a["k"] >= 2
    assert b["clusters"] == a["clusters"]
    assert [c[3] for c in b["clusters"]] == full.paths(res.representatives)
    assert b["members"] == a["members"] == full.paths(res.members(0))
    assert "a sample of 170 of 170 images drawn across 2 shards" in b["caption"]
    traces = b["graph"][0]
    assert sorted(r for t in traces[1:] for r in t["customdata"]) == list(range(170))
    assert b["graph"] == a["graph"]  # the same nodes, links, layout and community images
    assert any("not looked for across the shards" in i for i in b["info"])
    assert len(b["evaluate"]) == 1 and "170 queries" in b["evaluate"][0]
    assert (b["evaluate"], b["evaluate_table"]) == (a["evaluate"], a["evaluate_table"])


def test_the_csv_of_a_sharded_index_keeps_the_skipped_files(ray_cluster, demo_cli, real_embedder,
                                                            capsys, tmp_path):
    import shutil

    from imgrec import build_index

    gallery = tmp_path / "g"
    shutil.copytree(demo_cli.gallery / "chelsea", gallery / "chelsea")
    (gallery / "a-broken.jpg").write_bytes(b"not a JPEG")
    (gallery / "zz-broken.png").write_bytes(b"not a PNG either")
    build_index(gallery, tmp_path / "plain", embedder=real_embedder, workers=0)
    split(tmp_path / "plain", tmp_path / "sharded", shards=2)
    for name in ("plain", "sharded"):
        _cli(capsys, "export", "csv", tmp_path / f"{name}.csv", "--index", tmp_path / name,
             "--clusters", "3", "--ray", ray_cluster.address)
    csv = (tmp_path / "sharded.csv").read_text()
    assert csv == (tmp_path / "plain.csv").read_text()
    lines = csv.splitlines()
    assert len(lines) == 15 and lines[1].startswith("a-broken.jpg,,")
    assert lines[-1].startswith("zz-broken.png,,")  # skipped files in path order


def test_the_insights_clusters_of_a_sharded_index_larger_than_the_sample(
        halves, monkeypatch, tmp_path, tmp_path_factory):
    from streamlit.testing.v1 import AppTest
    from test_sharded_surfaces import CARD, _clean

    _, out, sharded = halves
    for var, value in (("IMGREC_DEMO_DIR", tmp_path / "demo"), ("IMGREC_INDEX_DIR", out),
                       ("IMGREC_ALLOWED_ROOTS", tmp_path_factory.getbasetemp())):
        monkeypatch.setenv(var, str(value))
    monkeypatch.setattr("imgrec.app.projection.MAX_POINTS", 100)  # 170 images: a sample
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("imgrec/app/pages/insights.py").run()
    at.segmented_control(key="insights_section").set_value("clusters").run()
    _clean(at)
    assert "a sample of 100 of 170 images drawn across 2 shards (every image counted in its " \
           "nearest cluster)" in " ".join(c.value for c in at.main.caption)
    k = at.slider(key="insights_k").value
    res = sharded.sample_clusters(k, 0, 100)
    shown = [(c[3], c[4]) for m in at.main.markdown if (c := CARD.fullmatch(m.value))
             and c[1] == "cluster"]
    assert [html.unescape(p.replace("<wbr>", "")) for _, p in shown] == sharded.paths(
        res.representatives)
    assert [d for d, _ in shown] == [f"{int(n)} image{'s' if n != 1 else ''}" for n in res.sizes]
    assert int(res.sizes.sum()) == 170  # every image counted, not only the sample's 100
