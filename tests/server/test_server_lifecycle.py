"""Starting and stopping the server: one-line refusals, a rebuild picked up while serving."""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys

import pytest
from server_support import server_env, start_server, stop_server, wait_warm
from support import TinyEmbedder

from imgrec import build_index
from imgrec.server import add_arguments


def serve(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgrec.server", *args], capture_output=True,
                          text=True, env=server_env(tmp_path), timeout=120)


def test_no_index_is_a_one_line_error(tmp_path) -> None:
    done = serve(tmp_path, "--index", str(tmp_path / "none"), "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"imgrec: no index at {tmp_path / 'none'}: build one with `imgrec index GALLERY "
        f"--index {tmp_path / 'none'}`"]


def test_a_busy_port_is_a_one_line_error(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = serve(tmp_path, "--index", str(tmp_path / "none"), "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"imgrec: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_an_index_of_another_embedder_is_served_without_a_cnn(write_gallery, tmp_path) -> None:
    """Built with a small deterministic embedder (no CNN for its model): stored images and
    colour searches of uploads work; an upload searched by content gets a clear 400."""
    gallery = write_gallery(tmp_path / "gallery")
    index_dir = tmp_path / "index"
    build_index(gallery, index_dir, embedder=TinyEmbedder(), workers=0)
    query = gallery / "coffee" / "coffee_flip.jpg"
    srv = start_server(index_dir, tmp_path)
    try:
        with srv.client() as c:
            similar = c.get("/similar/chelsea/chelsea_orig.jpg", params={"k": 2})
            colour = c.post("/search", files=[("images", (query.name, query.read_bytes()))],
                            data={"method": "color", "k": "1"})
            content = c.post("/search", files=[("images", (query.name, query.read_bytes()))])
            health = c.get("/healthz").json()
    finally:
        stop_server(srv)
    assert similar.status_code == 200
    assert similar.json()["combined"][0]["path"] == "chelsea/chelsea_orig.jpg"
    assert colour.json()["combined"][0]["path"] == "coffee/coffee_flip.jpg"
    assert content.status_code == 400
    assert content.json()["detail"].startswith("unknown model 'tiny-test'")
    assert health["model_warm"] is False
    assert health["model_error"] == "no CNN for the index's model 'tiny-test'"


def test_serve_help_names_every_default(tmp_path) -> None:
    done = serve(tmp_path, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "(default: 127.0.0.1)" in text and "(default: 8600)" in text
    assert "(default: $IMGREC_INDEX_DIR, else" in text and "(default: 20)" in text
    parser = argparse.ArgumentParser()
    add_arguments(parser)  # the CLI's rule for every flag (tests/cli)
    for action in parser._actions[1:]:
        assert action.help and "(default: " in action.help, action.dest
        assert action.default is None or "%(default)s" in action.help, action.dest


@pytest.mark.slow
def test_a_rebuild_is_picked_up_while_serving(server_gallery, server_demo, real_embedder,
                                              tmp_path) -> None:
    gallery, index_dir = tmp_path / "gallery", tmp_path / "index"
    shutil.copytree(server_gallery, gallery)
    build_index(gallery, index_dir, embedder=real_embedder, workers=0)
    srv = start_server(index_dir, tmp_path)
    try:
        before = wait_warm(srv)
        assert before["images"] == 12
        new = "astronaut/astronaut_crop_center.jpg"
        (gallery / "astronaut").mkdir()
        shutil.copy2(server_demo.root / new, gallery / new)
        build_index(gallery, index_dir, embedder=real_embedder, workers=0)
        with srv.client() as c:
            after = c.get("/healthz").json()
            r = c.post("/search", files=[("images", ("q.jpg", (gallery / new).read_bytes()))])
            thumb = c.get(f"/thumbnail/{new}")
    finally:
        log = stop_server(srv)
    assert after["images"] == 13 and after["index_version"] != before["index_version"]
    assert r.status_code == 200 and r.json()["combined"][0]["path"] == new
    assert thumb.status_code == 200
    assert srv.proc.returncode == 0 and "opened index version" in log
    assert "Traceback" not in log


@pytest.mark.slow
def test_a_catalog_deleted_under_the_server_is_a_one_line_503(server_index, tmp_path) -> None:
    """The catalog deleted under a running server: the index package notices the missing
    file (it owns every file of the index), so a search fails with a one-line 503 naming
    it — no traceback — and the server goes on answering."""
    index_dir = tmp_path / "index"
    shutil.copytree(server_index, index_dir)
    srv = start_server(index_dir, tmp_path)
    try:
        with srv.client() as c:
            assert c.get("/similar/coffee/coffee_color.jpg").status_code == 200
            for catalog in index_dir.glob("*/catalog.sqlite"):
                catalog.unlink()
            r = c.get("/similar/coffee/coffee_color.jpg")
            health = c.get("/healthz")
    finally:
        log = stop_server(srv)
    assert r.status_code == 503
    assert r.json()["detail"].endswith("catalog.sqlite is missing")
    assert health.status_code == 200
    assert "Traceback" not in log
