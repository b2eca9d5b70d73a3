"""``imgrec serve`` and ``imgrec check`` on a sharded index: over real HTTP (the server a
subprocess joining the test cluster), the answers of the unsharded index, strengths and
filters included; ``check`` tells known and new demo images apart as on the unsharded one."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from support import run_cli

from imgrec import Index, Stored
from imgrec.insights.labels import search_by_label
from imgrec.search.calibration import add_strength

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from server_support import start_server, stop_server, wait_warm
from test_server_api import same_result

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(ray_cluster, varied_sharded, tmp_path_factory):
    """``imgrec serve --index SHARDED --ray CLUSTER`` until the module ends."""
    srv = start_server(varied_sharded, tmp_path_factory.mktemp("sharded-serve"), "--ray",
                       ray_cluster.address, timeout=300)
    try:
        health = wait_warm(srv)
        assert health["model_warm"], (health, srv.log.read_text()[-3000:])
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def full(varied_index, real_embedder) -> Index:
    return Index.open(varied_index, embedder=real_embedder)


def local(index: Index, queries, **kw) -> dict:
    return add_strength(index.search(queries, **kw).to_dict(), index)


def test_info_and_health_describe_the_sharded_index(served, full, varied_sharded):
    with served.client() as c:
        info, health = c.get("/info").json(), c.get("/healthz").json()
    assert info["index_dir"] == str(varied_sharded) and info["images"] == len(full) == 40
    assert info["gallery_root"] == str(full.root) and info["has_labels"]
    assert (info["model"], info["embedding_dim"], info["pca_components"], info["skipped"]) == (
        full.model, 1584, full.pca().n_components, 0)
    assert health["status"] == "ok" and health["images"] == 40
    assert health["index_version"] == info["version"] != full.version


def test_searches_answer_as_the_unsharded_index(served, full, varied_gallery):
    paths = full.all_paths()
    upload = varied_gallery / "chelsea/chelsea_color.jpg"
    with served.client() as c:
        for method in ("embedding", "color", "pca"):
            r = c.get(f"/similar/{paths[17]}", params={"k": 12, "method": method})
            assert r.status_code == 200, r.text
            same_result(r.json(), local(full, [Stored(paths[17])], method=method, k=12))
        r = c.post("/search", files=[("images", (upload.name, upload.read_bytes(), "image/jpeg")),
                                     ("paths", (None, paths[3].encode())),
                                     ("negative_paths", (None, paths[33].encode())),
                                     ("k", (None, b"7"))])
        assert r.status_code == 200, r.text
        same_result(r.json(), local(full, [upload, Stored(paths[3])], k=7,
                                    negatives=[Stored(paths[33])]))
        r = c.get("/labels/search", params={"q": "cat", "k": 30})
        assert r.status_code == 200, r.text
        assert r.json() == search_by_label(full, "cat", k=30).to_dict()
        hits = c.get(f"/similar/{paths[17]}", params={"k": 12}).json()["queries"][0]["hits"]
        thumb = c.get(f"/thumbnail/{paths[17]}", params={"size": 64})
        missing = c.get("/similar/no/such.jpg")
    assert hits[0]["strength"] == "strong" and len({h["strength"] for h in hits}) > 1
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert im.format == "JPEG" and max(im.size) == 64
    assert missing.status_code == 404 and "not an indexed image" in missing.json()["detail"]


@pytest.mark.parametrize("params, where", [
    ({"in": ["coffee", "chelsea/"]}, {"folders": ["coffee", "chelsea"]}),
    ({"after": "2014", "before": "2019-06"}, {"after": "2014", "before": "2019-06"}),
    ({"min_size": "500x500"}, {"min_width": 500, "min_height": 500}),
    ({"format": ["png", "webp"]}, {"formats": ["png", "webp"]}),
    ({"orientation": "portrait"}, {"orientation": "portrait"}),
    ({"has_label": "cat", "orientation": "landscape"}, {"label": "cat",
                                                        "orientation": "landscape"}),
])
def test_filters_over_http_keep_what_the_unsharded_index_keeps(served, full, params, where):
    query = full.all_paths()[20]
    form = [(key, (None, v.encode())) for key, vs in params.items()
            for v in ([vs] if isinstance(vs, str) else vs)]
    with served.client() as c:
        got = c.get(f"/similar/{query}", params={"k": 40, **params})
        posted = c.post("/search", files=[("paths", (None, query.encode())),
                                          ("k", (None, b"40")), *form])
        labels = c.get("/labels/search", params={"q": "coffee, cat", "k": 40, **params})
    for r in (got, posted, labels):
        assert r.status_code == 200, r.text
    want = local(full, [Stored(query)], k=40, where=where)
    same_result(got.json(), want)
    same_result(posted.json(), want)
    assert 0 < len(want["combined"]) < 40
    assert labels.json() == search_by_label(full, "coffee, cat", 40, where=where).to_dict()


def test_check_tells_known_from_new_images_on_shards(ray_cluster, varied_demo, varied_index,
                                                     varied_sharded, varied_gallery, cli_env,
                                                     tmp_path):
    env = {**cli_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    copy = tmp_path / "copy.jpg"  # the same bytes as an indexed image
    copy.write_bytes((varied_gallery / "coffee/coffee_orig.jpg").read_bytes())
    near = tmp_path / "smaller.jpg"  # the same picture, re-encoded smaller
    with Image.open(varied_gallery / "grace_hopper/grace_hopper_orig.jpg") as im:
        im.resize((256, 300)).save(near, quality=80)
    new = [varied_demo / "rocket/rocket_orig.jpg", varied_demo / "coins/coins_orig.jpg"]
    targets = [copy, near, *new]
    runs = []
    for index, extra in ((varied_index, []), (varied_sharded, ["--ray", ray_cluster.address])):
        r = run_cli("check", *targets, "--index", index, "--json", *extra, env=env)
        assert r.returncode == 3, r.stderr[-2000:]  # some are already in the collection
        runs.append(json.loads(r.stdout))
    assert runs[1] == runs[0]
    verdicts = {Path(v["file"]).name: v for v in runs[1]}
    assert verdicts["copy.jpg"]["tier"] == "exact"
    assert verdicts["copy.jpg"]["match"] == "coffee/coffee_orig.jpg"
    assert verdicts["smaller.jpg"]["known"]
    assert verdicts["smaller.jpg"]["match"].startswith("grace_hopper/")
    assert not verdicts["rocket_orig.jpg"]["known"] and not verdicts["coins_orig.jpg"]["known"]
    r = run_cli("check", *new, "--index", varied_sharded, "--ray", ray_cluster.address, env=env)
    assert r.returncode == 0 and r.stdout.count(": new") == 2, r.stderr[-2000:]
