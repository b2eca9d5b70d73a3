"""A sharded index where an index is accepted: built by ``build_index(shards=N)``, searched
from the command line, served in the dashboard (Search and Explore), refused in one line by
what does not work on shards."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from support import run_cli
from test_sharded import assert_same

from imgrec import Index, Stored, build_index
from imgrec.build.sharded import STAGING
from imgrec.errors import ImgrecError
from imgrec.search.calibration import FILE_PREFIX, calibrate
from imgrec.shard.sharded import ShardedIndex
from imgrec.shard.split import MANIFEST, ShardedManifest, split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sharded_demo(demo_cli, tmp_path_factory) -> Path:
    """The demo index split into two shards."""
    return split(demo_cli.index, tmp_path_factory.mktemp("sharded-demo") / "s", shards=2)


def test_build_with_shards_equals_the_unsharded_build(ray_cluster, demo_cli, real_embedder,
                                                      tmp_path):
    gallery = tmp_path / "g"
    for fam in ("chelsea", "coffee"):
        shutil.copytree(demo_cli.gallery / fam, gallery / fam)
    (gallery / "broken.jpg").write_bytes(b"not a JPEG")
    out = tmp_path / "sharded"
    # more shards than images: refused once the features exist; they are kept for a rerun
    with pytest.raises(ImgrecError, match=r"--shards must be a whole number from 1 to 24"):
        build_index(gallery, out, embedder=real_embedder, workers=0, shards=99)
    assert not (out / MANIFEST).exists() and Index.open(out / STAGING).__len__() == 24
    report = build_index(gallery, out, embedder=real_embedder, workers=0, shards=3)
    assert report.computed == 0 and report.indexed == 24 and report.index_dir == out
    names = sorted(p.name for p in out.iterdir())
    calibration = [n for n in names if n.startswith(FILE_PREFIX)]  # kept from the staging index
    assert len(calibration) == 1 and sorted(set(names) - set(calibration)) == sorted(
        [MANIFEST, "shard-000", "shard-001", "shard-002"])
    assert [s.count for s in ShardedManifest.read(out).shards] == [8, 8, 8]
    build_index(gallery, tmp_path / "plain", embedder=real_embedder, workers=0)
    full = Index.open(tmp_path / "plain", embedder=real_embedder)
    sharded = ShardedIndex.open(out, embedder=real_embedder)
    try:
        assert sharded.all_paths() == full.all_paths()
        assert sharded.skipped() == full.skipped() == [("broken.jpg", full.skipped()[0][1])]
        queries = [Stored(p) for p in full.all_paths()[2:24:5]]
        for method, metric in (("embedding", "cosine"), ("embedding", "all"),
                               ("color", "chi2"), ("pca", "cosine")):
            for q in (queries[:1], queries):
                assert_same(full.search(q, method, metric, 10), sharded.search(q, method,
                                                                               metric, 10))
    finally:
        sharded.close()
    # a sharded index keeps its shard count, and a folder holding something else is refused
    for target, match in ((out, "a sync keeps its shard count"),
                          (tmp_path / "plain", "not empty")):
        with pytest.raises(ImgrecError, match=match):
            build_index(gallery, target, embedder=real_embedder, workers=0, shards=2)


def test_the_cli_searches_a_sharded_index_as_the_unsharded_one(ray_cluster, demo_cli,
                                                                sharded_demo, cli_env):
    env = {**cli_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ray = ["--ray", ray_cluster.address]
    query = ["@chelsea/chelsea_orig.jpg", str(demo_cli.gallery / "coffee/coffee_color.jpg")]
    runs = {}
    for name, index, extra in (("full", demo_cli.index, []), ("sharded", sharded_demo, ray)):
        s = run_cli("search", *query, "--index", index, "-k", "7", "--json", *extra, env=env)
        lb = run_cli("labels", "--index", index, "--json", "--top", "5", *extra, env=env)
        assert s.returncode == 0 and lb.returncode == 0, (s.stderr + lb.stderr)[-2000:]
        runs[name] = json.loads(s.stdout), json.loads(lb.stdout)
    assert runs["sharded"] == runs["full"]  # match strengths included
    hits = runs["full"][0]["queries"][0]["hits"]
    assert hits[0]["path"] == "chelsea/chelsea_orig.jpg" and len(hits) == 7
    assert hits[0]["strength"] == "strong"
    info = run_cli("info", "--index", sharded_demo, env=env)
    assert info.returncode == 0 and "2 shards" in info.stdout, info.stderr
    assert "images     170 indexed" in info.stdout
    verify = run_cli("info", "--verify", "--index", sharded_demo, env=env)
    assert verify.returncode == 0 and "ok: sharded index" in verify.stdout, verify.stderr
    for cmd in (["duplicates"],):
        r = run_cli(*cmd, "--index", sharded_demo, env=env)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [
            f"imgrec: imgrec {cmd[0]} is not supported on a sharded index ({sharded_demo}): "
            "run it on an unsharded index (sharded: app, check, clusters, evaluate, export, "
            "graph, index, info, labels, search, serve, watch)"]
    r = run_cli("index", demo_cli.gallery, "--index", sharded_demo, "--shards", "3", env=env)
    assert r.returncode == 2 and "a sync keeps its shard count" in r.stderr, r.stderr


def test_index_with_shards_from_the_command_line(demo_cli, cli_env, tmp_path):
    gallery, out = tmp_path / "g", tmp_path / "sharded"
    shutil.copytree(demo_cli.gallery / "chelsea", gallery / "chelsea")
    made = run_cli("index", gallery, "--index", out, "--shards", "2", "--workers", "0",
                   "--quiet", env=cli_env)
    assert made.returncode == 0, made.stderr[-2000:]
    assert "indexed 12 images" in made.stdout and "sharded index of 2 shards" in made.stdout
    assert [s.count for s in ShardedManifest.read(out).shards] == [6, 6]
    held = [p for s in ("shard-000", "shard-001") for p in Index.open(out / s).all_paths()]
    assert sorted(held) == sorted(f"chelsea/{p.name}" for p in (gallery / "chelsea").iterdir())
    info = run_cli("info", "--index", out, env=cli_env)
    assert info.returncode == 0 and "sharded: 2 shards" in info.stdout, info.stderr
    again = run_cli("index", gallery, "--index", out, "--shards", "2", env=cli_env)  # a sync
    assert again.returncode == 0, again.stderr[-2000:]
    assert "unchanged 12" in again.stdout and "no shard was rewritten" in again.stdout
    other = run_cli("index", gallery, "--index", out, "--shards", "3", env=cli_env)
    assert other.returncode == 2 and "a sync keeps its shard count" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


CARD = re.compile(r'<div class="imgrec-card imgrec-(\w+)">(?:<b>(.*?)</b>)?(?: · )?(.*?)'
                  r'(?:<br>)?(?:<span class="imgrec-path">(.*)</span>)?</div>')


def _result_paths(at) -> list[list[str]]:
    """The Search page's result grid: the paths of each row (one per query)."""
    rows: list[list[str]] = []
    for m in at.main.markdown:
        if (c := CARD.fullmatch(m.value)) is None:
            continue
        if c[1] in ("query", "combined"):
            rows.append([])
        elif c[1] == "hit" and rows:
            rows[-1].append(html.unescape((c[4] or "").replace("<wbr>", "")))
    return rows


