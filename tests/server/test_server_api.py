"""Every endpoint of the real server over HTTP, checked against a local search of the same
index: uploads find themselves, answers equal ``Index.search(...).to_dict()``."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from server_support import FAMILIES, PER_FAMILY

from imgrec import Stored
from imgrec.insights.labels import search_by_label
from imgrec.search.calibration import add_strength

pytestmark = pytest.mark.slow

QUERY = {fam: f"{fam}/{fam}_crop_center.jpg" for fam in FAMILIES}


def same_result(got: dict, want: dict) -> None:
    """Equal JSON, scores to float32 precision (two processes ran the same CNN)."""
    assert {k: v for k, v in got.items() if k not in ("queries", "combined")} == \
        {k: v for k, v in want.items() if k not in ("queries", "combined")}
    assert [q["query"] for q in got["queries"]] == [q["query"] for q in want["queries"]]
    for g, w in zip([q["hits"] for q in got["queries"]] + [got["combined"]],
                    [q["hits"] for q in want["queries"]] + [want["combined"]], strict=True):
        assert [h["path"] for h in g] == [h["path"] for h in w]
        assert [h["rank"] for h in g] == [h["rank"] for h in w]
        for a, b in zip(g, w, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
            assert a["distance"] == pytest.approx(b["distance"], abs=1e-5)
            assert a.keys() == b.keys()


def upload(path) -> tuple:
    return ("images", (path.name, path.read_bytes(), "image/jpeg"))


def test_healthz_reports_the_warm_model(server, local_index) -> None:
    with server.client() as c:
        health = c.get("/healthz").json()
    assert health == {"status": "ok", "model_warm": True, "index_version": local_index.version,
                      "images": len(FAMILIES) * PER_FAMILY}


def test_info_describes_the_open_index(server, server_index, server_gallery) -> None:
    with server.client() as c:
        info = c.get("/info").json()
    assert info["images"] == 12 and info["skipped"] == 1
    assert info["model"] == "efficientnet-lite0" and info["embedding_dim"] == 1584
    assert info["index_dir"] == str(server_index)
    assert info["gallery_root"] == str(server_gallery.resolve())
    assert info["has_labels"] and info["max_queries"] == 5


@pytest.mark.parametrize("fam", FAMILIES)
def test_an_uploaded_gallery_file_finds_itself_then_its_family(server, gallery_file, fam) -> None:
    with server.client() as c:
        r = c.post("/search", files=[upload(gallery_file(QUERY[fam]))], data={"k": "4"})
    assert r.status_code == 200, r.text
    hits = r.json()["queries"][0]["hits"]
    assert hits[0]["path"] == QUERY[fam] and hits[0]["distance"] < 1e-4
    assert [h["path"].split("/")[0] for h in hits] == [fam] * 4
    assert r.json()["queries"][0]["query"] == f"{fam}_crop_center.jpg"


@pytest.mark.parametrize("form", [
    {"method": "embedding", "metric": "cosine", "k": "3"},
    {"method": "embedding", "metric": "euclidean", "k": "5"},
    {"method": "embedding", "metric": "all", "k": "2"},
    {"method": "color", "k": "4"},
    {"method": "pca", "k": "3", "pca_components": "20"},
])
def test_upload_and_paths_answer_what_a_local_search_answers(server, local_index, gallery_file,
                                                             form) -> None:
    """An upload, a gallery path and another upload, in that order, as one search."""
    a, b, c_ = QUERY["chelsea"], QUERY["coffee"], QUERY["rocket"]
    parts = [upload(gallery_file(a)), ("paths", (None, b.encode())), upload(gallery_file(c_))]
    parts += [(key, (None, value.encode())) for key, value in form.items()]
    with server.client() as c:
        r = c.post("/search", files=parts)
    assert r.status_code == 200, r.text
    want = local_index.search([gallery_file(a), Stored(b), gallery_file(c_)],
                              method=form["method"], metric=form.get("metric", "cosine"),
                              k=int(form["k"]),
                              pca_components=int(form["pca_components"]) if "pca_components" in form
                              else None)
    same_result(r.json(), add_strength(want.to_dict(), local_index))


def test_negatives_refine_the_combined_ranking_as_locally(server, local_index,
                                                          gallery_file) -> None:
    q, neg = QUERY["chelsea"], "coffee/coffee_color.jpg"
    with server.client() as c:
        r = c.post("/search", files=[upload(gallery_file(q))], data={
            "negative_paths": neg, "negative_weight": "0.8", "k": "5"})
    assert r.status_code == 200, r.text
    want = local_index.search([gallery_file(q)], k=5, negatives=[Stored(neg)],
                              negative_weight=0.8).to_dict()
    same_result(r.json(), add_strength(want, local_index))
    assert r.json()["negatives"] == [neg] and r.json()["negative_weight"] == 0.8
    assert r.json()["combined_metric"] == "refined"


def test_similar_is_a_search_of_the_stored_image(server, local_index) -> None:
    path = QUERY["rocket"]
    with server.client() as c:
        r = c.get(f"/similar/{path}", params={"k": 3, "method": "color"})
    assert r.status_code == 200, r.text
    same_result(r.json(), add_strength(
        local_index.search([Stored(path)], method="color", k=3).to_dict(), local_index))
    assert r.json()["combined"][0]["path"] == path


def test_label_search_matches_the_local_one(server, local_index) -> None:
    with server.client() as c:
        r = c.get("/labels/search", params={"q": "cat", "k": 3})
    assert r.status_code == 200, r.text
    assert r.json() == search_by_label(local_index, "cat", k=3).to_dict()
    assert [h["path"].split("/")[0] for h in r.json()["combined"]] == ["chelsea"] * 3


def test_thumbnail_is_a_small_jpeg_of_the_image(server, gallery_file) -> None:
    with server.client() as c:
        r = c.get(f"/thumbnail/{QUERY['coffee']}", params={"size": 64})
        again = c.get(f"/thumbnail/{QUERY['coffee']}", params={"size": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert again.content == r.content
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.format == "JPEG" and max(im.size) == 64
        with Image.open(gallery_file(QUERY["coffee"])) as full:
            assert im.size[0] / im.size[1] == pytest.approx(full.size[0] / full.size[1], rel=0.05)


def test_concurrent_requests_are_all_answered_correctly(server, gallery_file) -> None:
    """8 threads x 5 requests: uploads, stored searches and thumbnails interleaved."""
    def work(i: int) -> list[str]:
        fam = FAMILIES[i % len(FAMILIES)]
        errors = []
        with server.client() as c:
            for j in range(5):
                if j % 3 == 0:
                    r = c.post("/search", files=[upload(gallery_file(QUERY[fam]))],
                               data={"k": "2"})
                    ok = r.status_code == 200 and r.json()["combined"][0]["path"] == QUERY[fam]
                elif j % 3 == 1:
                    r = c.get(f"/similar/{QUERY[fam]}", params={"k": 4, "method": "pca"})
                    ok = r.status_code == 200 and r.json()["combined"][0]["path"] == QUERY[fam]
                else:
                    r = c.get(f"/thumbnail/{QUERY[fam]}", params={"size": 32 + i})
                    ok = r.status_code == 200 and r.content[:2] == b"\xff\xd8"
                if not ok:
                    errors.append(f"thread {i} request {j}: {r.status_code} {r.text[:200]}")
        return errors

    with ThreadPoolExecutor(8) as pool:
        problems = [e for errs in pool.map(work, range(8)) for e in errs]
    assert problems == []


def test_openapi_lists_every_endpoint_with_typed_models(server) -> None:
    with server.client() as c:
        spec = c.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/search", "/similar/{path}", "/labels/search", "/info",
                                  "/thumbnail/{path}", "/healthz"}
    assert {"SearchOut", "HitOut", "InfoOut", "HealthOut", "ErrorOut"} <= set(
        spec["components"]["schemas"])
    form = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form


def test_docs_load_swagger_ui_from_the_server_itself(server) -> None:
    with server.client() as c:
        html = c.get("/docs").text
        assets = [c.get(f"/docs/assets/{name}") for name in
                  ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")]
        refused = c.get("/docs/assets/..%2F..%2F__init__.py")
    assert "http://" not in html and "https://" not in html
    assert "/docs/assets/swagger-ui-bundle.js" in html and "/openapi.json" in html
    assert [a.status_code for a in assets] == [200, 200, 200]
    assert len(assets[0].content) > 500_000  # the real bundle, not a placeholder
    assert refused.status_code == 404
