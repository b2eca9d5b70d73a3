"""The HTTP API's search filters and calibrated strengths, over real HTTP: the same filters as
``imgrec search``'s flags (one implementation), the same ``strength`` as its ``--json``."""

from __future__ import annotations

import json

import pytest
from server_support import server_env
from support import run_cli
from test_server_api import QUERY, same_result, upload

from imgrec import Stored
from imgrec.search.calibration import add_strength, calibrate
from imgrec.search.filters import Where

pytestmark = pytest.mark.slow

BANDS = {"strong", "related", "weak"}


def local(index, queries, **kw) -> dict:
    """A local search's ``--json`` form, strengths included."""
    return add_strength(index.search(queries, **kw).to_dict(), index)


def test_every_hit_of_a_search_carries_the_cli_strength(server, local_index) -> None:
    path = QUERY["coffee"]
    with server.client() as c:
        r = c.get(f"/similar/{path}", params={"k": 12})
    assert r.status_code == 200, r.text
    hits = r.json()["queries"][0]["hits"]
    cal = calibrate(local_index)
    assert [(h["strength"], h["percentile"]) for h in hits] == [
        cal.strength(h["score"]) for h in hits]
    assert hits[0]["path"] == path and hits[0]["strength"] == "strong"
    assert {h["strength"] for h in hits} <= BANDS and len({h["strength"] for h in hits}) > 1
    assert hits[-1]["percentile"] < hits[0]["percentile"]
    assert r.json()["combined"][0]["strength"] == "strong"  # one query: its own list
    same_result(r.json(), local(local_index, [Stored(path)], k=12))


def test_several_queries_rate_each_list_but_not_the_mean(server, local_index,
                                                         gallery_file) -> None:
    parts = [upload(gallery_file(QUERY["rocket"])), ("paths", (None, QUERY["chelsea"].encode())),
             ("k", (None, b"3"))]
    with server.client() as c:
        r = c.post("/search", files=parts)
    assert r.status_code == 200, r.text
    for q in r.json()["queries"]:
        assert q["hits"][0]["strength"] == "strong"
    assert all("strength" not in h for h in r.json()["combined"])


@pytest.mark.parametrize("params, where, expect", [
    ({"in": "rocket"}, {"folders": ("rocket",)}, {"rocket"}),
    ({"in": ["coffee", "rocket/"]}, {"folders": ("coffee", "rocket")}, {"coffee", "rocket"}),
    ({"format": "tiff"}, {"formats": ("tiff",)}, {"chelsea"}),
    ({"min_size": "500x300"}, {"min_width": 500, "min_height": 300}, {"coffee", "rocket"}),
    ({"orientation": "landscape", "after": "2000", "has_label": "cat"},
     {"orientation": "landscape", "after": "2000", "label": "cat"}, {"chelsea"}),
])
def test_similar_and_search_keep_exactly_the_rows_that_pass(server, local_index, gallery_file,
                                                            params, where, expect) -> None:
    """The exact top-k among the passing rows, as ``Index.search(where=...)`` answers."""
    query = QUERY["coffee"]
    with server.client() as c:
        got = c.get(f"/similar/{query}", params={"k": 12, **params})
        form = [(key, (None, v.encode())) for key, vs in params.items()
                for v in ([vs] if isinstance(vs, str) else vs)]
        posted = c.post("/search", files=[upload(gallery_file(query)), ("k", (None, b"12")),
                                          *form])
    assert got.status_code == 200, got.text
    assert posted.status_code == 200, posted.text
    want = local(local_index, [Stored(query)], k=12, where=Where(**where))
    same_result(got.json(), want)
    families = {h["path"].split("/")[0] for h in got.json()["combined"]}
    assert families == expect
    assert ([h["path"] for h in posted.json()["combined"]]
            == [h["path"] for h in got.json()["combined"]])


def test_label_search_takes_the_filters_too(server, local_index) -> None:
    with server.client() as c:
        r = c.get("/labels/search", params={"q": "cat", "k": 10, "format": "jpeg"})
    assert r.status_code == 200, r.text
    paths = [h["path"] for h in r.json()["combined"]]
    assert paths and not any(p.endswith(".tiff") for p in paths)


@pytest.mark.parametrize("params, status, message", [
    ({"after": "last year"}, 400, "after: after must be a date like 2019"),
    ({"before": "2019-02-30"}, 400, "before: before must be a date"),
    ({"min_size": "big"}, 400, "min_size must be WIDTHxHEIGHT in pixels"),
    ({"in": "../elsewhere"}, 400, "in: folder '../elsewhere' must lie inside the gallery"),
    ({"has_label": "zzzqqq"}, 400, "no ImageNet class matches the label filter 'zzzqqq'"),
    ({"orientation": "round"}, 422, "orientation"),
])
def test_bad_filter_values_are_one_line_4xx(server, gallery_file, params, status,
                                            message) -> None:
    with server.client() as c:
        got = c.get(f"/similar/{QUERY['rocket']}", params=params)
        posted = c.post("/search", files=[upload(gallery_file(QUERY["rocket"])),
                                          *[(k, (None, v.encode())) for k, v in params.items()]])
    for r in (got, posted):
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert message in detail and "\n" not in detail and "Traceback" not in detail


def test_cli_search_through_the_server_passes_the_filters(server, server_index, tmp_path
                                                          ) -> None:
    args = ("search", f"@{QUERY['chelsea']}", "-k", "12", "--in", "coffee", "--in", "rocket",
            "--min-size", "500x300", "--json")
    remote = run_cli(*args, "--server", server.url, env=server_env(tmp_path))
    here = run_cli(*args, "--index", server_index, env=server_env(tmp_path))
    assert remote.returncode == 0, remote.stderr
    assert here.returncode == 0, here.stderr
    got, want = json.loads(remote.stdout), json.loads(here.stdout)
    same_result(got, want)
    assert {h["path"] for h in got["combined"]} == {
        "coffee/coffee_blur.jpg", "coffee/coffee_color.jpg", "rocket/rocket_blur.jpg",
        "rocket/rocket_color.jpg", "rocket/rocket_crop_center.jpg"}
    assert [h["strength"] for h in got["combined"]] == [h["strength"] for h in want["combined"]]
    table = run_cli(*args[:-1], "--server", server.url, env=server_env(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "match" in table.stdout and any(b in table.stdout for b in BANDS)
    bad = run_cli(*args[:-1], "--after", "soon", "--server", server.url,
                  env=server_env(tmp_path))
    assert bad.returncode == 2 and bad.stderr.strip().endswith(
        "--after: after must be a date like 2019, 2019-07 or 2019-07-14, got 'soon'")
