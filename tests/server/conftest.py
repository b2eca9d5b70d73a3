"""Fixtures of the HTTP API tests: a small real gallery and index (the real
EfficientNet-Lite0), and ``imgrec serve`` running on it in a subprocess on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_support import Server, make_gallery, start_server, stop_server, wait_warm

from imgrec import CNNEmbedder, Index, build_index
from imgrec.demo import build_demo_gallery


@pytest.fixture(scope="session")
def server_demo(tmp_path_factory: pytest.TempPathFactory):
    return build_demo_gallery(tmp_path_factory.mktemp("server-demo") / "gallery")


@pytest.fixture(scope="session")
def server_gallery(server_demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gallery(tmp_path_factory.mktemp("server") / "gallery", server_demo.root,
                        server_demo.families)


@pytest.fixture(scope="session")
def server_index(server_gallery: Path, real_embedder: CNNEmbedder,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny gallery's index (12 images, 1 skipped), built once per session."""
    index_dir = tmp_path_factory.mktemp("server-index") / "index"
    build_index(server_gallery, index_dir, embedder=real_embedder, workers=0)
    return index_dir


@pytest.fixture(scope="session")
def local_index(server_index: Path, real_embedder: CNNEmbedder) -> Index:
    """The same index opened in the test process, for comparing with the server."""
    return Index.open(server_index, embedder=real_embedder)


@pytest.fixture(scope="session")
def server(server_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One warm server shared by the session (read-only tests only)."""
    srv = start_server(server_index, tmp_path_factory.mktemp("server-run"))
    try:
        health = wait_warm(srv)
        assert health["model_warm"], (health, srv.log.read_text())
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def gallery_file(server_gallery: Path) -> Callable[[str], Path]:
    return lambda rel: server_gallery / rel