def _clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Unexpected" in e.value]


def test_the_dashboard_searches_and_explores_a_sharded_index(ray_cluster, demo_cli,
                                                             sharded_demo, real_embedder,
                                                             monkeypatch, tmp_path,
                                                             tmp_path_factory):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("IMGREC_INDEX_DIR", str(demo_cli.index))
    monkeypatch.setenv("IMGREC_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", str(tmp_path_factory.getbasetemp()))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    _clean(at)
    at.sidebar.text_input(key="index_dir_text").input(str(sharded_demo))  # the index switch
    at.sidebar.button[0].click().run()
    _clean(at)
    assert not at.sidebar.warning, [w.value for w in at.sidebar.warning]
    assert f"Open now: `{sharded_demo}`" in " ".join(c.value for c in at.sidebar.caption)
    cat = (demo_cli.gallery / "chelsea/chelsea_color.jpg").read_bytes()
    at.file_uploader[0].set_value([("cat.jpg", cat, "image/jpeg")])
    at.run()
    _clean(at)
    rows = _result_paths(at)
    full = Index.open(demo_cli.index, embedder=real_embedder)
    want = [h.path for h in full.search(cat, k=len(rows[0])).per_query[0]]
    assert len(rows) == 1 and rows[0] == want and want[0] == "chelsea/chelsea_color.jpg"
    assert "**170** images" in " ".join(m.value for m in at.sidebar.markdown)
    # the hits are rated as on the unsharded index (its own image is "strong")
    bars = [m.value for m in at.main.markdown if 'class="imgrec-strength' in m.value]
    cal = calibrate(full)
    bands = [cal.strength(h.score)[0] for h in full.search(cat, k=len(rows[0])).per_query[0]]
    assert [b.split('"')[1] for b in bars] == [f"imgrec-strength imgrec-{b}" for b in bands]
    assert bands[0] == "strong" and len(set(bands)) > 1
    # the filter panel: the exact top-k among the images that pass, as unsharded
    at.multiselect(key="filter_folders").set_value(["coffee", "rocket"]).run()
    at.selectbox(key="filter_orientation").set_value("landscape").run()
    _clean(at)
    where = {"folders": ["coffee", "rocket"], "orientation": "landscape"}
    kept = [h.path for h in full.search(cat, k=len(rows[0]), where=where).per_query[0]]
    assert _result_paths(at) == [kept] and kept != want
    at.multiselect(key="filter_folders").set_value([]).run()
    at.selectbox(key="filter_orientation").set_value("any").run()

    at.switch_page("imgrec/app/pages/explore.py").run()
    _clean(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    names = [t["name"] for t in spec["data"]]
    assert names[-2:] == ["search results", "queries"]
    clusters = [t for t in spec["data"] if t["name"].startswith("cluster")]
    assert sorted(r for t in clusters for r in t["customdata"]) == list(range(170))
    results = next(t for t in spec["data"] if t["name"] == "search results")
    assert sorted(results["customdata"]) == sorted(full.row_of(p) for p in want)

    at.switch_page("imgrec/app/pages/insights.py").run()  # labels, clusters, graph
    _clean(at)
    assert "most frequent top-1 ImageNet classes the CNN gave the 170 images" in " ".join(
        c.value for c in at.main.caption)
    for section in ("clusters", "graph"):
        at.segmented_control(key="insights_section").set_value(section).run()
        _clean(at)
        assert not at.error, [e.value for e in at.error]
    at.segmented_control(key="insights_section").set_value("duplicates").run()
    _clean(at)  # refused with the reason, not an error box
    assert not at.error, [e.value for e in at.error]
    assert any("not looked for across the shards" in i.value for i in at.info)
