"""Search filters and match strengths on a sharded index: each filter applied by every
shard to its own rows, the merged answer equal to the unsharded filtered search; one
calibration for the whole sharded index, equal to the unsharded one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import run_cli
from test_sharded import assert_same

from imgrec import Index, Stored
from imgrec.errors import QueryError
from imgrec.insights.labels import search_by_label
from imgrec.search.calibration import FILE_PREFIX, add_strength, calibrate
from imgrec.search.filters import Where, from_options
from imgrec.shard.sharded import ShardedIndex

#: every filter kind, alone and combined (the dates are file times, 2012 to 2021)
WHERE = {
    "one folder": {"folders": ["chelsea"]},
    "two folders": {"folders": ["camera", "grace_hopper/"]},
    "after": {"after": "2017"},
    "before": {"before": "2015-06"},
    "date range": {"after": "2014-03", "before": "2018-07-14"},
    "min size": {"min_width": 500, "min_height": 500},
    "formats": {"formats": ["png", "webp", "tiff"]},
    "portrait": {"orientation": "portrait"},
    "square": {"orientation": "square"},
    "landscape": {"orientation": "landscape"},
    "label": {"label": "cat"},
    "combined": {"orientation": "landscape", "after": "2013", "label": "cat"},
}


@pytest.fixture(scope="module")
def pair(ray_cluster, varied_index, varied_sharded, real_embedder):
    """(the unsharded index, the same rows in 3 shards served over Ray)."""
    sharded = ShardedIndex.open(varied_sharded, embedder=real_embedder)
    yield Index.open(varied_index, embedder=real_embedder), sharded
    sharded.close()


def _passing(full: Index, where: dict) -> np.ndarray:
    rows = Where.of(where).rows(full)
    return np.arange(len(full)) if rows is None else rows


def test_the_filters_select_rows_of_several_shards(pair):
    full, sharded = pair
    assert len(full) == 40 and [s.count for s in sharded.manifest.shards] == [13, 13, 14]
    for name, where in WHERE.items():
        rows = _passing(full, where)
        assert 0 < len(rows) < 40, name  # each filter keeps some rows, not all
        if name not in ("one folder", "portrait", "label", "combined"):  # one folder each
            assert len(set(np.searchsorted([13, 26], rows, side="right"))) >= 2, name


@pytest.mark.parametrize("name", list(WHERE))
def test_every_filter_equals_the_unsharded_filtered_search(pair, name):
    full, sharded = pair
    where = WHERE[name]
    paths = full.all_paths()
    one, five = [Stored(paths[30])], [Stored(p) for p in paths[1:40:8]]
    for method, metric in (("embedding", "cosine"), ("embedding", "manhattan"),
                           ("embedding", "all"), ("color", "chi2"), ("pca", "cosine")):
        for queries in (one, five):
            for k in (3, 40):  # 40: more than pass (and than any shard holds)
                a = full.search(queries, method, metric, k, where=where)
                b = sharded.search(queries, method, metric, k, where=where)
                assert_same(a, b)
                assert a.notes[0].startswith("restricted to ")
                if metric != "all":
                    assert len(b.combined) == min(k, len(_passing(full, where)))
    neg = [Stored(paths[12])]
    assert_same(full.search(five[:2], negatives=neg, k=40, where=where),
                sharded.search(five[:2], negatives=neg, k=40, where=where))
    if "label" not in where:
        assert_same(search_by_label(full, "cat", 40, where=where),
                    sharded.search_by_label("cat", 40, where=where))


def test_filters_that_keep_nothing_or_cannot_apply(pair):
    full, sharded = pair
    q = Stored(full.all_paths()[0])
    res = sharded.search(q, k=5, where={"folders": "nowhere"})
    assert res.combined == [] and res.per_query == [[]]
    assert res.notes == full.search(q, k=5, where={"folders": "nowhere"}).notes
    assert res.notes[0] == "restricted to 0 of 40 images"
    with pytest.raises(QueryError, match="no ImageNet class matches the label filter"):
        sharded.search(q, where={"label": "qwzzxv"})
    with pytest.raises(QueryError, match="unknown filter colour"):
        sharded.search(q, where={"colour": "red"})
    # the command line's options as the CLI and the HTTP API parse them
    where = from_options(folders=["coffee"], min_size="500x300", orientation="landscape")
    assert_same(full.search(q, k=40, where=where), sharded.search(q, k=40, where=where))


def test_one_calibration_for_the_whole_sharded_index(pair, varied_sharded):
    full, sharded = pair
    # written when the shards were split: the source's calibration, for the shards' version
    stored = json.loads((varied_sharded / f"{FILE_PREFIX}{sharded.version}.json").read_text())
    assert stored["version"] == sharded.version and "embedding/cosine" in stored["methods"]
    want = calibrate(full)
    assert stored["methods"]["embedding/cosine"]["quantiles"] == list(want.quantiles)
    assert calibrate(sharded) == want
    # the others are measured through the sharded search: the same as the unsharded ones
    for method, metric in (("color", "chi2"), ("pca", "cosine"), ("embedding", "euclidean")):
        a, b = calibrate(full, method, metric), calibrate(sharded, method, metric)
        assert (a.method, a.metric, a.sample) == (b.method, b.metric, b.sample)
        np.testing.assert_allclose(b.quantiles, a.quantiles, rtol=0, atol=1e-12)
    q = [Stored(full.all_paths()[5])]
    a = add_strength(full.search(q, k=10).to_dict(), full)
    b = add_strength(sharded.search(q, k=10).to_dict(), sharded)
    bands = [(h["strength"], h["percentile"]) for h in b["queries"][0]["hits"]]
    assert bands == [(h["strength"], h["percentile"]) for h in a["queries"][0]["hits"]]
    assert bands[0][0] == "strong" and len({s for s, _ in bands}) > 1


def _json_search(*args, env: dict[str, str]) -> dict:
    """``imgrec search ... --json``'s answer: stdout is the JSON document alone."""
    r = run_cli("search", *args, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_the_cli_filters_and_rates_a_sharded_search(ray_cluster, varied_index,
                                                    varied_sharded, varied_gallery, cli_env):
    env = {**cli_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    query = ["@coffee/coffee_orig.jpg", str(varied_gallery / "chelsea/chelsea_color.jpg")]
    asks = [[*query, "--in", "chelsea", "--in", "coffee", "--min-size", "400x300"],
            [query[0], "--after", "2014", "--before", "2019-06", "--orientation", "landscape"],
            [query[1], "--format", "tiff", "--format", "jpg", "--has-label", "cat"],
            ["--label", "cat", "--in", "chelsea", "--before", "2020"]]
    for ask in asks:
        runs = []
        for index, extra in ((varied_index, []), (varied_sharded, ["--ray",
                                                                  ray_cluster.address])):
            runs.append(_json_search(*ask, "--index", index, "-k", "9", "--json", *extra,
                                     env=env))
        full, sharded = runs
        assert [h["path"] for h in sharded["combined"]] == [h["path"] for h in full["combined"]]
        for a, b in zip(full["queries"], sharded["queries"], strict=True):
            assert [(h["path"], h.get("strength"), h.get("percentile")) for h in b["hits"]] == [
                (h["path"], h.get("strength"), h.get("percentile")) for h in a["hits"]]
            for x, y in zip(a["hits"], b["hits"], strict=True):
                assert y["score"] == pytest.approx(x["score"], abs=1e-12)
        assert sharded["combined"], ask
        if ask[0] != "--label":
            assert "strength" in sharded["queries"][0]["hits"][0]
    table = run_cli("search", query[0], "--index", varied_sharded, "--in", "coffee",
                    "--ray", ray_cluster.address, env=env)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "match" in table.stdout and "strong" in table.stdout
    assert "restricted to 8 of 40 images" in table.stderr
