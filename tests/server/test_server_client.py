"""``search_via_server`` (behind ``imgrec search --server URL``) returns what a local
``imgrec search --json`` prints, and says in one line why when it cannot."""

from __future__ import annotations

import json

import pytest
from server_support import server_env
from support import run_cli
from test_server_api import same_result

from imgrec import ImgrecError
from imgrec.search.calibration import add_strength
from imgrec.server import result_from_dict, search_via_server, server_info

pytestmark = pytest.mark.slow

A, B = "coffee/coffee_crop_center.jpg", "rocket/rocket_color.jpg"


def cli_json(tmp_path, index_dir, *args: str) -> dict:
    """``imgrec search --json`` run here (each hit with its calibrated strength, as the
    server answers too)."""
    done = run_cli("search", *args, "--index", index_dir, "--json", env=server_env(tmp_path))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_client_returns_what_the_cli_prints(server, server_index, gallery_file,
                                                tmp_path) -> None:
    queries = [str(gallery_file(A)), f"@{B}"]
    got = search_via_server(server.url, queries, "embedding", "cosine", 4,
                            negatives=["@chelsea/chelsea_color.jpg"], negative_weight=0.3)
    want = cli_json(tmp_path, server_index, *queries, "-k", "4", "--negative",
                    "@chelsea/chelsea_color.jpg", "--negative-weight", "0.3")
    same_result(got, want)
    assert got["queries"][0]["query"] == "coffee_crop_center.jpg"
    assert got["queries"][0]["hits"][0]["path"] == A


def test_the_client_searches_by_colour_and_by_label(server, local_index, gallery_file) -> None:
    got = search_via_server(server.url, [str(gallery_file(B))], method="pca", k=3,
                            pca_components=10)
    same_result(got, add_strength(local_index.search([gallery_file(B)], method="pca", k=3,
                                                     pca_components=10).to_dict(), local_index))
    from imgrec.insights.labels import search_by_label

    assert search_via_server(server.url, [], label="espresso", k=2) == \
        search_by_label(local_index, "espresso", k=2).to_dict()


def test_server_info_names_the_gallery(server, server_gallery) -> None:
    assert server_info(server.url)["gallery_root"] == str(server_gallery.resolve())


def test_result_from_dict_round_trips(server) -> None:
    d = search_via_server(server.url, [f"@{A}"], metric="all", k=2)
    for hits in [q["hits"] for q in d["queries"]] + [d["combined"]]:
        for h in hits:  # the calibration the server adds is not part of a SearchResult
            assert h.pop("strength") in ("strong", "related", "weak"), h
            del h["percentile"]
    assert result_from_dict(d).to_dict() == d
    assert result_from_dict(d).combined[0].metrics is not None


def test_the_client_says_why_it_cannot(server, tmp_path) -> None:
    with pytest.raises(ImgrecError, match="at most 5 queries"):
        search_via_server(server.url, [f"@{A}"] * 6)
    with pytest.raises(ImgrecError, match=r"query image not found: .*missing\.jpg"):
        search_via_server(server.url, [str(tmp_path / "missing.jpg")])
    with pytest.raises(ImgrecError, match=r"server: .*not an indexed image"):
        search_via_server(server.url, ["@coffee/none.jpg"])
    with pytest.raises(ImgrecError, match="not both"):
        search_via_server(server.url, [f"@{A}"], label="cat")
    closed = server.url.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens
    with pytest.raises(ImgrecError, match=r"no imgrec server answers at http://127\.0\.0\.1:9 "):
        search_via_server(closed, [f"@{A}"])


def test_cli_search_through_the_server_prints_what_a_local_search_prints(server, server_index,
                                                                         gallery_file, tmp_path
                                                                         ) -> None:
    queries = [str(gallery_file(A)), f"@{B}"]
    local = cli_json(tmp_path, server_index, *queries, "-k", "3")
    done = run_cli("search", *queries, "-k", "3", "--server", server.url, "--json",
                   env=server_env(tmp_path))
    assert done.returncode == 0, done.stderr
    same_result(json.loads(done.stdout), local)
    table = run_cli("search", f"@{A}", "-k", "2", "--server", server.url, "--absolute",
                    env=server_env(tmp_path))
    assert table.returncode == 0, table.stderr
    assert str(gallery_file(A)) in table.stdout
